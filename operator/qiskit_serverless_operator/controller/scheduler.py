"""The admission queue: between QUEUED and INITIALIZING, one loop decides who starts.

It is a kopf daemon on the cluster-scoped ServerlessQueue ``default``, so it runs in the
active replica only (kopf stops daemons while peering pauses a replica). It ticks when the
news can change the plan (a job starts waiting, a job ends: ``wake``) and at least once a
second; on an idle cluster a new job is admitted at once instead of at the
next whole second. Each tick works from the cluster's own records alone:

- every ServerlessJob as a small record (``jobstore``: kept by events, checked by listings);
- the finished jobs' usage ledger in the ServerlessQueue's status (durable);
- the nodes' allocatable CPU and memory, unless the capacity is configured.

An admission is written to the job's status (``admittedAt``) with a resourceVersion
precondition before anything is started, so a job is admitted once even across crashes
and replica hand-overs; the job's own reconcile (handed in by handlers.py, so this module
imports nothing of jobs.py) then starts it like any other job.

Usage is the ledger's (usage.py): finished jobs' decayed run seconds per user; running jobs
add their elapsed seconds on top, live.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
from lightkube.resources.core_v1 import Node

from .. import constants as c
from .. import memory
from ..constants import JobPhase, QueueingStrategy, QueueReason
from ..kube import ApiError, ServerlessJob, ServerlessQueue
from . import peering, pod_tokens, queueing, usage
from .conditions import now_iso
from .context import Context, get_context
from .jobstore import JobRecord, record_of, store
from .watched import watched

log = logging.getLogger(__name__)

MAX_STATUS_PATCHES_PER_TICK = 50
# A waiting job's position is rewritten at most this often while its reason stays the same:
# every admission moves every position, and each rewrite is an API write and a watch event.
POSITION_REFRESH_SECONDS = 10.0
# ... and further back less often: every POSITION_SECONDS_PER_PLACE seconds per place, so a
# job at position 50 is rewritten every 100 s. Each rewrite costs the API server as much as a
# job's phase change: with 100 positions at 10 s, a queue of hundreds spent a fifth of the
# two CPUs of the local node on positions (benchmarks/queue_burst.py).
POSITION_SECONDS_PER_PLACE = 2.0
POSITION_PATCHES_AT_ONCE = 8
NODE_CAPACITY_TTL = 30.0
# The queue's summary (kubectl get sq) is written at most this often: ticks come faster
# than that in a burst, and each write is an API write and a watch event (at 1 s, two per
# job of a burst: benchmarks/queue_burst.py).
SUMMARY_SECONDS = 5.0
# ... and when only the users' usage moved (it decays by the second, so an idle queue wrote
# its summary every 5 s for as long as anyone had used it), once a minute.
SUMMARY_USAGE_SECONDS = 60.0
# Finished jobs' usage goes to the ledger at most this often, several at a time: the ledger
# (with its last 2,000 accounted job UIDs, 80 KB) is one object written whole, and once per
# finished job it was the biggest write of each job in a burst. Until then the queue's
# order counts them from their records.
LEDGER_SECONDS = 5.0
_TERMINAL = {p.value for p in c.TERMINAL_JOB_PHASES}

# What the tick does to a job it admitted, or the safety net to one in flight: the job's
# own reconcile, handed in by handlers.py (this module imports nothing of the jobs).
Reconcile = Callable[[str, str], Awaitable[float | None]]


@dataclass
class _Memory:
    """This process's own recent writes, until the events show them (never the only copy)."""

    admitted: dict[str, float]
    positions: dict[str, float] = field(default_factory=dict)
    summary_at: float = float("-inf")  # when the queue's summary was last written (monotonic)
    ledger_at: float = float("-inf")  # when finished jobs were last accounted (monotonic)
    nodes: tuple[float, int, int] | None = None  # (fetched at, cpu millis, memory bytes)


_memory = _Memory(admitted={})
# The namespaces the operator watches (empty: all), so its listings see what its events do.
watched_namespaces: tuple[str, ...] = ()
# A full listing now and then, besides the first: catches a deletion whose event was lost.
RESYNC_SECONDS = 600.0
LIST_PAGE = 500


