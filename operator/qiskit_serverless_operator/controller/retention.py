"""Retention: a finished job is archived, then deleted from the API server after its TTL.

A loop in the active replica (a kopf daemon on the ServerlessQueue, handlers.py) looks at the
job records every few seconds. A top-level job whose TTL after finishing has passed is read
afresh, its summary committed to the archive, its status marked ``archivedAt`` (the REST
gateway then serves it from the archive), and only then deleted; its Secrets go with it
(owner references, and the finalizer for the rest), its stored result and logs stay for the
archive. Every step is safe to repeat: a crash between two of them repeats nothing harmful
(the archive keeps the first row; a marked job is only deleted).

With no archive configured, a job whose spec asks for a TTL is deleted after it (as a
Kubernetes Job with ttlSecondsAfterFinished), and nothing else is. The archive being down
holds deletion back: the jobs wait in the API server, the queue's status and an Event say
why, and the backlog drains when the database is back.

A job's tasks (distribute_task) are parts of it: they are deleted with it, never archived.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import kopf

from .. import constants as c
from ..archive.errors import ArchiveUnavailable
from ..archive.rows import ArchivedJob
from ..config import OperatorConfig
from ..kube import ApiError, ServerlessJob, ServerlessQueue
from ..metrics import ARCHIVE_BACKLOG, ARCHIVE_ERRORS, ARCHIVED, TTL_DELETED
from . import jobspec
from .conditions import now_iso
from .context import Context
from .jobstore import JobRecord, store

if TYPE_CHECKING:
    from ..archive.store import Archive

log = logging.getLogger(__name__)

# How often the loop looks, and how many jobs one look moves at most (a backlog drains over
# several looks instead of holding the loop for minutes).
INTERVAL_SECONDS = 2.0
BATCH = 100
# Jobs moved at once within a look (each is a few round trips to the API and the archive).
AT_ONCE = 8
# Archived jobs' stored objects past their retention are looked for this often.
OBJECTS_INTERVAL_SECONDS = 60.0
TERMINAL = frozenset(p.value for p in c.TERMINAL_JOB_PHASES)


def ttl_of(rec: JobRecord, cfg: OperatorConfig) -> int | None:
    """The job's own TTL, else the setting for how it ended; None: keep it."""
    if rec.ttl is not None:
        return rec.ttl
    if cfg.archive_dsn is None:
        return None  # no history to keep it in: only a job that asks is deleted
    if rec.phase == c.JobPhase.DONE:
        return cfg.ttl_after_success_seconds
    return cfg.ttl_after_failure_seconds


def due(records: list[JobRecord], cfg: OperatorConfig, now: float) -> list[JobRecord]:
    """Top-level finished jobs whose TTL has passed, the longest overdue first."""
    ready: list[tuple[float, JobRecord]] = []
    for rec in records:
        if rec.phase not in TERMINAL or rec.task_parent or rec.end is None:
            continue
        ttl = ttl_of(rec, cfg)
        if ttl is not None and now >= rec.end + ttl:
            ready.append((rec.end + ttl, rec))
    ready.sort(key=lambda pair: pair[0])
    return [rec for _, rec in ready]


@dataclass
class Health:
    """What the queue's status last said of the archive (written on changes only)."""

    available: bool | None = None
    message: str = ""


async def _report(ctx: Context, health: Health, ok: bool, message: str, backlog: int) -> None:
    ARCHIVE_BACKLOG.set(backlog)
    if health.available == ok and (ok or health.message == message):
        return
    health.available, health.message = ok, message
    status = {
        "archive": {
            "available": ok,
            "message": message,
            "backlog": backlog,
            "checkedAt": now_iso(),
        }
    }
    try:
        await ctx.kube.patch_status(ServerlessQueue, c.QUEUE_NAME, "", status)
    except ApiError as exc:
        log.warning("could not write the archive's state to the queue: %s", exc)
    queue = {
        "apiVersion": c.API_VERSION,
        "kind": c.QUEUE_KIND,
        "metadata": {"name": c.QUEUE_NAME, "namespace": None},
    }
    if ok:
        kopf.info(queue, reason="ArchiveAvailable", message=message)
    else:
        kopf.warn(queue, reason="ArchiveUnavailable", message=message)


