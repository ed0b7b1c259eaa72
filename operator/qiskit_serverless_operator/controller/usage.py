"""The fair-share usage ledger, kept durably in the ServerlessQueue's status.

A finished job's run seconds (start to completion) are added to its user's decayed total
in the ledger, then the job is marked ``accounted``; the ledger also keeps the last
accounted job UIDs, so a step repeated after a crash between the two writes does not count
a job twice. Two writers use it, both in the active replica only: the admission tick
(scheduler.py) for jobs that finished, and a job's finalizer (jobs.py) for a job deleted
before it was counted, so that deleting jobs cannot erase a user's usage.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

from .. import constants as c
from ..kube import ApiError, ServerlessJob, ServerlessQueue
from . import queueing
from .context import Context
from .jobstore import JobRecord, epoch, record_of

ACCOUNTED_UIDS_KEPT = 2000

# One writer at a time in this process.
_lock = asyncio.Lock()
# This process's own last ledger write, until the watch brings it back (never the only copy:
# it is written to the API first).
_own_status: dict[str, Any] | None = None
# Jobs this process marked accounted, until their records say so (the admission loop may
# tick again before the mark's event arrives): job UID -> when marked (monotonic).
_marked: dict[str, float] = {}
MARK_MEMORY_SECONDS = 60.0


def iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def latest_status(queue: dict[str, Any] | None) -> dict[str, Any]:
    """The queue's status, with our own last ledger write if the watch has not brought it
    back yet."""
    status = dict((queue or {}).get("status") or {})
    mine = _own_status
    # Whole seconds, and this process is the only writer: a watched copy from the same
    # second as ours may be an earlier write of that second, never a later one.
    if mine and (mine.get("updatedAt") or "") >= (status.get("updatedAt") or ""):
        status = {**status, **mine}
    return status


def decayed_usage(ledger: dict[str, Any], now: float, half_life: float) -> dict[str, float]:
    """Each user's job-seconds, halved for every half-life since the ledger entry."""
    usage: dict[str, float] = {}
    for user, entry in ledger.items():
        at = epoch(entry.get("at")) or now
        usage[user] = queueing.decayed(float(entry.get("seconds", 0.0)), now - at, half_life)
    return usage


def run_seconds(rec: JobRecord, now: float) -> float:
    return max(0.0, (rec.end or now) - (rec.start or now))


def unmarked(finished: list[JobRecord]) -> list[JobRecord]:
    """Finished jobs not marked accounted by this process either (their records may not
    show the mark yet)."""
    return [r for r in finished if r.uid not in _marked] if _marked else finished


def not_in_ledger(finished: list[JobRecord], status: dict[str, Any]) -> list[JobRecord]:
    """The finished jobs whose run the ledger does not hold yet."""
    if not finished:
        return finished
    seen = set(status.get("accountedJobs") or ())
    return [r for r in finished if r.uid not in seen]


async def account(
    ctx: Context, finished: list[JobRecord], status: dict[str, Any], now: float
) -> dict[str, Any]:
    """Add finished jobs' run seconds to the ledger (durably), then mark the jobs; returns
    the queue status as written."""
    async with _lock:
        return await _account(ctx, finished, status, now)


async def account_deleted(ctx: Context, body: dict[str, Any], now: float) -> None:
    """A job deleted before its usage was counted (finalizer): count it now."""
    rec = record_of(body)
    if rec.accounted or not rec.admitted or not rec.start:
        return
    async with _lock:
        queue = await ctx.kube.get(ServerlessQueue, c.QUEUE_NAME, None)
        await _account(ctx, [rec], latest_status(queue), now)


async def _account(
    ctx: Context, finished: list[JobRecord], status: dict[str, Any], now: float
) -> dict[str, Any]:
    global _own_status
    half_life = ctx.config.usage_half_life_seconds
    seen = list(status.get("accountedJobs") or [])
    seen_set = set(seen)
    usage = decayed_usage(status.get("ledger") or {}, now, half_life)
    added = False
    for rec in finished:
        if rec.uid in seen_set:
            continue
        usage[rec.user] = usage.get(rec.user, 0.0) + run_seconds(rec, now)
        seen.append(rec.uid)
        seen_set.add(rec.uid)
        added = True
    if added:
        ledger = {
            user: {"seconds": round(value, 3), "at": iso(now)}
            for user, value in usage.items()
            if value >= 0.001
        }
        seen = seen[-ACCOUNTED_UIDS_KEPT:]
        status = {**status, "ledger": ledger, "accountedJobs": seen, "updatedAt": iso(now)}
        await ctx.kube.patch_status(ServerlessQueue, c.QUEUE_NAME, None, _ledger_patch(status))
        _own_status = status
    marked_at = time.monotonic()
    for uid, at in list(_marked.items()):
        if marked_at - at > MARK_MEMORY_SECONDS:
            del _marked[uid]
    for rec in finished:
        if rec.uid in _marked:
            continue
        try:
            await ctx.kube.patch_status(ServerlessJob, rec.name, rec.namespace, {"accounted": True})
        except ApiError as exc:
            if exc.status.code != 404:
                raise
        _marked[rec.uid] = marked_at
    return status


def _ledger_patch(status: dict[str, Any]) -> dict[str, Any]:
    # A merge patch merges maps: users no longer in the ledger must be removed explicitly.
    return {
        "ledger": status.get("ledger") or {},
        "accountedJobs": status.get("accountedJobs") or [],
        "updatedAt": status.get("updatedAt"),
    }
