"""Which jobs a restarted operator looks at again (the rest are final or the queue's)."""

from __future__ import annotations

from typing import Any

import pytest

from qiskit_serverless_operator.controller.handlers import (
    spec_not_yet_seen,
    worth_a_look_on_resume,
)


def job(status: dict[str, Any], generation: int = 1, observed: int | None = 1) -> Any:
    if observed is not None:
        status = {**status, "observedGeneration": observed}
    return {"metadata": {"generation": generation}, "spec": {}, "status": status}


@pytest.mark.parametrize(
    ("status", "look"),
    [
        ({"phase": "DONE"}, False),
        ({"phase": "ERROR", "reason": "FunctionNotFound"}, False),
        ({"phase": "CANCELED"}, False),
        ({"phase": "QUEUED", "reason": "Pending"}, False),  # the queue starts it
        ({"phase": "QUEUED", "reason": "Pending", "admittedAt": "x"}, True),  # admitted
        ({"phase": "QUEUED", "reason": "FunctionNotReady"}, True),
        ({"phase": "QUEUED", "reason": "FunctionNotFound"}, True),  # its wait may be over
        ({"phase": "QUEUED", "reason": "AdmissionByKueue"}, True),
        ({"phase": "INITIALIZING"}, True),
        ({"phase": "RUNNING"}, True),
        ({}, True),  # never seen by an operator
    ],
)
def test_resume_looks_at_jobs_in_flight_only(status: dict[str, Any], look: bool) -> None:
    assert worth_a_look_on_resume(job(status)) is look


def test_a_waiting_job_whose_spec_changed_meanwhile_is_looked_at() -> None:
    assert worth_a_look_on_resume(job({"phase": "QUEUED", "reason": "Pending"}, generation=2))


def test_a_spec_change_is_seen_only_once_the_job_has_a_status() -> None:
    # A new job (no status) is the creation handler's; an edited one is the event handler's.
    assert not spec_not_yet_seen(job({}, generation=1, observed=None))
    assert not spec_not_yet_seen(job({"phase": "QUEUED"}, generation=1, observed=1))
    assert spec_not_yet_seen(job({"phase": "QUEUED"}, generation=2, observed=1))
