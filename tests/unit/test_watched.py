"""The watches' copies a job's reconcile reads (controller/watched.py), and what the start
does without a read or write of its own (controller/pod_tokens.py, jobs.needs_cleanup)."""

from __future__ import annotations

from typing import Any

import pytest

from qiskit_serverless_operator import constants as c
from qiskit_serverless_operator.controller import pod_tokens
from qiskit_serverless_operator.controller.jobs import needs_cleanup
from qiskit_serverless_operator.controller.jobspec import token_digest
from qiskit_serverless_operator.controller.watched import Watched, in_flight

pytestmark = pytest.mark.unit

KEY = "ns/j"


def sj(rv: int, **status: Any) -> dict[str, Any]:
    return {
        "kind": c.JOB_KIND,
        "metadata": {"name": "j", "namespace": "ns", "uid": "u1", "resourceVersion": str(rv)},
        "spec": {"function": "f"},
        "status": status,
    }


def child(kind: str, uid: str, rv: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": f"{kind}-{uid}", "uid": uid, "resourceVersion": str(rv)},
        "spec": {"suspend": False, "template": {"big": "x" * 100}, "containers": [{}]},
        "status": status,
    }


@pytest.mark.parametrize(
    ("status", "flight"),
    [
        ({}, False),
        ({"phase": "QUEUED", "reason": "Pending"}, False),  # the thousands waiting
        ({"phase": "QUEUED", "reason": "Admitted", "admittedAt": "t"}, True),
        ({"phase": "QUEUED", "reason": "AdmissionByKueue"}, True),
        ({"phase": "INITIALIZING"}, True),
        ({"phase": "RUNNING"}, True),
        ({"phase": "DONE", "admittedAt": "t"}, False),
        ({"phase": "ERROR"}, False),
        ({"phase": "CANCELED"}, False),
    ],
)
def test_only_jobs_in_flight_are_kept(status: dict[str, Any], flight: bool) -> None:
    watched = Watched()
    watched.job_seen(KEY, sj(1, **status))
    assert in_flight(sj(1, **status)) is flight
    assert (watched.job(KEY) is not None) is flight


def test_a_job_keeps_its_newest_copy_and_goes_when_it_ends() -> None:
    watched = Watched()
    watched.job_seen(KEY, sj(5, phase="RUNNING"))
    watched.job_seen(KEY, sj(4, phase="INITIALIZING"))  # an event older than our write
    assert watched.job(KEY)["status"]["phase"] == "RUNNING"
    answer = sj(6, phase="RUNNING")  # a write's answer carries managedFields
    answer["metadata"]["managedFields"] = [{"manager": "m"}]
    watched.job_seen(KEY, answer)
    assert "managedFields" not in watched.job(KEY)["metadata"]
    assert "managedFields" in answer["metadata"]  # the caller's copy is left as it was
    watched.child_seen(KEY, child("Pod", "p1", phase="Running"), deleted=False)
    watched.job_seen(KEY, sj(7, phase="DONE"))
    assert watched.job(KEY) is None and watched.pods(KEY) is None
    # A finished job's children's events (their TTL) keep nothing.
    watched.child_seen(KEY, child("Pod", "p1"), deleted=False)
    assert watched.pods(KEY) is None
    # Nor does an event older than its end, still on its way (it would be a stale copy).
    watched.job_seen(KEY, sj(5, phase="RUNNING"))
    assert watched.job(KEY) is None
    # A new job of the same name, once the old one is gone, is kept again.
    watched.job_gone(KEY)
    watched.job_seen(KEY, sj(3, phase="RUNNING"))
    assert watched.job(KEY) is not None


def test_children_follow_their_events_without_specs() -> None:
    watched = Watched()
    watched.child_seen(KEY, child("Job", "b1"), deleted=False)
    assert watched.batch_job(KEY) is None  # a job not in flight: nothing kept
    watched.job_seen(KEY, sj(1, phase="QUEUED", reason="Admitted", admittedAt="t"))
    assert watched.pods(KEY) is None  # none seen: the caller asks the API server
    watched.child_seen(KEY, child("Job", "b1", active=1), deleted=False)
    watched.child_seen(KEY, child("Pod", "p1", phase="Pending"), deleted=False)
    watched.child_seen(KEY, child("Pod", "p2", phase="Pending"), deleted=False)
    batch = watched.batch_job(KEY)
    assert batch["spec"] == {"suspend": False} and batch["status"] == {"active": 1}
    pods = watched.pods(KEY)
    assert [p["metadata"]["uid"] for p in pods] == ["p1", "p2"]
    assert all("spec" not in p for p in pods)
    watched.child_seen(KEY, child("Pod", "p1"), deleted=True)
    assert [p["metadata"]["uid"] for p in watched.pods(KEY)] == ["p2"]
    # The deletion of a batch Job already replaced does not drop its replacement.
    watched.child_seen(KEY, child("Job", "b2"), deleted=False)
    watched.child_seen(KEY, child("Job", "b1"), deleted=True)
    assert watched.batch_job(KEY)["metadata"]["uid"] == "b2"
    watched.child_seen(KEY, child("Job", "b2"), deleted=True)
    assert watched.batch_job(KEY) is None
    # The create's answer coming back after the batch Job's next event: the newer is kept.
    watched.child_seen(KEY, child("Job", "b3", rv=7, active=1), deleted=False)
    watched.child_seen(KEY, child("Job", "b3", rv=5), deleted=False)
    assert watched.batch_job(KEY)["status"] == {"active": 1}
    watched.job_gone(KEY)
    assert watched.job(KEY) is None


def test_an_admission_token_is_taken_once_and_only_with_its_digest() -> None:
    digest = pod_tokens.issue("ns", "j", "uid-1")
    assert pod_tokens.take("uid-1", "another digest") is None  # and it is gone
    assert pod_tokens.take("uid-1", digest) is None
    digest = pod_tokens.issue("ns", "j", "uid-1")
    token = pod_tokens.take("uid-1", digest)
    assert token is not None and token.startswith("ns.j.") and token_digest(token) == digest
    assert pod_tokens.take("uid-1", digest) is None
    assert pod_tokens.take("never-admitted", None) is None


@pytest.mark.parametrize(
    ("finalizers", "status", "needed"),
    [
        ([], {}, False),
        ([], {"phase": "QUEUED", "reason": "Pending"}, False),
        ([], {"phase": "QUEUED", "reason": "Admitted", "admittedAt": "t"}, False),  # not yet
        ([], {"phase": "ERROR", "reason": "FunctionNotFound"}, False),
        ([], {"phase": "INITIALIZING"}, True),
        ([], {"phase": "RUNNING"}, True),
        ([], {"phase": "DONE", "startTime": "t"}, True),
        ([c.FINALIZER], {"phase": "QUEUED", "reason": "Pending"}, True),  # once on, it stays
        (["someone.else/x"], {}, False),
    ],
)
def test_a_job_needs_its_finalizer_once_it_started(
    finalizers: list[str], status: dict[str, Any], needed: bool
) -> None:
    body = {"metadata": {"finalizers": finalizers}, "status": status}
    assert needs_cleanup(body) is needed
