"""kopf registrations: which changes trigger which reconcile.

Every trigger funnels into ``reconcile_job`` or ``reconcile_function``, which read the
cluster afresh; the triggers only decide *when* to look, never *what* to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import time
from collections.abc import Iterator
from typing import Any

import kopf

from .. import constants as c
from .. import metrics
from ..config import OperatorConfig
from ..kube import Kube
from ..storage import ObjectStore
from . import catalog, job_endpoint, kopf_settings, peering, retention, scheduler
from .context import Context, get_context, set_context
from .functions import reconcile_function
from .jobs import (
    cleanup_job,
    links_refresh_wanted,
    needs_cleanup,
    reconcile_job,
    refresh_links,
)
from .jobstore import record_of, store
from .watched import watched

log = logging.getLogger(__name__)

# How soon a handler that failed on an unexpected error (the API server restarting: refused
# connections, timeouts) runs again. kopf's default is 60 s, a minute of no admissions
# after every API server restart; a TemporaryError still says its own delay.
RETRY = 3.0
OWNED = {c.LABEL_MANAGED_BY: c.MANAGER, c.LABEL_JOB: kopf.PRESENT}


@contextlib.contextmanager
def _counted(kind: str) -> Iterator[None]:
    """Count a handler run that fails on an unexpected error (kopf retries it); waits that
    say so (kopf.TemporaryError) are not errors."""
    try:
        yield
    except (kopf.TemporaryError, asyncio.CancelledError):
        raise
    except Exception:
        metrics.RECONCILE_ERRORS.labels(kind).inc()
        raise


# What start-up begins and clean-up ends. Not in kopf's memo: kopf gives every object a
# copy of it, 10,000 copies for 10,000 jobs.
_running: dict[str, Any] = {}


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    cfg = OperatorConfig.from_env()
    set_context(Context(config=cfg, kube=Kube(), store=ObjectStore(cfg.s3)))
    kopf_settings.configure(settings, cfg)
    # First: a failure here (a CRD not established yet) makes kopf run this handler again.
    await peering.ensure_peering(get_context().kube, cfg.peering)
    await scheduler.ensure_queue(get_context())
    metrics.serve(
        cfg.metrics_port,
        cfg.metrics_bind,
        phases=lambda: [record.phase for record in store.all()],
        oldest_wait=_oldest_wait,
    )
    if cfg.archive_dsn:
        await _open_archive(get_context())
    endpoint = await job_endpoint.start(cfg.job_endpoint_bind, cfg.job_endpoint_port)
    _running["job_endpoint"] = endpoint
    # boto3 loads its models and endpoint rules on first use (0.2 s here): in a thread now,
    # not in the first job's start. A presigned URL is made locally, without a request.
    _running["storage_warm_up"] = asyncio.get_running_loop().run_in_executor(
        None, get_context().store.presign_get, "warm-up", 60
    )
    log.info("operator configured: runtime image %s, bucket %s", cfg.runtime_image, cfg.s3.bucket)


@kopf.on.event(
    peering.PEERING_GROUP,
    peering.PEERING_VERSION,
    peering.PEERING_PLURAL,
    when=lambda type, name, **_: type == "DELETED" and name == get_context().config.peering,
)
async def peering_deleted(**_: Any) -> None:
    # Without the object no replica can take over from the active one.
    await peering.ensure_peering(get_context().kube, get_context().config.peering)


def _oldest_wait() -> float:
    """Seconds the longest-waiting job ready to run (QUEUED, neither suspended nor held by
    Kueue nor waiting for its function) has waited."""
    waiting = [
        rec.submitted
        for rec in store.all()
        if rec.phase == c.JobPhase.QUEUED
        and rec.reason in (c.QueueReason.PENDING, c.QueueReason.ADMITTED, None)
    ]
    return max(0.0, time.time() - min(waiting)) if waiting else 0.0


async def _open_archive(ctx: Context) -> None:
    """Connect to the archive (psycopg is imported only here: no archive, no driver). A
    database that is down does not hold the start-up: the retention loop retries."""
    from ..archive.errors import ArchiveUnavailable
    from ..archive.store import Archive

    assert ctx.config.archive_dsn
    ctx.archive = Archive(ctx.config.archive_dsn, max_size=8, timeout=5.0)
    await ctx.archive.open()
    try:
        await ctx.archive.migrate()
        ctx.archive_schema_ready = True
    except ArchiveUnavailable as exc:
        log.warning("archive: %s; jobs past their TTL wait until it answers", exc)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    runner = _running.pop("job_endpoint", None)
    if runner is not None:
        await runner.cleanup()
    ctx = get_context()
    if ctx.archive is not None:
        await ctx.archive.close()


# ----------------------------------------------------------------------------- jobs


def _plain(body: kopf.Body) -> dict[str, Any]:
    """A kopf Body (a live view) as the plain nested dicts the reconciles read and copy."""
    return {key: copy.deepcopy(value) for key, value in body.items()}


def spec_not_yet_seen(body: kopf.Body, **_: Any) -> bool:
    """The spec changed since the operator last wrote status (metadata.generation moved).
    An object with no status yet is the creation (or resume) handler's: reconciling it
    here too would do every new job's reads twice."""
    observed = (body.get("status") or {}).get("observedGeneration")
    return observed is not None and observed != body.get("metadata", {}).get("generation")


