"""The admission loop: woken by news that can change its plan, at least once a second, and
resting after each tick in proportion to what the tick took."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aioenums

from qiskit_serverless_operator.controller import scheduler
from qiskit_serverless_operator.controller.jobstore import JobRecord, record_of


def rec(phase: str | None, reason: str | None = None, admitted: bool = False) -> JobRecord:
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if reason:
        status["reason"] = reason
    if admitted:
        status["admittedAt"] = "2026-12-06T10:00:00.000Z"
    return record_of(
        {
            "metadata": {"namespace": "ns", "name": "a", "uid": "u", "resourceVersion": "1"},
            "spec": {"function": "f"},
            "status": status,
        }
    )


def test_a_job_that_starts_waiting_is_worth_a_tick() -> None:
    assert scheduler.worth_a_tick(None, rec("QUEUED", "Pending"))
    assert scheduler.worth_a_tick(rec("QUEUED", "FunctionNotReady"), rec("QUEUED", "Pending"))
    assert scheduler.worth_a_tick(rec(None), rec("QUEUED", "Pending"))


def test_a_waiting_job_whose_position_moved_is_not() -> None:
    # The tick's own writes (positions, messages) must not wake it again.
    assert not scheduler.worth_a_tick(rec("QUEUED", "Pending"), rec("QUEUED", "Pending"))
    assert not scheduler.worth_a_tick(
        rec("QUEUED", "Pending"), rec("QUEUED", "Admitted", admitted=True)
    )


def test_a_job_that_ends_is_worth_a_tick_once() -> None:
    assert scheduler.worth_a_tick(rec("RUNNING", admitted=True), rec("DONE", admitted=True))
    assert scheduler.worth_a_tick(None, rec("ERROR"))
    assert not scheduler.worth_a_tick(rec("DONE", admitted=True), rec("DONE", admitted=True))
    assert not scheduler.worth_a_tick(rec("QUEUED", "Admitted"), rec("INITIALIZING"))


@pytest.fixture
def ticks(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Each tick's time (monotonic), with the store and the plan left out."""
    seen: list[float] = []

    async def no_records() -> list[JobRecord]:
        return []

    async def tick(queue: dict[str, Any], records: list[JobRecord], start: Any) -> None:
        seen.append(time.monotonic())

    monkeypatch.setattr(scheduler, "job_records", no_records)
    monkeypatch.setattr(scheduler, "tick", tick)
    return seen


async def _run_for(seconds: float, during: Any = None) -> None:
    setter: aioenums.FlagSetter[Any] = aioenums.FlagSetter()  # what kopf stops a daemon with
    stopped: kopf.DaemonStopped = setter.async_waiter

    async def start(namespace: str, name: str) -> None:
        raise AssertionError("nothing to start")

    loop = asyncio.create_task(scheduler.admission_loop(dict, stopped, start))
    if during is not None:
        await during()
    await asyncio.sleep(seconds)
    setter.set(kopf.DaemonStoppingReason.DAEMON_SIGNALLED)
    await asyncio.wait_for(loop, timeout=2 * scheduler.TICK_SECONDS)


def test_without_news_it_ticks_at_start_then_once_a_second(ticks: list[float]) -> None:
    asyncio.run(_run_for(2.5))
    assert len(ticks) == 3
    for before, after in itertools.pairwise(ticks):
        assert after - before == pytest.approx(
            scheduler.TICK_SECONDS + scheduler.REST_MIN_SECONDS, abs=0.2
        )


def test_news_makes_it_tick_at_once(ticks: list[float]) -> None:
    async def news_soon() -> None:
        await asyncio.sleep(0.2)
        woken = time.monotonic()
        scheduler.wake()
        await asyncio.sleep(0.1)
        after = [t for t in ticks if t >= woken]
        assert after, "no tick within 0.1 s of the news"
        assert after[0] - woken < 0.1

    asyncio.run(_run_for(0.1, news_soon))


def test_a_stream_of_news_is_folded_into_few_ticks(
    ticks: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def slow_tick(queue: dict[str, Any], records: list[JobRecord], start: Any) -> None:
        ticks.append(time.monotonic())
        await asyncio.sleep(0.1)  # a tick of 0.1 s rests 0.3 s after it

    monkeypatch.setattr(scheduler, "tick", slow_tick)

    async def news_all_the_time() -> None:
        for _ in range(100):
            scheduler.wake()
            await asyncio.sleep(0.01)

    asyncio.run(_run_for(0.0, news_all_the_time))
    # About a second of news, at 100 a second: a tick every 0.4 s, not a tick per job.
    assert 2 <= len(ticks) <= 4
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert all(gap >= 0.1 + scheduler.REST_PER_TICK_SECOND * 0.1 - 0.05 for gap in gaps)


def test_a_failed_tick_is_tried_again(ticks: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing_tick(queue: dict[str, Any], records: list[JobRecord], start: Any) -> None:
        ticks.append(time.monotonic())
        raise ConnectionRefusedError("the API server is restarting")

    monkeypatch.setattr(scheduler, "tick", failing_tick)

    async def news() -> None:
        scheduler.wake()

    asyncio.run(_run_for(2.5, news))
    assert len(ticks) >= 2  # the loop is still there after a failure


def test_a_childs_signature_moves_only_with_what_the_phase_is_derived_from() -> None:
    from qiskit_serverless_operator.controller.handlers import child_signature

    def pod_with(**status: Any) -> dict[str, Any]:
        return {"kind": "Pod", "metadata": {"uid": "p"}, "status": status}

    running = {"name": "main", "state": {"running": {"startedAt": "t"}}, "ready": False}
    base = pod_with(phase="Running", containerStatuses=[running])
    # Readiness, pod conditions, IPs: not what a job's phase is derived from.
    chatter = pod_with(
        phase="Running",
        podIP="10.0.0.1",
        conditions=[{"type": "Ready", "status": "True"}],
        containerStatuses=[{**running, "ready": True}],
    )
    assert child_signature(base) == child_signature(chatter)
    ended = {"name": "main", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}
    assert child_signature(base) != child_signature(
        pod_with(phase="Running", containerStatuses=[ended])
    )
    deleting = {**base, "metadata": {"uid": "p", "deletionTimestamp": "t"}}
    assert child_signature(base) != child_signature(deleting)

    def job_with(**status: Any) -> dict[str, Any]:
        return {
            "kind": "Job",
            "metadata": {"uid": "j"},
            "spec": {"suspend": False},
            "status": status,
        }

    assert child_signature(job_with(active=1)) == child_signature(job_with(active=1, ready=1))
    complete = job_with(conditions=[{"type": "Complete", "status": "True"}], completionTime="t")
    assert child_signature(job_with(active=1)) != child_signature(complete)
    suspended = {**job_with(), "spec": {"suspend": True}}
    assert child_signature(job_with()) != child_signature(suspended)
