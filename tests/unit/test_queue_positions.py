"""A waiting job's status says why it waits and where: a new kind of wait is written at
once, while figures that move with every admission and every finished job (the CPU in use,
the position) are refreshed only now and then."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from qiskit_serverless_operator import constants as c
from qiskit_serverless_operator.controller import scheduler
from qiskit_serverless_operator.controller.jobstore import JobRecord, record_of
from qiskit_serverless_operator.kube import ServerlessJob
from tests.unit.operator_env import queue_under_test


class FakeKube:
    def __init__(self) -> None:
        self.writes: list[tuple[str, dict[str, Any]]] = []

    async def patch_status(
        self, kind: Any, name: str, namespace: Any, body: dict, **_: Any
    ) -> dict:
        if kind is ServerlessJob:
            self.writes.append((name, body))
        return {"metadata": {"name": name}, "status": body}


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    fake = FakeKube()
    queue_under_test(monkeypatch, fake, QSO_MAX_RUNNING_PER_USER="3")
    return fake


def job(
    name: str, user: str, cpu: str, *, running: bool, shown: dict[str, Any] | None = None
) -> JobRecord:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    status: dict[str, Any] = {
        "user": user,
        "requests": {"cpu": cpu, "memory": "64Mi"},
        **(
            {"phase": "RUNNING", "admittedAt": stamp, "startTime": stamp}
            if running
            else {"phase": "QUEUED", "reason": c.QueueReason.PENDING.value}
        ),
        **(shown or {}),
    }
    return record_of(
        {
            "metadata": {
                "namespace": "ns",
                "name": name,
                "uid": f"uid-{name}",
                "resourceVersion": "1",
                "annotations": {c.ANNOTATION_SUBMITTED_AT: str(1000 + int(name[-1]))},
            },
            "spec": {"function": "f"},
            "status": status,
        }
    )


async def never_admitted(namespace: str, name: str) -> None:
    raise AssertionError(f"{name} was admitted")


def test_figures_that_move_wait_for_the_refresh_a_new_kind_of_wait_does_not(
    kube: FakeKube,
) -> None:
    shown: dict[str, dict[str, Any]] = {}

    def tick(running_cpu: list[tuple[str, str]], waiting_user: str) -> list[tuple[str, dict]]:
        """One tick over three running jobs and two waiting ones that show what was last
        written of them (as their events would); the writes it made."""
        before = len(kube.writes)
        records = [
            job(f"run-{i}", user, cpu, running=True) for i, (user, cpu) in enumerate(running_cpu)
        ] + [
            job(f"wait-{i}", waiting_user, "1", running=False, shown=shown.get(f"wait-{i}"))
            for i in (1, 2)
        ]
        asyncio.run(scheduler.tick({}, records, never_admitted))
        made = kube.writes[before:]
        for name, body in made:
            shown.setdefault(name, {}).update(body)
        return made

    # 3.6 of 4 CPUs in use: bob's jobs of 1 CPU wait for room, each told where it stands.
    made = tick([("alice", "1200m")] * 3, "bob")
    assert sorted(name for name, _ in made) == ["wait-1", "wait-2"]
    assert shown["wait-1"]["message"] == (
        "waiting: cluster capacity: cpu 3600m/4 in use, needs 1; position 1"
    )
    assert shown["wait-2"]["queuePosition"] == 2

    # A running job's share changed (3.4 in use): the same wait, new figures; not a write
    # per job at every such change, only at the refresh.
    assert tick([("alice", "1200m"), ("alice", "1200m"), ("alice", "1000m")], "bob") == []
    for key in scheduler._memory.positions:
        scheduler._memory.positions[key] -= scheduler.POSITION_REFRESH_SECONDS
    made = tick([("alice", "1200m"), ("alice", "1200m"), ("alice", "1000m")], "bob")
    assert sorted(name for name, _ in made) == ["wait-1", "wait-2"]
    assert shown["wait-1"]["message"] == (
        "waiting: cluster capacity: cpu 3400m/4 in use, needs 1; position 1"
    )

    # The waiting jobs' own user now has 3 running (the limit): a new kind of wait, written
    # at once, though the refresh is not due.
    made = tick([("bob", "1200m"), ("bob", "1200m"), ("bob", "1000m")], "bob")
    assert sorted(name for name, _ in made) == ["wait-1", "wait-2"]
    assert shown["wait-2"]["message"] == "waiting: user limit 3/3 running; position 2"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (
            "waiting: cluster capacity: cpu 1750m/2 in use, needs 250m; position 3",
            "waiting: cluster capacity: cpu 1500m/2 in use, needs 250m; position 9",
            True,
        ),
        (
            "waiting: cluster capacity: memory 1.5Gi/3Gi in use, needs 256Mi; position 1",
            "waiting: cluster capacity: memory 2Gi/3Gi in use, needs 256Mi; position over 100",
            True,
        ),
        (
            "waiting: cluster capacity: cpu 1750m/2 in use, needs 250m; position 3",
            "waiting: cluster capacity: memory 2Gi/3Gi in use, needs 256Mi; position 3",
            False,
        ),
        (
            "waiting: user limit 3/3 running; position 1",
            "waiting: namespace limit 3/3 running; position 1",
            False,
        ),
    ],
)
def test_reason_kind(a: str, b: str, same: bool) -> None:
    assert (scheduler.reason_kind(a) == scheduler.reason_kind(b)) is same