def worth_a_look_on_resume(body: kopf.Body, **_: Any) -> bool:
    """After a restart, look again at jobs in flight only: a finished job is final, and one
    waiting for admission is the queue's to start (it has a record of every job). With
    10,000 jobs waiting, this is what lets a restarted operator handle a new job at once."""
    status = body.get("status") or {}
    phase = status.get("phase")
    if phase in c.TERMINAL_JOB_PHASES:  # StrEnum members: a plain phase string matches
        return False
    waiting = (
        phase == c.JobPhase.QUEUED
        and status.get("reason") == c.QueueReason.PENDING
        and not status.get("admittedAt")
    )
    return not waiting or spec_not_yet_seen(body)


@kopf.on.resume(c.GROUP, c.VERSION, c.JOB_PLURAL, when=worth_a_look_on_resume, backoff=RETRY)
@kopf.on.create(c.GROUP, c.VERSION, c.JOB_PLURAL, backoff=RETRY)
async def job_changed(name: str, namespace: str, body: kopf.Body, **_: Any) -> None:
    # The event's own copy: one read less per new job (10,000 of them in a burst).
    with _counted("job"):
        again = await reconcile_job(namespace, name, body=_plain(body))
    if again is not None:
        # Its function does not exist yet: kopf's retry ends the wait (the function's
        # arrival ends it sooner: functions._wake_jobs).
        raise kopf.TemporaryError("waiting for the job's function to exist", delay=again + 0.5)


@kopf.on.event(c.GROUP, c.VERSION, c.JOB_PLURAL, when=spec_not_yet_seen)
async def job_spec_event(name: str, namespace: str, type: str, **_: Any) -> None:
    if type != "DELETED":
        # Read afresh: the watched copy (watched.py) is kept by job_record, which may run
        # after this handler for the same event, and would not have the new spec yet.
        with _counted("job"):
            await reconcile_job(namespace, name, fresh=True)


