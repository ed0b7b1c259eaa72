"""Admission decisions (controller/queueing.py): fair share, limits, capacity, messages."""

from __future__ import annotations

import pytest

from qiskit_serverless_operator.controller.queueing import (
    Limits,
    Running,
    Waiting,
    cpu_millis,
    decayed,
    memory_bytes,
    plan,
)
from tests.unit.operator_env import REQUIRED

pytestmark = pytest.mark.unit


def job(key: str, user: str, at: float, ns: str = "ns", priority: int = 0, cpu: int = 500):
    return Waiting(f"{ns}/{key}", ns, user, priority, at, cpu, 2**30)


@pytest.mark.parametrize(
    ("text", "millis"), [("500m", 500), ("2", 2000), ("0.25", 250), (1, 1000), ("1.5", 1500)]
)
def test_cpu_quantities(text, millis) -> None:
    assert cpu_millis(text) == millis


@pytest.mark.parametrize(
    ("text", "size"),
    [("1Gi", 2**30), ("512Mi", 2**29), ("1G", 10**9), ("1000", 1000), ("1e3", 1000), (64, 64)],
)
def test_memory_quantities(text, size) -> None:
    assert memory_bytes(text) == size


@pytest.mark.parametrize("bad", ["lots", "1.2.3", "-1", "5X"])
def test_bad_quantities_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        cpu_millis(bad)
    with pytest.raises(ValueError):
        memory_bytes(bad)


def test_usage_halves_every_half_life() -> None:
    assert decayed(100.0, 3600, 3600) == pytest.approx(50.0)
    assert decayed(100.0, 7200, 3600) == pytest.approx(25.0)
    assert decayed(100.0, 0, 3600) == 100.0


def test_user_limit_holds_and_says_why() -> None:
    waiting = [job(f"a{i}", "alice", i) for i in range(6)]
    result = plan(waiting, [], {}, Limits(per_user=2))
    assert result.admit == ["ns/a0", "ns/a1"]
    assert result.waiting["ns/a2"] == (1, "waiting: user limit 2/2 running; position 1")
    assert result.waiting["ns/a5"][0] == 4


def test_a_lighter_user_goes_before_a_heavier_users_older_job() -> None:
    """The must-show story: alice runs 2 (her limit) and waits with 4; bob submits later.
    When a slot frees (namespace limit), bob's job goes first: alice has used more."""
    running = [Running("ns", "alice", 500, 2**30)]
    waiting = [job(f"a{i}", "alice", i) for i in range(2, 6)] + [job("b0", "bob", 100)]
    result = plan(waiting, running, {"alice": 40.0}, Limits(per_user=2, per_namespace=2))
    assert result.admit == ["ns/b0"]
    assert result.waiting["ns/a2"][1] == "waiting: namespace limit 2/2 running; position 1"


def test_equal_usage_alternates_users_instead_of_filling_with_one() -> None:
    waiting = [job(f"a{i}", "alice", i) for i in range(4)] + [job("b0", "bob", 10)]
    result = plan(waiting, [], {}, Limits(cpu_millis=1500))
    assert result.admit == ["ns/a0", "ns/b0", "ns/a1"]
    assert result.waiting["ns/a2"][1].startswith("waiting: cluster capacity: cpu 1500m/1500m")


def test_priority_orders_a_users_own_jobs_then_submission_time() -> None:
    waiting = [job("low", "alice", 1), job("high", "alice", 2, priority=5), job("old", "alice", 0)]
    result = plan(waiting, [], {}, Limits(per_user=1))
    assert result.admit == ["ns/high"]
    assert [k for k, _ in sorted(result.waiting.items(), key=lambda kv: kv[1][0])] == [
        "ns/old",
        "ns/low",
    ]


def test_a_user_at_the_limit_does_not_block_others() -> None:
    running = [Running("ns", "alice", 500, 2**30)]
    waiting = [job("a1", "alice", 0), job("b1", "bob", 5)]
    result = plan(waiting, running, {}, Limits(per_user=1))
    assert result.admit == ["ns/b1"]


def test_namespace_limit_is_per_namespace() -> None:
    running = [Running("team1", "alice", 500, 2**30)]
    waiting = [job("x", "bob", 0, ns="team1"), job("y", "bob", 1, ns="team2")]
    result = plan(waiting, running, {}, Limits(per_namespace=1))
    assert result.admit == ["team2/y"]
    assert "namespace limit 1/1" in result.waiting["team1/x"][1]


def test_a_job_bigger_than_the_capacity_fails_fast() -> None:
    waiting = [job("huge", "alice", 0, cpu=64_000), job("ok", "alice", 1)]
    result = plan(waiting, [], {}, Limits(cpu_millis=2000, memory_bytes=8 * 2**30))
    assert result.admit == ["ns/ok"]
    assert "could never start" in result.impossible["ns/huge"]
    assert "ns/huge" not in result.waiting


