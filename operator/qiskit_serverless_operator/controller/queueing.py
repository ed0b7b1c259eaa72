"""Admission decisions, as pure functions: which waiting jobs start now, and why the rest wait.

The scheduler (scheduler.py) feeds these from the cluster's own records each tick; nothing
here keeps state, so a restarted operator decides exactly as the old one would have.

Order among waiting jobs (fair share): the submitter's recent usage (decayed job-seconds,
lower first), then how many jobs that user already runs, then ``spec.priority`` (higher
first), then submission time. A job is admitted when its user, its namespace and the
cluster all have room. A job at its user's or namespace's limit is skipped, so one user at
their limit never blocks another. A job the cluster has no room for is skipped too
(``BestEffortFIFO``, the default, as in Kueue), or, with ``StrictFIFO``, holds the capacity:
no job after it starts until it has, so a large job cannot be passed forever.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

_CPU = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m?)$")
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([EPTGMK]i?|[kmun]|e[0-9]+)?$")
_MEMORY_UNITS = {
    None: 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def cpu_millis(value: str | int | float) -> int:
    """A Kubernetes CPU quantity ("500m", "2", 0.5) in millicores."""
    if isinstance(value, int | float):
        return math.ceil(value * 1000)
    match = _CPU.match(str(value).strip())
    if not match:
        raise ValueError(f"not a CPU quantity: {value!r}")
    number = float(match.group(1))
    return math.ceil(number if match.group(2) else number * 1000)


def memory_bytes(value: str | int | float) -> int:
    """A Kubernetes memory quantity ("1Gi", "512M", 1000) in bytes."""
    if isinstance(value, int | float):
        return math.ceil(value)
    match = _MEMORY.match(str(value).strip())
    if not match:
        raise ValueError(f"not a memory quantity: {value!r}")
    number, unit = float(match.group(1)), match.group(2)
    if unit and unit.startswith("e"):
        return math.ceil(number * 10 ** int(unit[1:]))
    if unit in ("m", "u", "n"):
        return math.ceil(number / {"m": 10**3, "u": 10**6, "n": 10**9}[unit])
    return math.ceil(number * _MEMORY_UNITS[unit])


def decayed(value: float, elapsed_seconds: float, half_life_seconds: float) -> float:
    """``value`` after ``elapsed_seconds`` of exponential decay (halves every half-life)."""
    if elapsed_seconds <= 0 or half_life_seconds <= 0:
        return value
    return value * 0.5 ** (elapsed_seconds / half_life_seconds)


# Starts every reason that is a lack of room in the cluster (what StrictFIFO holds for).
_NO_ROOM = "cluster capacity"


@dataclass(frozen=True)
class Limits:
    """None means no limit."""

    per_user: int | None = None
    per_namespace: int | None = None
    cpu_millis: int | None = None
    memory_bytes: int | None = None
    # StrictFIFO: the first job in order the cluster has no room for holds the capacity.
    hold_capacity: bool = False


@dataclass(frozen=True)
class Waiting:
    key: str  # namespace/name
    namespace: str
    user: str
    priority: int
    submitted: float  # epoch seconds
    cpu: int  # millicores
    memory: int  # bytes


@dataclass(frozen=True)
class Running:
    namespace: str
    user: str
    cpu: int
    memory: int
    # Counted against the user and namespace limits (not while it waits on its own tasks).
    counted: bool = True


@dataclass
class Plan:
    admit: list[str] = field(default_factory=list)
    # key -> (1-based position among the jobs still waiting, why it waits)
    waiting: dict[str, tuple[int, str]] = field(default_factory=dict)
    # key -> why it can never run (bigger than the whole capacity)
    impossible: dict[str, str] = field(default_factory=dict)


def format_cpu(millis: int) -> str:
    return f"{millis}m" if millis % 1000 else str(millis // 1000)


def format_memory(value: int) -> str:
    for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value >= size:
            return f"{value / size:.1f}{unit}".replace(".0" + unit, unit)
    return str(value)


def plan(
    waiting: list[Waiting],
    running: list[Running],
    usage: dict[str, float],
    limits: Limits,
) -> Plan:
    """Decide admissions for one tick. ``usage``: each user's decayed job-seconds."""
    result = Plan()
    by_user = Counter(r.user for r in running if r.counted)
    by_namespace = Counter(r.namespace for r in running if r.counted)
    cpu_used = sum(r.cpu for r in running)
    memory_used = sum(r.memory for r in running)

    candidates = []
    for job in waiting:
        if limits.cpu_millis is not None and job.cpu > limits.cpu_millis:
            result.impossible[job.key] = (
                f"requests cpu {format_cpu(job.cpu)}, more than the cluster's capacity for jobs "
                f"({format_cpu(limits.cpu_millis)}): it could never start"
            )
        elif limits.memory_bytes is not None and job.memory > limits.memory_bytes:
            result.impossible[job.key] = (
                f"requests memory {format_memory(job.memory)}, more than the cluster's capacity "
                f"for jobs ({format_memory(limits.memory_bytes)}): it could never start"
            )
        else:
            candidates.append(job)

    def order(job: Waiting) -> tuple[float, int, int, float, str]:
        return (usage.get(job.user, 0.0), by_user[job.user], -job.priority, job.submitted, job.key)

    pending = sorted(candidates, key=order)
    reasons: dict[str, str] = {}
    # Admit one at a time and re-rank: each admission raises its user's running count,
    # so free slots alternate between users of equal usage instead of going to one.
    held_for: Waiting | None = None
    while pending:
        admitted = None
        for job in pending:
            why = _blocked(job, by_user, by_namespace, cpu_used, memory_used, limits)
            if why is None:
                admitted = job
                break
            reasons[job.key] = why
            if limits.hold_capacity and why.startswith(_NO_ROOM):
                held_for = job
                break
        if admitted is None:
            break
        result.admit.append(admitted.key)
        reasons.pop(admitted.key, None)
        by_user[admitted.user] += 1
        by_namespace[admitted.namespace] += 1
        cpu_used += admitted.cpu
        memory_used += admitted.memory
        pending.remove(admitted)
        pending.sort(key=order)

    held: str | None = None  # the reason of the jobs behind the one holding the capacity
    for position, job in enumerate(pending, start=1):
        why = reasons.get(job.key) or _blocked(
            job, by_user, by_namespace, cpu_used, memory_used, limits
        )
        if held is not None:
            # Not looked at: the capacity is held for a job ahead (its own limit may also apply).
            why = why or held
        if job is held_for:
            held = f"{_NO_ROOM}: held for {job.key}, ahead in the queue"
        result.waiting[job.key] = (position, f"waiting: {why}; position {position}")
    return result


def _blocked(
    job: Waiting,
    by_user: Counter[str],
    by_namespace: Counter[str],
    cpu_used: int,
    memory_used: int,
    limits: Limits,
) -> str | None:
    if limits.per_user is not None and by_user[job.user] >= limits.per_user:
        return f"user limit {by_user[job.user]}/{limits.per_user} running"
    if limits.per_namespace is not None and by_namespace[job.namespace] >= limits.per_namespace:
        return f"namespace limit {by_namespace[job.namespace]}/{limits.per_namespace} running"
    if limits.cpu_millis is not None and cpu_used + job.cpu > limits.cpu_millis:
        return (
            f"{_NO_ROOM}: cpu {format_cpu(cpu_used)}/{format_cpu(limits.cpu_millis)} in use, "
            f"needs {format_cpu(job.cpu)}"
        )
    if limits.memory_bytes is not None and memory_used + job.memory > limits.memory_bytes:
        return (
            f"{_NO_ROOM}: memory {format_memory(memory_used)}/"
            f"{format_memory(limits.memory_bytes)} in use, needs {format_memory(job.memory)}"
        )
    return None