# The loop ticks at least this often, and sooner when woken; after a tick it rests a few
# times what the tick took (at least REST_MIN_SECONDS) before the next, so that a burst of
# thousands of jobs (each one news) costs a bounded share of a core, not a tick per job.
TICK_SECONDS = 1.0
REST_MIN_SECONDS = 0.05
REST_PER_TICK_SECOND = 3.0
# Freed heap is handed back to the system this often (memory.release: a few milliseconds
# for a heap of 150 MiB): during a burst of thousands of jobs the RSS follows what is live.
RELEASE_SECONDS = 5.0


class _Wake:
    """The admission loop's alarm: set by news, cleared by the loop when it ticks."""

    def __init__(self) -> None:
        self.event: asyncio.Event | None = None  # made in the loop's own event loop

    def set(self) -> None:
        if self.event is not None:
            self.event.set()


_wake = _Wake()


def wake() -> None:
    """Ask the admission loop for a tick now (it may rest a moment first, see above)."""
    _wake.set()


def worth_a_tick(old: JobRecord | None, new: JobRecord) -> bool:
    """Whether a job's new record can change the plan: it starts waiting for admission, or
    it ends (a slot, and its requests, are free). Other changes wait for the next tick."""
    waiting = new.phase == JobPhase.QUEUED and new.reason == QueueReason.PENDING
    if waiting and not new.admitted:
        return old is None or old.phase != new.phase or old.reason != new.reason
    return new.phase in _TERMINAL and (old is None or old.phase not in _TERMINAL)


async def admission_loop(
    queue: Callable[[], dict[str, Any]], stopped: kopf.DaemonStopped, start: Reconcile
) -> None:
    """Tick until stopped (kopf's daemon on the ServerlessQueue: the active replica only).
    ``queue`` gives the ServerlessQueue's latest body (kopf keeps a daemon's body live)."""
    _wake.event = asyncio.Event()
    _wake.event.set()  # the first tick at once: news from before the loop started
    released = time.monotonic()
    while not stopped:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_wake.event.wait(), timeout=TICK_SECONDS)
        if stopped:
            break
        _wake.event.clear()
        began = time.monotonic()
        try:
            records = await job_records()
            await tick(queue(), records, start=start)
        except Exception as exc:  # the API server restarting, say: tick again after a pause
            log.error("admission tick failed: %r", exc)
            _wake.event.set()
            rest = TICK_SECONDS
        else:
            took = time.monotonic() - began
            if took > SLOW_TICK_SECONDS:
                log.warning("admission tick took %.1f s (%d job records)", took, len(records))
            rest = max(REST_MIN_SECONDS, REST_PER_TICK_SECOND * took)
        if time.monotonic() - released > RELEASE_SECONDS:
            memory.release()  # what a burst of events left behind, a few seconds after
            released = time.monotonic()
        await stopped.wait(rest)


# An admission tick slower than this is logged: admissions wait for it.
SLOW_TICK_SECONDS = 5.0


async def ensure_queue(ctx: Context) -> None:
    """Create the ServerlessQueue ``default`` if it is missing (its timer is the loop)."""
    body = {
        "apiVersion": c.API_VERSION,
        "kind": c.QUEUE_KIND,
        "metadata": {"name": c.QUEUE_NAME, "labels": {c.LABEL_MANAGED_BY: c.MANAGER}},
        "spec": {},
    }
    await peering.create_if_missing(ctx.kube, body, f"{c.QUEUE_PLURAL}.{c.GROUP}")


async def _capacity(ctx: Context) -> tuple[int | None, int | None]:
    cfg = ctx.config
    cpu = queueing.cpu_millis(cfg.capacity_cpu) if cfg.capacity_cpu else None
    memory = queueing.memory_bytes(cfg.capacity_memory) if cfg.capacity_memory else None
    if cpu is not None and memory is not None:
        return cpu, memory
    now = time.monotonic()
    if _memory.nodes is None or now - _memory.nodes[0] > NODE_CAPACITY_TTL:
        total_cpu = total_memory = 0
        async for node in ctx.kube.client.list(Node):
            if node.spec and node.spec.unschedulable:
                continue
            ready = any(
                cond.type == "Ready" and cond.status == "True"
                for cond in (node.status.conditions or [])
            )
            if not ready:
                continue
            allocatable = node.status.allocatable or {}
            total_cpu += queueing.cpu_millis(allocatable.get("cpu", 0))
            total_memory += queueing.memory_bytes(allocatable.get("memory", 0))
        _memory.nodes = (now, total_cpu, total_memory)
    return (
        cpu if cpu is not None else _memory.nodes[1],
        memory if memory is not None else _memory.nodes[2],
    )