def test_best_effort_lets_smaller_jobs_pass_one_the_cluster_has_no_room_for() -> None:
    running = [Running("ns", "carol", 1000, 2**30)]
    waiting = [job("big", "alice", 0, cpu=1500), job("small", "bob", 1, cpu=500)]
    result = plan(waiting, running, {}, Limits(cpu_millis=2000))
    assert result.admit == ["ns/small"]
    assert result.waiting["ns/big"][1].startswith("waiting: cluster capacity: cpu 1500m/2 in use")


def test_strict_fifo_holds_the_capacity_for_the_first_job_that_does_not_fit() -> None:
    running = [Running("ns", "carol", 1000, 2**30)]
    waiting = [job("big", "alice", 0, cpu=1500), job("small", "bob", 1, cpu=500)]
    result = plan(waiting, running, {}, Limits(cpu_millis=2000, hold_capacity=True))
    assert result.admit == []
    assert result.waiting["ns/big"] == (
        1,
        "waiting: cluster capacity: cpu 1/2 in use, needs 1500m; position 1",
    )
    assert result.waiting["ns/small"] == (
        2,
        "waiting: cluster capacity: held for ns/big, ahead in the queue; position 2",
    )
    # Once the running job ends, the held job is the one that starts.
    after = plan(waiting, [], {}, Limits(cpu_millis=2000, hold_capacity=True))
    assert after.admit == ["ns/big", "ns/small"]


def test_strict_fifo_still_skips_a_user_at_their_limit() -> None:
    """Only a lack of room holds; a job waiting for its own user's slot blocks nobody."""
    running = [Running("ns", "alice", 500, 2**30)]
    waiting = [job("a1", "alice", 0), job("b1", "bob", 5), job("c1", "carol", 6, cpu=1600)]
    result = plan(waiting, running, {}, Limits(per_user=1, cpu_millis=2000, hold_capacity=True))
    assert result.admit == ["ns/b1"]
    assert "user limit 1/1" in result.waiting["ns/a1"][1]
    assert result.waiting["ns/c1"][1].startswith("waiting: cluster capacity: cpu 1/2 in use")


def test_strict_fifo_jobs_ahead_of_the_held_one_start_as_usual() -> None:
    waiting = [job("first", "alice", 0, cpu=1000), job("big", "bob", 1, cpu=2000)]
    waiting.append(job("late", "carol", 2, cpu=500))
    result = plan(waiting, [], {}, Limits(cpu_millis=2000, hold_capacity=True))
    assert result.admit == ["ns/first"]
    assert "held for ns/big" in result.waiting["ns/late"][1]


def test_no_limits_admits_everything() -> None:
    waiting = [job(f"j{i}", f"u{i % 3}", i) for i in range(50)]
    result = plan(waiting, [], {}, Limits())
    assert len(result.admit) == 50 and not result.waiting


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("QSO_MAX_RUNNING_PER_USER", "0", "must be at least 1"),
        ("QSO_MAX_RUNNING_PER_NAMESPACE", "two", "must be an integer"),
        ("QSO_CAPACITY_CPU", "lots", "must be a Kubernetes cpu quantity"),
        ("QSO_CAPACITY_MEMORY", "8 GB", "must be a Kubernetes memory quantity"),
        ("QSO_QUEUEING_STRATEGY", "strict", "must be BestEffortFIFO or StrictFIFO"),
    ],
)
def test_bad_queue_settings_are_refused_by_name(name, value, says) -> None:
    from qiskit_serverless_operator.config import ConfigError, OperatorConfig

    env = {**REQUIRED, "QSO_JOB_ENDPOINT_URL": "http://g", name: value}
    with pytest.raises(ConfigError, match=name) as info:
        OperatorConfig.from_env(env)
    assert says in str(info.value)


def test_a_job_waiting_on_its_tasks_yields_its_slot_but_not_its_resources() -> None:
    # alice's job waits on its tasks (counted=False): with a limit of one, a task runs; the
    # job's pod still holds its CPU.
    running = [Running("ns", "alice", 600, 2**28, counted=False)]
    waiting = [job(f"t{i}", "alice", i) for i in range(2)]
    result = plan(waiting, running, {}, Limits(per_user=1, cpu_millis=1100))
    assert result.admit == ["ns/t0"]
    assert result.waiting["ns/t1"][1] == "waiting: user limit 1/1 running; position 1"
    tight = plan(waiting, running, {}, Limits(per_user=1, cpu_millis=1000))
    assert tight.admit == [] and "cluster capacity" in tight.waiting["ns/t0"][1]
