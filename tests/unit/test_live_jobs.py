"""The gateway's watch cache of live jobs (gateway/live.py): kept in the job order per
namespace through puts, replacements and removals, and filtered by a listing's query."""

from __future__ import annotations

import pytest

from qiskit_serverless_operator.archive.query import JobQuery, Scope
from qiskit_serverless_operator.gateway.live import LiveJobs

pytestmark = pytest.mark.unit


def body(n: int, namespace: str = "ns", user: str = "alice", **status: object) -> dict:
    uid = f"00000000-0000-0000-0000-{n:012d}"
    return {
        "metadata": {
            "name": f"job-{n}",
            "namespace": namespace,
            "uid": uid,
            "annotations": {
                "serverless.qiskit.org/submitted-at": f"{1000.0 + n:.6f}",
                "serverless.qiskit.org/submitter": user,
            },
            "managedFields": [{"manager": "x"}],
        },
        "spec": {"function": "f", "arguments": {"inline": {"big": "x" * 100}}},
        "status": {"phase": "QUEUED", **status},
    }


def names(keys: list) -> list[str]:
    return [k.body["metadata"]["name"] for k in keys]


def test_newest_first_per_namespace_and_across() -> None:
    live = LiveJobs()
    for n in (3, 1, 5, 2):
        live.put(body(n))
    live.put(body(4, namespace="other"))
    everyone = JobQuery(scopes=(Scope(namespace="ns"),), limit=None)
    assert names(live.matching(everyone)) == ["job-5", "job-3", "job-2", "job-1"]
    across = JobQuery(scopes=(Scope(),), limit=None)
    assert names(live.matching(across)) == ["job-5", "job-4", "job-3", "job-2", "job-1"]


def test_an_update_replaces_and_a_deletion_removes() -> None:
    live = LiveJobs()
    live.put(body(1))
    live.put(body(2))
    live.put(body(1, phase="RUNNING"))
    assert len(live) == 2
    assert live.get("00000000-0000-0000-0000-000000000001").phase == "RUNNING"
    assert live.named("ns", "job-1") is not None
    live.remove("00000000-0000-0000-0000-000000000001")
    assert names(live.matching(JobQuery(scopes=(Scope(namespace="ns"),)))) == ["job-2"]
    assert live.named("ns", "job-1") is None
    live.remove("00000000-0000-0000-0000-000000000002")
    assert live.matching(JobQuery(scopes=(Scope(),))) == []


def test_kept_trimmed_and_archived_ones_left_to_the_archive() -> None:
    live = LiveJobs()
    live.put(body(1))
    live.put(body(2, phase="DONE", archivedAt="2026-12-07T10:00:00Z"))
    kept = live.get("00000000-0000-0000-0000-000000000001")
    assert "inline" not in kept.body["spec"]["arguments"]
    assert "managedFields" not in kept.body["metadata"]
    assert names(live.matching(JobQuery(scopes=(Scope(namespace="ns"),)))) == ["job-1"]
    assert live.get("00000000-0000-0000-0000-000000000002") is not None  # by id: still here


def test_a_users_own_jobs() -> None:
    live = LiveJobs()
    live.put(body(1, user="alice"))
    live.put(body(2, user="bob"))
    mine = JobQuery(scopes=(Scope(namespace="ns", user="bob"),))
    assert names(live.matching(mine)) == ["job-2"]
