"""SDK job handles on the cluster: errors, filtered logs, lookup by id, listing by function."""

from __future__ import annotations

import time

import pytest
from kubernetes import client
from qiskit_serverless import QiskitFunction
from qiskit_serverless.exception import QiskitServerlessException

from qiskit_serverless_operator import KubernetesClient

PROGRAM = """
from qiskit_serverless import get_arguments
args = get_arguments()
print("[PUBLIC] checking", args["value"])
print("internal detail")
if args["value"] < 0:
    raise ValueError(f"value must be positive, got {args['value']}")
"""


def _finish(job, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while not job.in_terminal_state() and time.monotonic() < deadline:
        time.sleep(0.5)
    return job.status()


def test_failed_job_error_message_result_and_logs(
    api_client: client.ApiClient, namespace: str, operator, tmp_path
) -> None:
    (tmp_path / "check.py").write_text(PROGRAM)
    sdk = KubernetesClient(namespace=namespace, api_client=api_client)
    fn = sdk.upload(QiskitFunction(title="check", entrypoint="check.py", working_dir=str(tmp_path)))
    good = fn.run(value=3)
    bad = fn.run(value=-1)
    assert _finish(good) == "DONE"
    assert _finish(bad) == "ERROR"

    assert "ValueError: value must be positive, got -1" in bad.error_message()
    with pytest.raises(QiskitServerlessException, match="value must be positive"):
        bad.result()
    assert good.result() == {}
    assert good.error_message() == ""
    # Tags are removed from a user's own function's logs, as Qiskit Serverless shows them.
    assert good.filtered_logs(include=r"^checking") == "checking 3"
    assert "[PUBLIC]" not in good.logs()
    assert "internal detail" not in good.filtered_logs(exclude="internal")

    assert sdk.job(good.job_id).status() == "DONE"
    assert sdk.job("00000000-0000-0000-0000-000000000000") is None
    assert [j.job_id for j in fn.jobs()] == [bad.job_id, good.job_id]
    assert bad.stop() == "Job is already ERROR."