async def _patch_job(
    ctx: Context, rec: JobRecord, changes: dict[str, Any]
) -> dict[str, Any] | None:
    """A status patch conditional on the record being current: the job as written, or
    None if the record was not current."""
    try:
        return await ctx.kube.patch_status(
            ServerlessJob, rec.name, rec.namespace, changes, resource_version=rec.resource_version
        )
    except ApiError as exc:
        if exc.status.code in (404, 409):
            return None
        raise


def _waits_the_same(a: JobRecord, b: JobRecord) -> bool:
    """Whether two records of a job agree on all an admission was decided from."""
    fields = ("uid", "phase", "reason", "admitted", "user", "priority", "cpu", "memory")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


async def _admit(ctx: Context, rec: JobRecord, changes: dict[str, Any]) -> bool:
    """The admission write, conditional on the job being as the plan saw it. A job's first
    status is followed at once by kopf's own bookkeeping write (its annotations), so the
    record a wake-up tick holds is often one version behind: on a conflict the job is read
    again, and admitted against that copy if it still waits as recorded. The job as written
    is the start's copy (watched.py): no read of it again to start it."""
    written = await _patch_job(ctx, rec, changes)
    if written is None:
        body = await ctx.kube.get(ServerlessJob, rec.name, rec.namespace)
        if body is None:
            return False
        fresh = record_of(body)
        if not _waits_the_same(rec, fresh):
            return False
        written = await _patch_job(ctx, fresh, changes)
        if written is None:
            return False
    watched.job_seen(rec.key, written)
    return True


async def sync_store(ctx: Context) -> None:
    """Merge a full listing of the ServerlessJobs (in pages) into the store."""
    began = time.monotonic()
    listed: list[JobRecord] = []
    for namespace in watched_namespaces or ("*",):
        async for body in ctx.kube.each(ServerlessJob, namespace, LIST_PAGE):
            listed.append(record_of(body))
    store.merge_listing(listed, began)
    log.info("job records synced with a listing: %d jobs", len(listed))


async def job_records() -> list[JobRecord]:
    """Every job's record, once the store has merged a full listing (and again now and then)."""
    ctx = get_context()
    if store.synced_at is None or time.monotonic() - store.synced_at > RESYNC_SECONDS:
        await sync_store(ctx)
    return store.all()


