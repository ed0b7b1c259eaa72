"""The usage ledger is written a few finished jobs at a time, and the queue's order counts a
finished job that is not in it yet from its record."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from qiskit_serverless_operator.controller import queueing, scheduler
from qiskit_serverless_operator.controller.context import get_context
from qiskit_serverless_operator.controller.jobstore import JobRecord, record_of
from qiskit_serverless_operator.kube import ServerlessQueue
from tests.unit.operator_env import queue_under_test


class FakeKube:
    def __init__(self) -> None:
        self.writes: list[tuple[str, str, dict[str, Any]]] = []

    async def patch_status(self, kind: Any, name: str, namespace: Any, body: dict) -> dict:
        self.writes.append((kind.__name__, name, body))
        return {}


def finished(name: str, user: str, seconds: float) -> JobRecord:
    end = time.time() - 1
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end - seconds))
    done = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))
    return record_of(
        {
            "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}"},
            "spec": {"function": "f"},
            "status": {
                "phase": "DONE",
                "user": user,
                "admittedAt": stamp,
                "startTime": stamp,
                "completionTime": done,
            },
        }
    )


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    fake = FakeKube()
    queue_under_test(monkeypatch, fake)
    return fake


def test_finished_jobs_go_to_the_ledger_a_few_at_a_time(
    kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_usage: list[dict[str, float]] = []
    plan = queueing.plan

    def spy(waiting: Any, running: Any, used: dict[str, float], limits: Any) -> Any:
        seen_usage.append(dict(used))
        return plan(waiting, running, used, limits)

    monkeypatch.setattr(queueing, "plan", spy)

    async def no_start(namespace: str, name: str) -> None:
        return None

    def ledger_writes() -> list[dict[str, Any]]:
        return [
            b for kind, _, b in kube.writes if kind == ServerlessQueue.__name__ and "ledger" in b
        ]

    def marks() -> list[str]:
        return sorted(n for kind, n, b in kube.writes if b == {"accounted": True})

    first = [finished("a1", "alice", 100), finished("a2", "alice", 50)]
    asyncio.run(scheduler.tick({}, first, no_start))
    # The first finished jobs after a quiet spell are written at once, in one write.
    assert len(ledger_writes()) == 1
    assert ledger_writes()[0]["accountedJobs"] == ["uid-a1", "uid-a2"]
    assert ledger_writes()[0]["ledger"]["alice"]["seconds"] == pytest.approx(150, abs=1)
    assert marks() == ["a1", "a2"]

    # Their records do not show the mark yet, and a third job finished: no ledger write
    # within LEDGER_SECONDS, but the order counts alice's 150 s once and bob's 30 s.
    later = [*first, finished("b1", "bob", 30)]
    asyncio.run(scheduler.tick({}, later, no_start))
    assert len(ledger_writes()) == 1
    assert seen_usage[-1]["alice"] == pytest.approx(150, abs=1)
    assert seen_usage[-1]["bob"] == pytest.approx(30, abs=1)

    # Once LEDGER_SECONDS have passed, the next tick writes it (and only it) and marks it.
    scheduler._memory.ledger_at -= scheduler.LEDGER_SECONDS
    asyncio.run(scheduler.tick({}, later, no_start))
    assert len(ledger_writes()) == 2
    assert ledger_writes()[1]["accountedJobs"] == ["uid-a1", "uid-a2", "uid-b1"]
    assert ledger_writes()[1]["ledger"]["bob"]["seconds"] == pytest.approx(30, abs=1)
    assert marks() == ["a1", "a2", "b1"]


def test_an_idle_queue_rewrites_its_summary_once_a_minute_not_every_5_s(kube: FakeKube) -> None:
    ctx = get_context()
    limits = queueing.Limits(per_user=None, per_namespace=None, cpu_millis=4000, memory_bytes=None)

    def summary(used: dict[str, float]) -> int:
        queue = {"status": kube.writes[-1][2]} if kube.writes else {}
        asyncio.run(scheduler._write_summary(ctx, queue, [], [], used, limits))
        return len(kube.writes)

    assert summary({"alice": 100.0}) == 1
    scheduler._memory.summary_at -= scheduler.SUMMARY_SECONDS
    # Only the usage decayed: not written until a minute has passed.
    assert summary({"alice": 99.0}) == 1
    scheduler._memory.summary_at -= scheduler.SUMMARY_USAGE_SECONDS
    assert summary({"alice": 98.0}) == 2
    assert kube.writes[-1][2]["users"][0]["usageSeconds"] == 98.0
    # A new user is news: written 5 s after the last write.
    scheduler._memory.summary_at -= scheduler.SUMMARY_SECONDS
    assert summary({"alice": 98.0, "bob": 1.0}) == 3