async def _archive_then_delete(ctx: Context, archive: Archive | None, rec: JobRecord) -> str:
    """One due job: archived (if there is an archive), marked, deleted. What it did."""
    body = await ctx.kube.get(ServerlessJob, rec.name, rec.namespace)
    if body is None or body["metadata"]["uid"] != rec.uid:
        return "gone"
    status = body.get("status") or {}
    if archive is not None and not status.get("archivedAt"):
        row = ArchivedJob.of(body, jobspec.queue_user(body))
        if await archive.archive(row):
            ARCHIVED.inc()
        try:
            # The precondition: this very object, as read. The gateway serves a marked job
            # from the archive, where its row is now committed.
            await ctx.kube.patch_status(
                ServerlessJob,
                rec.name,
                rec.namespace,
                {"archivedAt": now_iso()},
                resource_version=body["metadata"]["resourceVersion"],
            )
        except ApiError as exc:
            if exc.status.code in (404, 409):
                return "changed"  # looked at again on the next pass
            raise
    await ctx.kube.delete(ServerlessJob, rec.name, rec.namespace)
    TTL_DELETED.inc()
    return "deleted"


async def sweep(ctx: Context, health: Health, now: float | None = None) -> int:
    """One look: move the jobs whose TTL passed. How many were deleted."""
    cfg = ctx.config
    ready = due(store.all(), cfg, time.time() if now is None else now)
    archive = ctx.archive
    if archive is not None and not ctx.archive_schema_ready:
        try:
            await archive.migrate()
            ctx.archive_schema_ready = True
        except ArchiveUnavailable as exc:
            ARCHIVE_ERRORS.labels("migrate").inc()
            await _report(ctx, health, False, str(exc), len(ready))
            return 0
    deleted = 0
    batch = ready[:BATCH]
    for start in range(0, len(batch), AT_ONCE):
        group = batch[start : start + AT_ONCE]
        outcomes = await asyncio.gather(
            *(_archive_then_delete(ctx, archive, rec) for rec in group), return_exceptions=True
        )
        deleted += outcomes.count("deleted")
        for rec, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, ApiError):
                log.warning("retention of job %s/%s: %s", rec.namespace, rec.name, outcome)
            elif isinstance(outcome, BaseException) and not isinstance(outcome, ArchiveUnavailable):
                raise outcome
        unavailable = [o for o in outcomes if isinstance(o, ArchiveUnavailable)]
        if unavailable:
            ARCHIVE_ERRORS.labels("archive").inc(len(unavailable))
            await _report(ctx, health, False, str(unavailable[0]), len(ready) - deleted)
            return deleted
    if archive is not None:
        await _report(ctx, health, True, "the archive accepts jobs", len(ready) - deleted)
    return deleted


async def expire_objects(ctx: Context) -> int:
    """Remove the stored result and logs of archived jobs past their retention."""
    archive, ttl = ctx.archive, ctx.config.archive_objects_ttl_seconds
    if archive is None or ttl is None or not ctx.archive_schema_ready:
        return 0
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=ttl)
    removed = await archive.objects_due(before, limit=BATCH)
    for item in removed:
        if item.object_keys:
            await ctx.store.adelete(*item.object_keys)
    if removed:
        await archive.mark_objects_deleted([item.job_id for item in removed])
    return len(removed)


async def loop(ctx: Context, stopped: kopf.DaemonStopped) -> None:
    """The retention loop of the active replica (until kopf stops the daemon)."""
    health = Health()
    last_objects = 0.0
    while not stopped:
        try:
            await sweep(ctx, health)
            if time.monotonic() - last_objects > OBJECTS_INTERVAL_SECONDS:
                last_objects = time.monotonic()
                await expire_objects(ctx)
        except ArchiveUnavailable as exc:
            ARCHIVE_ERRORS.labels("objects").inc()
            log.warning("archive: %s", exc)
        except Exception:  # the loop outlives any one bad pass; the next looks again
            log.exception("retention pass failed")
        await stopped.wait(INTERVAL_SECONDS)
