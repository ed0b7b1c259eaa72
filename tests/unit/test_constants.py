from qiskit_serverless_operator import constants


def test_terminal_phases_are_exactly_the_three_final_ones():
    assert {p.value for p in constants.TERMINAL_JOB_PHASES} == {"DONE", "ERROR", "CANCELED"}
    assert constants.API_VERSION == "serverless.qiskit.org/v1alpha1"