@kopf.on.event(c.GROUP, c.VERSION, c.JOB_PLURAL, when=lambda body, **_: links_refresh_wanted(body))
async def job_links_asked(name: str, namespace: str, type: str, **_: Any) -> None:
    if type != "DELETED":
        await refresh_links(namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
@kopf.on.event("", "v1", "pods", labels=OWNED)
async def child_changed(body: kopf.Body, namespace: str, type: str, **_: Any) -> None:
    labels = body.get("metadata", {}).get("labels", {})
    parent = labels.get(c.LABEL_JOB)
    if not parent:
        return
    # A catalog function's pod runs in its provider's namespace, its job in the user's.
    key = f"{labels.get(c.LABEL_JOB_NAMESPACE) or namespace}/{parent}"
    uid = body.get("metadata", {}).get("uid", "")
    watched.child_seen(key, body, deleted=type == "DELETED")
    if type == "DELETED":
        _children_seen.pop(uid, None)
    record = store.records.get(key)
    if record is not None and record.phase in c.TERMINAL_JOB_PHASES:
        return  # final: its pod and batch Job going away (their TTL) change nothing
    signature = child_signature(body)
    if type != "DELETED" and _children_seen.get(uid) == signature:
        return  # nothing a job's phase is derived from has changed since its last look
    await reconcile_job(*key.split("/", 1))
    if type != "DELETED":
        _children_seen[uid] = signature


# Each child's (pod's, batch Job's) signature as the job's last reconcile from its events
# saw it, by the child's UID, until the child is deleted. A pod has about ten events and a
# batch Job five or more, most of them about nothing the job's phase depends on (ready
# counts, conditions of the pod's own, a kubelet's heartbeat): each was a reconcile, three
# reads and often a status write, 7 times the API server's work of a bare pod per job.
_children_seen: dict[str, tuple[Any, ...]] = {}


def child_signature(body: kopf.Body) -> tuple[Any, ...]:
    """What ``observe`` reads of a pod or batch Job, compared between its events."""
    meta, spec, status = (body.get(k) or {} for k in ("metadata", "spec", "status"))
    deleting = bool(meta.get("deletionTimestamp"))
    if body.get("kind") == "Pod":
        containers = []
        for container in (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        ):
            state = container.get("state") or {}
            (what, detail), *_ = list(state.items()) or [(None, {})]
            containers.append(
                (container.get("name"), what, detail.get("reason"), detail.get("exitCode"))
            )
        return ("Pod", status.get("phase"), deleting, tuple(containers))
    conditions = tuple(
        sorted(
            (cond.get("type"), cond.get("status"), cond.get("reason"))
            for cond in status.get("conditions") or []
        )
    )
    return ("Job", spec.get("suspend"), deleting, conditions, bool(status.get("completionTime")))


# ----------------------------------------------------------------------------- admission


@kopf.on.event(c.GROUP, c.VERSION, c.JOB_PLURAL)
async def job_record(type: str, body: kopf.Body, **_: Any) -> None:
    """Every ServerlessJob event updates the queue's record of that job (see jobstore), and
    wakes the admission loop when the change can change its plan."""
    meta = body.get("metadata", {})
    if type == "DELETED":
        store.gone(f"{meta.get('namespace')}/{meta.get('name')}", meta.get("uid", ""))
        watched.job_gone(f"{meta.get('namespace')}/{meta.get('name')}")
        return
    new = record_of(body)
    old = store.records.get(new.key)
    store.seen(new)
    watched.job_seen(new.key, body)
    if scheduler.worth_a_tick(old, new):
        scheduler.wake()


@kopf.daemon(c.GROUP, c.VERSION, c.QUEUE_PLURAL, backoff=1.0, cancellation_timeout=5.0)
async def admission_loop(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """The admission loop (scheduler.admission_loop), in the active replica only."""
    if body["metadata"]["name"] != c.QUEUE_NAME:
        return
    metrics.ACTIVE.set(1)
    try:
        await scheduler.admission_loop(lambda: dict(body), stopped, start=reconcile_job)
    finally:
        metrics.ACTIVE.set(0)  # paused (a standby now) or stopping


@kopf.daemon(c.GROUP, c.VERSION, c.QUEUE_PLURAL, backoff=1.0, cancellation_timeout=5.0)
async def retention_loop(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Finished jobs past their TTL: archived, then deleted (retention.py), in the active
    replica only."""
    if body["metadata"]["name"] != c.QUEUE_NAME:
        return
    await retention.loop(get_context(), stopped)


# No per-job timer: kopf keeps the whole body of every object of a kind that has timers or
# daemons, which with 10,000 jobs is most of the operator's memory. A timer of its own on the
# queue runs the safety net over the job records instead (apart from the admission tick, so
# that looking again at hundreds of running jobs never holds an admission up).
@kopf.timer(
    c.GROUP,
    c.VERSION,
    c.QUEUE_PLURAL,
    interval=scheduler.SAFETY_NET_SECONDS,
    sharp=False,
    backoff=RETRY,
)
async def safety_net_tick(body: kopf.Body, **_: Any) -> None:
    if body["metadata"]["name"] != c.QUEUE_NAME:
        return
    await scheduler.job_records()  # the store has merged a full listing first
    # Everything read afresh: what it is there for is an event that never came.
    await scheduler.safety_net(look_again=functools.partial(reconcile_job, fresh=True))


# kopf puts its finalizer only on jobs whose deletion has work to do (jobs.needs_cleanup:
# started ones, which the start gives it first); the others are deleted at once.
@kopf.on.delete(
    c.GROUP,
    c.VERSION,
    c.JOB_PLURAL,
    backoff=RETRY,
    when=lambda body, **_: needs_cleanup(body),
)
async def job_deleted(body: kopf.Body, **_: Any) -> None:
    with _counted("job-cleanup"):
        await cleanup_job(dict(body))


# ----------------------------------------------------------------------------- functions


@kopf.on.resume(c.GROUP, c.VERSION, c.FUNCTION_PLURAL, backoff=RETRY)
@kopf.on.create(c.GROUP, c.VERSION, c.FUNCTION_PLURAL, backoff=RETRY)
async def function_changed(name: str, namespace: str, **_: Any) -> None:
    with _counted("function"):
        await reconcile_function(namespace, name)


@kopf.on.event(c.GROUP, c.VERSION, c.FUNCTION_PLURAL)
async def function_record(type: str, body: kopf.Body, **_: Any) -> None:
    """Every QiskitFunction event updates the operator's copy the jobs read (catalog)."""
    meta = body.get("metadata", {})
    if type == "DELETED":
        catalog.forget(meta.get("namespace", ""), meta.get("name", ""))
    else:
        catalog.remember(_plain(body))


@kopf.on.event(c.GROUP, c.VERSION, c.FUNCTION_PLURAL, when=spec_not_yet_seen)
async def function_spec_event(name: str, namespace: str, type: str, **_: Any) -> None:
    if type != "DELETED":
        with _counted("function"):
            await reconcile_function(namespace, name)


@kopf.timer(
    c.GROUP,
    c.VERSION,
    c.FUNCTION_PLURAL,
    interval=3,
    initial_delay=2,
    backoff=RETRY,
    when=lambda status, **_: status.get("reason") == "AwaitingUpload",
)
async def function_awaiting_upload(name: str, namespace: str, **_: Any) -> None:
    """Object storage sends no events: look for the uploaded archive every few seconds."""
    await reconcile_function(namespace, name)


@kopf.on.event(
    "batch", "v1", "jobs", labels={c.LABEL_MANAGED_BY: c.MANAGER, c.LABEL_BUILD: kopf.PRESENT}
)
@kopf.on.event(
    "", "v1", "pods", labels={c.LABEL_MANAGED_BY: c.MANAGER, c.LABEL_BUILD: kopf.PRESENT}
)
async def build_changed(body: kopf.Body, namespace: str, **_: Any) -> None:
    await reconcile_function(namespace, body["metadata"]["labels"][c.LABEL_BUILD])