async def tick(queue: dict[str, Any], records: list[JobRecord], start: Reconcile) -> None:
    """One admission round: count finished jobs' usage, admit who may start (and start
    them with ``start``), tell the others why they wait and where."""
    ctx = get_context()
    cfg = ctx.config
    now = time.time()
    status = usage.latest_status(queue)

    finished = usage.unmarked(
        [r for r in records if r.phase in _TERMINAL and r.admitted and r.start and not r.accounted]
    )
    if finished and time.monotonic() - _memory.ledger_at >= LEDGER_SECONDS:
        status = await usage.account(ctx, finished, status, now)
        _memory.ledger_at = time.monotonic()
        finished = []

    for key, at in list(_memory.admitted.items()):
        if now - at > 60:
            del _memory.admitted[key]
    admitted_keys = set(_memory.admitted)
    running_records = [
        r for r in records if (r.admitted or r.key in admitted_keys) and r.phase not in _TERMINAL
    ]
    waiting_records = {
        r.key: r
        for r in records
        if r.phase == JobPhase.QUEUED
        and r.reason == QueueReason.PENDING
        and not r.admitted
        and r.key not in admitted_keys
    }
    for rec in records:
        if rec.admitted:
            _memory.admitted.pop(rec.key, None)
            _memory.positions.pop(rec.key, None)

    used = usage.decayed_usage(status.get("ledger") or {}, now, cfg.usage_half_life_seconds)
    for r in running_records:
        if r.start:
            used[r.user] = used.get(r.user, 0.0) + max(0.0, now - r.start)
    for r in usage.not_in_ledger(finished, status):
        used[r.user] = used.get(r.user, 0.0) + usage.run_seconds(r, now)

    # A job with tasks still to finish waits on them: its slot is theirs (a user limit of 1
    # still runs a job's tasks, one at a time), its pod's requests stay counted.
    waiting_on_tasks = {
        f"{r.namespace}/{r.task_parent}"
        for r in records
        if r.task_parent and r.phase not in c.TERMINAL_JOB_PHASES
    }
    cpu, memory = await _capacity(ctx)
    limits = queueing.Limits(
        per_user=cfg.max_running_per_user,
        per_namespace=cfg.max_running_per_namespace,
        cpu_millis=cpu,
        memory_bytes=memory,
        hold_capacity=cfg.queueing_strategy == QueueingStrategy.STRICT_FIFO,
    )
    plan = queueing.plan(
        [
            queueing.Waiting(r.key, r.namespace, r.user, r.priority, r.submitted, r.cpu, r.memory)
            for r in waiting_records.values()
        ],
        [
            queueing.Running(
                r.namespace, r.user, r.cpu, r.memory, counted=r.key not in waiting_on_tasks
            )
            for r in running_records
        ],
        used,
        limits,
    )

    started = []
    for key in plan.admit:
        rec = waiting_records[key]
        ok = await _admit(
            ctx,
            rec,
            {
                "reason": QueueReason.ADMITTED.value,
                "message": "admitted; starting",
                # Milliseconds: admissions within one second keep their order.
                "admittedAt": datetime.datetime.now(datetime.UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                "queuePosition": None,
                "user": rec.user,
                # The pod's token for the job endpoint, made now: no write of its own later.
                "tokenSha256": pod_tokens.issue(rec.namespace, rec.name, rec.uid),
            },
        )
        if ok:
            _memory.admitted[key] = now
            started.append(rec)
            log.info("admitted job %s (user %s)", key, rec.user)
    for key, why in plan.impossible.items():
        rec = waiting_records[key]
        await _patch_job(
            ctx,
            rec,
            {
                "phase": JobPhase.ERROR.value,
                "reason": "Unschedulable",
                "message": why,
                "completionTime": now_iso(),
                "queuePosition": None,
            },
        )

    budget = MAX_STATUS_PATCHES_PER_TICK
    moves: list[tuple[JobRecord, dict[str, Any]]] = []
    for key, (position, message) in sorted(plan.waiting.items(), key=lambda kv: kv[1][0]):
        if budget <= 0:
            break
        rec = waiting_records[key]
        shown: int | None = position
        if position > cfg.queue_positions_shown:
            if rec.position is None:
                # Deep in the queue and never shown a place: its "waiting for admission"
                # stands until it is among the first ones. Saying why for each of 10,000
                # waiting jobs was 10,000 writes (and events) for display only.
                continue
            shown = None
            message = message.rsplit("; position", 1)[0] + (
                f"; position over {cfg.queue_positions_shown}"
            )
        if rec.position == shown and rec.message == message:
            continue
        same_reason = reason_kind(rec.message or "") == reason_kind(message)
        last = _memory.positions.get(key, 0.0)
        refresh = max(POSITION_REFRESH_SECONDS, POSITION_SECONDS_PER_PLACE * position)
        if same_reason and rec.position is not None and now - last < refresh:
            continue  # only the number moved: refresh it now and then, not every tick
        budget -= 1
        moves.append((rec, {"queuePosition": shown, "message": message}))
    await _patch_many(ctx, moves, now)

    if started:
        outcomes = await asyncio.gather(
            *(start(r.namespace, r.name) for r in started), return_exceptions=True
        )
        for rec, outcome in zip(started, outcomes, strict=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, kopf.TemporaryError):
                # The job stays admitted; the safety net and its own events look again.
                log.error("starting admitted job %s failed: %r", rec.key, outcome, exc_info=outcome)

    still_waiting = [r for r in waiting_records.values() if r.key in plan.waiting]
    await _write_summary(ctx, queue, [*running_records, *started], still_waiting, used, limits)


def reason_kind(message: str) -> str:
    """What a waiting job waits for, without the figures that move with each admission and
    each finished job (``cpu 1750m/2 in use``, its position): a new kind of wait is shown at
    once, new figures of the same one with the position's refresh. Written at each change,
    "cpu 1500m/2" and "cpu 1750m/2" taking turns as jobs ended and started made a write per
    shown job at each turn. (What remains of a burst's position writes, 3.5 per job of 150
    in benchmarks/api_requests.py, is the refresh rule's own: docs/operator.md.)"""
    return _FIGURES.sub("#", message.rsplit("; position", 1)[0])


_FIGURES = re.compile(r"\d+(?:\.\d+)?[A-Za-z]*")


async def _patch_many(
    ctx: Context, moves: list[tuple[JobRecord, dict[str, Any]]], now: float
) -> None:
    """Waiting jobs' new positions, a few at a time: one after the other, 50 of them held
    the tick (and so every admission) for seconds on a busy API server."""
    limit = asyncio.Semaphore(POSITION_PATCHES_AT_ONCE)

    async def move(rec: JobRecord, changes: dict[str, Any]) -> None:
        async with limit:
            if await _patch_job(ctx, rec, changes) is not None:
                _memory.positions[rec.key] = now

    await asyncio.gather(*(move(rec, changes) for rec, changes in moves))


def _user_entry(users: dict[str, dict[str, Any]], user: str) -> dict[str, Any]:
    return users.setdefault(user, {"user": user, "usageSeconds": 0.0, "running": 0, "waiting": 0})


async def _write_summary(
    ctx: Context,
    queue: dict[str, Any],
    running: list[JobRecord],
    waiting: list[JobRecord],
    used: dict[str, float],
    limits: queueing.Limits,
) -> None:
    """The ServerlessQueue's status: what `kubectl get sq` and `-o yaml` show."""
    cfg = ctx.config
    users: dict[str, dict[str, Any]] = {}
    for user, seconds in used.items():
        if seconds >= 0.05:
            _user_entry(users, user)["usageSeconds"] = round(seconds, 1)
    for rec in running:
        _user_entry(users, rec.user)["running"] += 1
    for rec in waiting:
        _user_entry(users, rec.user)["waiting"] += 1
    ordered = sorted(users.values(), key=lambda u: (u["usageSeconds"], u["running"], u["user"]))
    cpu_used = sum(r.cpu for r in running)
    memory_used = sum(r.memory for r in running)
    fmt_cpu, fmt_memory = queueing.format_cpu, queueing.format_memory
    summary: dict[str, Any] = {
        "running": len(running),
        "waiting": len(waiting),
        "cpu": f"{fmt_cpu(cpu_used)}/"
        + (fmt_cpu(limits.cpu_millis) if limits.cpu_millis is not None else "-"),
        "memory": f"{fmt_memory(memory_used)}/"
        + (fmt_memory(limits.memory_bytes) if limits.memory_bytes is not None else "-"),
        "userCount": len(ordered),
        "limits": {
            key: value
            for key, value in {
                "perUser": cfg.max_running_per_user,
                "perNamespace": cfg.max_running_per_namespace,
                "cpu": fmt_cpu(limits.cpu_millis) if limits.cpu_millis is not None else None,
                "memory": fmt_memory(limits.memory_bytes)
                if limits.memory_bytes is not None
                else None,
                "usageHalfLifeSeconds": cfg.usage_half_life_seconds,
                "queueingStrategy": cfg.queueing_strategy.value,
            }.items()
            if value is not None
        },
        "users": ordered[:100],
    }
    current = queue.get("status") or {}
    if all(current.get(key) == value for key, value in summary.items()):
        return
    now = time.monotonic()
    if now - _memory.summary_at < SUMMARY_SECONDS:
        return  # a tick soon writes what it is then: counts, for people, not decisions
    if _only_usage_moved(current, summary) and now - _memory.summary_at < SUMMARY_USAGE_SECONDS:
        return  # the users' decaying usage always moves
    await ctx.kube.patch_status(ServerlessQueue, c.QUEUE_NAME, None, summary)
    _memory.summary_at = now


def _only_usage_moved(current: dict[str, Any], summary: dict[str, Any]) -> bool:
    """Whether the written summary differs from the new one in the users' usage only."""

    def counts(users: list[dict[str, Any]] | None) -> list[tuple[Any, ...]]:
        return sorted((u.get("user"), u.get("running"), u.get("waiting")) for u in users or [])

    return counts(current.get("users")) == counts(summary.get("users")) and all(
        current.get(key) == value for key, value in summary.items() if key != "users"
    )


SAFETY_NET_SECONDS = 30.0
SAFETY_NET_CONCURRENCY = 10
WATCH_QUIET_SECONDS = 10.0
CATCH_UP_GRACE_SECONDS = 2.0


async def safety_net(look_again: Reconcile) -> None:
    """A missed watch event must not leave a job stuck: every 30 s (its own timer), look
    again at each job that is admitted, starting or running (from the store, so nothing more
    per job is kept in memory), and at each job whose events the watch did not deliver.
    Jobs waiting for a function that does not exist too: their creation handler's retry
    ends them when the wait is over, this if that retry was lost (a replica taking over)."""
    missed = set(await _catch_up(get_context()))
    # Admitted but not started (its start failed, say, on an API error) counts too.
    looked_at = (QueueReason.ADMITTED, QueueReason.FUNCTION_NOT_FOUND)
    active = [
        r
        for r in store.all()
        if r.phase in (JobPhase.INITIALIZING, JobPhase.RUNNING)
        or (r.phase == JobPhase.QUEUED and r.reason in looked_at)
        or (r.key in missed and r.phase not in _TERMINAL)
    ]
    if not active:
        return
    limit = asyncio.Semaphore(SAFETY_NET_CONCURRENCY)

    async def look(rec: JobRecord) -> None:
        async with limit:
            try:
                await look_again(rec.namespace, rec.name)
            except Exception as exc:  # the job's own handlers report and retry
                log.debug("safety net: %s: %s", rec.key, exc)

    await asyncio.gather(*(look(r) for r in active))


async def _catch_up(ctx: Context) -> list[str]:
    """Bring the store level with the cluster where the watch fell behind; the keys of the
    jobs it did. A ServerlessJob watch resumed right after an API server restart can stay
    silent until its server timeout ends it (the new API server's watch cache for a kind
    nothing has changed yet; kubernetes/kubernetes#91073): a job created meanwhile had no
    record, so no admission, for five minutes. A metadata-only listing (names, UIDs and
    resourceVersions; paginated) finds such jobs; each is read whole and recorded.

    Only while the watch is quiet: with events arriving the stream is alive, and a record
    behind the listing is kopf's backlog (a burst of thousands of jobs puts minutes of
    events in its queues), not a miss; reading those jobs again would add to the load.
    (With several watched namespaces, kopf watches each on its own stream; one stuck while
    another delivers is not caught here.)"""
    began = time.monotonic()
    if began - store.last_event < WATCH_QUIET_SECONDS:
        return []
    listed = []
    for namespace in watched_namespaces or ("*",):
        async for meta in ctx.kube.each_metadata(ServerlessJob, namespace, LIST_PAGE):
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            listed.append((key, meta.get("uid", ""), meta.get("resourceVersion", "")))
    missed = store.missed(listed, began)
    if missed:  # a watch a moment behind is no miss: give its events time to arrive
        await asyncio.sleep(CATCH_UP_GRACE_SECONDS)
    found = []
    for key in (k for k in missed if not store.written_since(k, began)):
        namespace, name = key.split("/", 1)
        body = await ctx.kube.get(ServerlessJob, name, namespace)
        if body is not None:
            store.seen(record_of(body), event=False)
            found.append(key)
    if found:
        shown = ", ".join(found[:5]) + (" ..." if len(found) > 5 else "")
        log.warning("the watch missed %d jobs' latest events; recorded now: %s", len(found), shown)
    return found
