"""ServerlessJob reconciliation: from QUEUED to a terminal phase, level-triggered.

``reconcile_job`` reads the ServerlessJob, its function, batch Job and pod (from the
watches' latest copies where they have one, watched.py, else from the API) and decides the
next step from them alone, so it may run any number of times, from any trigger, before or
after a crash.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import kopf

from .. import arguments, files, metrics, storage
from .. import constants as c
from ..archive.errors import ArchiveUnavailable
from ..constants import JobPhase, QueueReason
from ..kube import ApiError, Job, Pod, Secret, ServerlessJob
from ..runtime import logsplit
from . import access, job_endpoint, jobspec, pod_tokens, registry_auth, runtime_cancel, usage
from .catalog import find_function
from .conditions import conditions, now_iso
from .context import Context, get_context
from .jobstore import store
from .observe import Observation, advance, format_duration, observe
from .watched import watched

log = logging.getLogger(__name__)

LOG_LINES_IN_MESSAGE = 10
MAX_LISTING_BYTES = 512 * 1024


class JobInputError(Exception):
    """Bad input found before the pod exists: ends the job in ERROR with this message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class StatusConflict(kopf.TemporaryError):
    """A status write lost to a newer version of the job (or the job is gone)."""


class LookAgain(Exception):
    """The job waits for something no event announces in time: look again in ``delay`` s."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"look again in {delay:.1f} s")
        self.delay = delay


def _function_deadline(ctx: Context, sj: dict[str, Any]) -> datetime.datetime:
    """Until when a job waits for a function that does not exist (QSO_FUNCTION_WAIT_SECONDS
    after its creation): a job applied together with its function may be seen first."""
    created = _parse_time(sj["metadata"].get("creationTimestamp"))
    since = created or datetime.datetime.now(datetime.UTC)
    return since + datetime.timedelta(seconds=ctx.config.function_wait_seconds)


def _parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- inputs


async def check_run_right(ctx: Context, sj: dict[str, Any], qf: dict[str, Any]) -> None:
    """A job of another namespace's function runs only if its submitter may run it: RBAC's
    ``create`` on ``qiskitfunctions/run`` in the provider's namespace (a SubjectAccessReview,
    so `kubectl auth can-i create qiskitfunctions --subresource=run` tells the same)."""
    if not jobspec.placement(sj).remote:
        return
    submitter, groups = access.submitter_of(sj)
    what = f"{qf['spec'].get('provider')}/{qf['spec']['title']}"
    if not submitter:
        raise JobInputError(
            "Forbidden",
            f"a job of {what}, another namespace's function, must name its submitter "
            f"(annotation {c.ANNOTATION_SUBMITTER}; the SDK and the REST gateway set it)",
        )
    allowed, reason = await access.can_run(ctx.kube, submitter, groups, qf)
    if not allowed:
        raise JobInputError(
            "Forbidden",
            f"{submitter} may not run {what}: no grant to create qiskitfunctions/run "
            f"{qf['metadata']['name']!r} in namespace {qf['metadata']['namespace']!r}"
            + (f" ({reason})" if reason else "")
            + "; ask the provider for one",
        )


def check_task(sj: dict[str, Any], parent: dict[str, Any] | None) -> dict[str, Any]:
    """A task's job, ``parent`` as read; JobInputError for a task no job owns: tasks are
    made by the operator for a job's program (distribute_task)."""
    owner = jobspec.task_owner_uid(sj)
    if owner is None or parent is None or parent["metadata"]["uid"] != owner:
        raise JobInputError(
            "InvalidTask",
            f"a task of job {sj['spec']['task']['parent']!r} must be owned by that job: "
            "tasks are made by the operator for a job's program (distribute_task), not by hand",
        )
    return parent


async def _stop_tasks(ctx: Context, sj: dict[str, Any]) -> None:
    """A job that ended stops its tasks still going (each then ends ParentEnded)."""
    meta = sj["metadata"]
    if store.synced_at is not None and not store.has_tasks(meta["namespace"], meta["name"]):
        # No task of it was ever seen (a list per finished job, for most jobs nothing). A
        # task whose first event is still on its way sees the ended job when it is handled.
        return
    tasks = await ctx.kube.list(
        ServerlessJob, meta["namespace"], labels={c.LABEL_TASK_PARENT: meta["name"]}
    )
    for task in tasks:
        if jobspec.task_owner_uid(task) != meta["uid"] or task["spec"].get("stop"):
            continue
        if (task.get("status") or {}).get("phase") in c.TERMINAL_JOB_PHASES:
            continue
        await ctx.kube.patch(
            ServerlessJob, task["metadata"]["name"], meta["namespace"], {"spec": {"stop": True}}
        )


async def read_arguments(ctx: Context, sj: dict[str, Any]) -> dict[str, Any]:
    """The job's arguments, decoded (inline, or from the Secret it names)."""
    spec = sj["spec"]
    namespace = sj["metadata"]["namespace"]
    args = spec.get("arguments") or {}
    ref = args.get("secretRef")
    if not ref:
        return args.get("inline") or {}
    secret = await ctx.kube.get(Secret, ref["name"], namespace)
    key = ref.get("key") or c.ARGUMENTS_FILE
    if secret is None:
        raise JobInputError(
            "ArgumentsNotFound",
            f"arguments Secret {ref['name']!r} not found in namespace {namespace}",
        )
    data = (secret.get("data") or {}).get(key)
    if data is None:
        raise JobInputError(
            "ArgumentsNotFound", f"arguments Secret {ref['name']!r} has no key {key!r}"
        )
    try:
        decoded = json.loads(base64.b64decode(data))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JobInputError(
            "InvalidArguments", f"arguments in Secret {ref['name']!r} are not valid JSON: {exc}"
        ) from exc
    if not isinstance(decoded, dict):
        raise JobInputError(
            "InvalidArguments",
            f"arguments must be a JSON object (keyword arguments), got {type(decoded).__name__}",
        )
    return decoded


async def check_arguments(ctx: Context, sj: dict[str, Any], qf: dict[str, Any]) -> None:
    """Against the function's arguments schema, if it has one: before the job is queued, so a
    refused run never waits for admission and never has a pod."""
    schema = arguments.schema_of(qf["spec"])
    if schema is None:
        return
    decoded = await read_arguments(ctx, sj)
    try:
        await asyncio.to_thread(arguments.validate, schema, decoded)
    except arguments.ArgumentsError as exc:
        raise JobInputError("InvalidArguments", f"{exc} (the function's argumentsSchema)") from exc
    except arguments.SchemaError as exc:
        raise JobInputError(
            "InvalidArgumentsSchema", f"the function's argumentsSchema: {exc}"
        ) from exc


async def _arguments_json(ctx: Context, sj: dict[str, Any]) -> str:
    """The arguments as the pod reads them (compact JSON), checked to fit a Secret."""
    text = json.dumps(await read_arguments(ctx, sj), separators=(",", ":"))
    if len(text.encode()) > c.SECRET_MAX_BYTES - 4096:
        raise JobInputError(
            "ArgumentsTooLarge",
            f"arguments are {len(text.encode())} bytes, over the 1 MiB a Kubernetes Secret "
            "holds; put large inputs in object storage and pass their location as an argument",
        )
    return text


async def _check_credentials(ctx: Context, sj: dict[str, Any]) -> None:
    """The job's IBM Quantum credentials Secret exists and has a token; a provider's pod
    gets a copy beside it."""
    ref = ((sj["spec"].get("credentials") or {}).get("secretRef") or {}).get("name")
    if not ref:
        return
    secret = await ctx.kube.get(Secret, ref, sj["metadata"]["namespace"])
    if secret is None:
        raise JobInputError(
            "CredentialsNotFound",
            f"credentials Secret {ref!r} not found in namespace {sj['metadata']['namespace']}",
        )
    data = secret.get("data") or {}
    if "token" not in data:
        raise JobInputError("CredentialsInvalid", f"credentials Secret {ref!r} has no 'token' key")
    if jobspec.placement(sj).remote:
        plain = {k: base64.b64decode(v).decode() for k, v in data.items()}
        await ctx.kube.create_or_get(jobspec.credentials_copy(sj, plain))


def needs_cleanup(body: Mapping[str, Any]) -> bool:
    """Whether deleting the job has work to do first (its finalizer, handlers.py): once it
    has been started (below), and for good once it carries the finalizer. A job that never
    started has only Secrets the API server's garbage collector removes with it."""
    if c.FINALIZER in (body.get("metadata", {}).get("finalizers") or []):
        return True
    status = body.get("status") or {}
    return status.get("phase") in (JobPhase.INITIALIZING, JobPhase.RUNNING) or bool(
        status.get("startTime")
    )


async def _hold_deletion(ctx: Context, sj: dict[str, Any]) -> None:
    """The job's finalizer, before anything its deletion must clean up exists: a batch Job
    or Secrets in a provider's namespace (no owner reference reaches across), stored result
    and logs, usage to account. kopf adds it itself only to jobs that need it (see
    ``needs_cleanup``): a waiting job costs no write of kopf's, and 10,000 of them no 10,000
    writes and events. A merge patch of the list, as kopf's own."""
    meta = sj["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    if c.FINALIZER in finalizers:
        return
    # The job's id rides along: a copy restored from a backup gets a new UID but keeps it
    # (restored_copy_of_archived below).
    written = await ctx.kube.patch(
        ServerlessJob,
        meta["name"],
        meta["namespace"],
        {
            "metadata": {
                "finalizers": [*finalizers, c.FINALIZER],
                "annotations": {c.ANNOTATION_JOB_ID: meta["uid"]},
            }
        },
    )
    watched.job_seen(f"{meta['namespace']}/{meta['name']}", written)
    sj["metadata"] = written["metadata"]  # later writes are conditional on this version


async def _start(ctx: Context, sj: dict[str, Any], qf: dict[str, Any]) -> None:
    """Create the job's Secrets and batch Job (each create-or-get, so safe to repeat). What
    does not depend on each other goes at once: on an idle cluster these round trips are
    most of what a job adds to its pod's start."""
    cfg = ctx.config
    meta = sj["metadata"]
    await _hold_deletion(ctx, sj)
    lifetime = jobspec.timeout_seconds(sj, cfg) + cfg.url_grace_seconds
    result_key = storage.result_key(meta["namespace"], meta["uid"])
    logs_key = storage.logs_key(meta["namespace"], meta["uid"])
    # The job's files folders as they are now, with download links: the pod fills /data
    # without asking the operator (it needs the job endpoint only to keep what it wrote).
    provider = qf["spec"].get("provider") or None
    provider_logs_key = storage.provider_logs_key(meta["namespace"], meta["uid"])
    folders = files.job_folders(
        meta["namespace"],
        jobspec.queue_user(sj),
        qf["spec"]["title"],
        provider,
        provider_namespace=qf["metadata"]["namespace"],
    )
    arguments_json, _, found = await asyncio.gather(
        _arguments_json(ctx, sj),
        _check_credentials(ctx, sj),
        job_endpoint.folder_listing(ctx, folders, min(lifetime, storage.MAX_URL_SECONDS)),
    )
    listing = json.dumps(found)
    task = sj["spec"].get("task")
    payload_url = None
    if task:
        parent_uid = jobspec.task_owner_uid(sj) or ""
        payload_key = storage.task_payload_key(meta["namespace"], parent_uid, task["index"])
        payload_url = ctx.store.presign_get(payload_key, min(lifetime, storage.MAX_URL_SECONDS))
    read_secrets = [
        jobspec.output_secret(
            sj,
            result_url=ctx.store.presign_get(result_key, cfg.read_link_seconds),
            logs_url=ctx.store.presign_get(logs_key, cfg.read_link_seconds),
        )
    ]
    if provider:
        # The provider's own read link, in a Secret of its own (never the user's sj-out).
        read_secrets.append(
            jobspec.provider_secret(
                sj, logs_url=ctx.store.presign_get(provider_logs_key, cfg.read_link_seconds)
            )
        )
    runtime_secret = jobspec.runtime_secret(
        sj,
        task_payload_url=payload_url,
        result_url=ctx.store.presign_put(result_key, lifetime),
        logs_url=ctx.store.presign_put(logs_key, lifetime),
        gateway_token=pod_tokens.take(meta["uid"], (sj.get("status") or {}).get("tokenSha256"))
        or pod_tokens.new_token(meta["namespace"], meta["name"]),
        # A folder of thousands of files: the pod asks the job endpoint instead.
        files_listing=listing if len(listing) <= MAX_LISTING_BYTES else None,
        provider_logs_url=ctx.store.presign_put(provider_logs_key, lifetime) if provider else None,
        arguments_json=arguments_json,
    )
    if jobspec.secret_bytes(runtime_secret) > c.SECRET_MAX_BYTES:
        del runtime_secret["stringData"][c.ARGUMENTS_FILE]  # in a Secret of their own, below
    made = await asyncio.gather(
        ctx.kube.create_or_get(runtime_secret),
        *(ctx.kube.create_or_get(secret) for secret in read_secrets),
    )
    runtime = made[0][0]
    # Decided by the Secret that exists (one made before a restart may hold them or not).
    args_secret = runtime_secret["metadata"]["name"]
    if c.ARGUMENTS_FILE not in (runtime.get("data") or {}):
        separate = jobspec.arguments_secret(sj, arguments_json)
        await ctx.kube.create_or_get(separate)
        args_secret = separate["metadata"]["name"]
    # The job endpoint checks the pod's token against this digest in the job's status, not
    # against the Secret: the pod keeps its copy of a Secret deleted under it, and its calls
    # keep working. Written before the pod can exist, from whichever Secret won (safe to
    # repeat after a crash); the digest of a 256-bit random token gives nothing away.
    digest = jobspec.token_digest(
        base64.b64decode((runtime.get("data") or {}).get(jobspec.GATEWAY_TOKEN_KEY, "")).decode()
    )
    if (sj.get("status") or {}).get("tokenSha256") != digest:
        await ctx.kube.patch_status(
            ServerlessJob, meta["name"], meta["namespace"], {"tokenSha256": digest}
        )
    pull = await registry_auth.ensure_pull_secret(ctx, jobspec.placement(sj).namespace)
    try:
        batch, _ = await ctx.kube.create_or_get(
            jobspec.batch_job(sj, qf, cfg, arguments_secret=args_secret, pull_secret=pull)
        )
    except ApiError as exc:
        if exc.status.code != 422:
            raise
        # What the schemas let through and Kubernetes refuses (a resource name, a value
        # out of range): retrying cannot help; the job ends with the API server's words.
        raise JobInputError(
            "InvalidPodSpec", f"Kubernetes refused the job's pod: {exc.status.message}"
        ) from exc
    # The next look (the pod's first event, maybe before the batch Job's) starts from it.
    watched.child_seen(
        f"{meta['namespace']}/{meta['name']}",
        {"apiVersion": "batch/v1", "kind": "Job", **batch},
        deleted=False,
    )


def _owned_by(pod: dict[str, Any], job: dict[str, Any]) -> bool:
    uid = job["metadata"]["uid"]
    return any(o.get("uid") == uid for o in pod["metadata"].get("ownerReferences") or [])


async def _pods(ctx: Context, sj: dict[str, Any], cached: bool = False) -> list[dict[str, Any]]:
    """The job's pods, in its namespace or a provider's (found by the job's labels);
    ``cached``: the watch's copies when it has seen any."""
    if cached:
        seen = watched.pods(f"{sj['metadata']['namespace']}/{sj['metadata']['name']}")
        if seen is not None:
            return seen
    where = jobspec.placement(sj)
    labels = {c.LABEL_JOB: sj["metadata"]["name"]}
    if where.remote:
        labels[c.LABEL_JOB_NAMESPACE] = sj["metadata"]["namespace"]
    return await ctx.kube.list(Pod, where.namespace, labels=labels)


# --------------------------------------------------------------------------- status


def _conditions(
    phase: JobPhase, reason: str, message: str, generation: int, previous: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """kstatus-style conditions, keeping lastTransitionTime when a status did not change."""
    terminal = phase in c.TERMINAL_JOB_PHASES
    wanted = {
        "Ready": phase == JobPhase.DONE,
        "Succeeded": phase == JobPhase.DONE,
        "Failed": phase in (JobPhase.ERROR, JobPhase.CANCELED),
        "Reconciling": not terminal,
        "Stalled": phase == JobPhase.ERROR,
    }
    return conditions(
        wanted, reason=reason, message=message, generation=generation, previous=previous
    )


def _duration(status: dict[str, Any]) -> str | None:
    start = _parse_time(status.get("startTime"))
    if start is None:
        return None
    end = _parse_time(status.get("completionTime")) or datetime.datetime.now(datetime.UTC)
    return format_duration((end - start).total_seconds())


async def _write_status(ctx: Context, sj: dict[str, Any], changes: dict[str, Any]) -> None:
    meta = sj["metadata"]
    old = sj.get("status") or {}
    new = {**old, **changes}
    phase = JobPhase(new["phase"])
    new["observedGeneration"] = meta.get("generation", 1)
    # Clients know a job by its UID; a field selector on this finds it (crds/, selectableFields).
    new["jobId"] = meta["uid"]
    new["duration"] = _duration(new)
    new["conditions"] = _conditions(
        phase,
        new.get("reason", ""),
        new.get("message", ""),
        new["observedGeneration"],
        old.get("conditions") or [],
    )
    # A running job's duration grows by itself: alone it is no reason to write (every pod
    # and batch Job event of a running job would otherwise be a status write); it goes out
    # with the next real change and is final at the end.
    derived = ("conditions", "duration")
    if {k: v for k, v in new.items() if k not in derived} == {
        k: v for k, v in old.items() if k not in derived
    }:
        return
    try:
        written = await ctx.kube.patch_status(
            ServerlessJob,
            meta["name"],
            meta["namespace"],
            new,
            resource_version=meta.get("resourceVersion"),
        )
    except ApiError as exc:
        if exc.status.code in (404, 409):
            # Gone, or someone wrote first: the next trigger reconciles from the new state.
            raise StatusConflict(f"status write raced ({exc.status.code})", delay=0.2) from exc
        raise
    # The next look (the pod's next event) starts from this version, not the one before.
    watched.job_seen(f"{meta['namespace']}/{meta['name']}", written)
    if old.get("phase") != new["phase"]:
        metrics.transition(sj, new["phase"])
        kind = "Warning" if phase == JobPhase.ERROR else "Normal"
        kopf.event(
            sj, type=kind, reason=new["phase"].title(), message=new.get("message") or new["phase"]
        )


async def _finish(
    ctx: Context, sj: dict[str, Any], obs: Observation, pod: dict[str, Any] | None
) -> dict[str, Any]:
    """Store logs (and find the result) before the pod can go away; build the final status."""
    meta = sj["metadata"]
    ns, uid = meta["namespace"], meta["uid"]
    store = ctx.store
    logs_key = storage.logs_key(ns, uid)
    limit = ctx.config.max_log_bytes
    tail = ""
    provider = None
    logs_size: int | None = None  # known when written here: no request to ask it back
    if pod is not None:
        provider = (pod["metadata"].get("annotations") or {}).get(c.ANNOTATION_PROVIDER)
        tail = await ctx.kube.pod_log_tail(
            pod["metadata"]["name"], pod["metadata"]["namespace"], 100_000
        )
        # The pod's wrapper streams logs too; the API's copy is complete even when the
        # wrapper was killed (OOM, deadline), so it is the one kept.
        if provider:
            user_text = logsplit.user_view(tail, provider_function=True)
            provider_bytes = logsplit.capped(logsplit.provider_view(tail).encode(), limit)
            await store.aput(storage.provider_logs_key(ns, uid), provider_bytes)
        else:
            user_text = tail
        encoded = logsplit.capped(user_text.encode(), limit)
        if encoded or await store.asize(logs_key) is None:
            await store.aput(logs_key, encoded)
            logs_size = len(encoded)
    elif await store.asize(logs_key) is None:
        await store.aput(logs_key, b"")
        logs_size = 0
    status: dict[str, Any] = {
        "phase": obs.phase.value,
        "reason": obs.reason,
        # When the operator saw the end (not the container's own clock), so DURATION only grows.
        "completionTime": now_iso(),
        "subStatus": None,
        "logs": {
            "bucket": store.bucket,
            "key": logs_key,
            "size": logs_size if logs_size is not None else await store.asize(logs_key) or 0,
        },
        "pod": None,
    }
    provider_key = storage.provider_logs_key(ns, uid)
    # Only a provider's function has provider logs (its pod says so); without the pod, ask.
    maybe_provider = provider is not None or pod is None
    provider_size = await store.asize(provider_key) if maybe_provider else None
    if provider_size is not None:
        status["providerLogs"] = {
            "bucket": store.bucket,
            "key": provider_key,
            "size": provider_size,
        }
    result_size = await store.asize(storage.result_key(ns, uid))
    if result_size is not None:
        status["result"] = {
            "bucket": store.bucket,
            "key": storage.result_key(ns, uid),
            "size": result_size,
        }
    message = obs.message
    if obs.phase == JobPhase.ERROR:
        # A provider's function: only what its user may see goes into the job's message.
        shown = logsplit.user_view(tail, provider_function=True) if provider else tail
        lines = [line for line in shown.splitlines() if line.strip()][-LOG_LINES_IN_MESSAGE:]
        if lines:
            message += "; last log lines:\n" + "\n".join(lines)
    status["message"] = message
    return status


async def reconcile_job(
    namespace: str, name: str, body: dict[str, Any] | None = None, fresh: bool = False
) -> float | None:
    """``body``: the job as an event just brought it (kopf's creation and resume handlers),
    instead of reading it again: every status write is conditional on its resourceVersion,
    so a copy that turns out stale costs a retry, never a wrong write. Without one, the
    watches' latest copies of the job and its children (watched.py), unless ``fresh`` (the
    safety net: everything from the API server).

    Returns in how many seconds the job wants another look that no event will bring (it
    waits for a function that does not exist yet), or None."""
    ctx = get_context()
    key = f"{namespace}/{name}"
    # The slot first, then the job's lock: one order everywhere, so no two wait on each other.
    async with ctx.job_slots, ctx.lock(key):
        copy = None if body is not None or fresh else watched.job(key)
        sj = body or copy or await ctx.kube.get(ServerlessJob, name, namespace)
        for attempt in range(2):
            if sj is None or sj["metadata"].get("deletionTimestamp"):
                return None
            try:
                await _reconcile_locked(ctx, sj, cached=not fresh)
            except LookAgain as again:
                return again.delay
            except StatusConflict:
                if copy is None or attempt:
                    raise
                # The watch's copy was behind: once more from the API server's.
                sj = await ctx.kube.get(ServerlessJob, name, namespace)
                continue
            return None
        return None


async def restored_copy_of_archived(ctx: Context, sj: dict[str, Any]) -> bool:
    """A job with no status whose id annotation names another job that is archived: a copy
    restored from a backup (a new UID, no status) of a job that already ran. It never runs
    again; its status says so, and retention removes the copy (the archive has the job)."""
    meta = sj["metadata"]
    earlier = (meta.get("annotations") or {}).get(c.ANNOTATION_JOB_ID)
    if sj.get("status") or not earlier or earlier == meta["uid"] or ctx.archive is None:
        return False
    try:
        archived = await ctx.archive.get(earlier)
    except ArchiveUnavailable as exc:
        # Running it might run it twice: wait for the archive to answer.
        raise kopf.TemporaryError(f"job {earlier} may be archived; {exc}", delay=10) from exc
    if archived is None or archived.namespace != meta["namespace"]:
        return False  # another namespace's job id is not this one's to claim
    now = now_iso()
    await _write_status(
        ctx,
        sj,
        {
            "phase": archived.phase,
            "reason": "AlreadyArchived",
            "message": f"a restored copy of job {earlier}, which ended {archived.phase} and "
            "is archived: it does not run again (read it by that id)",
            "completionTime": now,
            "archivedAt": now,
        },
    )
    return True


async def _reconcile_locked(ctx: Context, sj: dict[str, Any], cached: bool = False) -> None:
    meta, spec = sj["metadata"], sj["spec"]
    status = sj.get("status") or {}
    current = status.get("phase")
    if current and JobPhase(current) in c.TERMINAL_JOB_PHASES:
        return
    if not status and await restored_copy_of_archived(ctx, sj):
        return
    ns, name = meta["namespace"], meta["name"]
    where = jobspec.placement(sj)
    job_name = jobspec.batch_job_name(where.base)

    stop_reason, stop_message = "StopRequested", "stopped on request (spec.stop)"
    # A task's job, read once: a task ends with it, and is checked against it below.
    parent = owner = None
    if spec.get("task"):
        parent = await ctx.kube.get(ServerlessJob, spec["task"]["parent"], ns)
        owner = jobspec.task_owner_uid(sj)
    if owner is not None:
        # Level-triggered: also when the job's own stop of its tasks was missed, or the job
        # is gone. A task no job owns is refused below.
        parent_phase = ((parent or {}).get("status") or {}).get("phase")
        if (
            parent is None
            or parent["metadata"]["uid"] != owner
            or parent_phase in c.TERMINAL_JOB_PHASES
        ):
            stop_reason = c.REASON_PARENT_ENDED
            stop_message = f"its job {spec['task']['parent']} ended ({parent_phase or 'gone'})"
    if spec.get("stop") or stop_reason == c.REASON_PARENT_ENDED:
        # What the program started on IBM Quantum first, while the pod still runs.
        runtime_jobs, runtime_message = await runtime_cancel.cancel(ctx, sj)
        await ctx.kube.delete(Job, job_name, where.namespace)
        changes: dict[str, Any] = {
            "phase": JobPhase.CANCELED.value,
            "reason": stop_reason,
            "message": stop_message + (f"; {runtime_message}" if runtime_message else ""),
            "completionTime": now_iso(),
            "pod": None,
            "subStatus": None,
        }
        if runtime_jobs is not None:
            changes["runtimeJobs"] = runtime_jobs
        await _write_status(ctx, sj, changes)
        await _stop_tasks(ctx, sj)
        return

    # A batch Job exists only once the job was admitted or handed to Kueue: a new or waiting
    # job has none to read (one read less for every new job, and every look at a waiting one).
    started = (
        bool(status.get("admittedAt"))
        or status.get("reason") == QueueReason.KUEUE
        or current in (JobPhase.INITIALIZING, JobPhase.RUNNING)
    )
    job = None
    # Admitted and not started: its batch Job is about to be made (one read less per job);
    # one made already by a run that crashed before its next status write is found by the
    # start's create-or-get.
    starting = current == JobPhase.QUEUED and status.get("reason") == QueueReason.ADMITTED
    if started:
        job = watched.batch_job(f"{ns}/{name}") if cached else None
        if job is None and not (cached and starting):
            job = await ctx.kube.get(Job, job_name, where.namespace)
    if job is None:
        active = current in (JobPhase.INITIALIZING, JobPhase.RUNNING)
        if active and await ctx.store.asize(storage.result_key(ns, meta["uid"])) is not None:
            # The program saved its result and its batch Job is gone: removed after
            # finishing (QSO_FINISHED_POD_TTL_SECONDS) before a busy operator saw it end.
            obs = Observation(
                JobPhase.DONE,
                "Succeeded",
                "the program finished; its batch Job was removed before the operator saw it end",
            )
            await _write_status(ctx, sj, await _finish(ctx, sj, obs, None))
            return
        # The operator removed a batch Job whose pod never started (below): make it again.
        retrying = active and status.get("reason") == c.REASON_START_RETRY
        if active and not retrying:
            await _write_status(
                ctx,
                sj,
                {
                    "phase": JobPhase.ERROR.value,
                    "reason": "JobDeleted",
                    "message": f"the job's batch Job {job_name} was deleted while the job was "
                    f"{current}",
                    "completionTime": now_iso(),
                    "pod": None,
                },
            )
            return
        if spec.get("suspend"):
            await _write_status(
                ctx,
                sj,
                {
                    "phase": JobPhase.QUEUED.value,
                    "reason": "Suspended",
                    "message": "suspended (spec.suspend is true)",
                },
            )
            return
        qf = await find_function(ctx, sj)
        try:
            if qf is None:
                missing = (
                    f"no QiskitFunction titled {spec['function']!r} from provider "
                    f"{spec['provider']!r} (namespace {where.namespace})"
                    if where.remote
                    else f"no QiskitFunction titled {spec['function']!r} in namespace {ns}"
                )
                deadline = _function_deadline(ctx, sj)
                left = (deadline - datetime.datetime.now(datetime.UTC)).total_seconds()
                if left > 0:
                    await _write_status(
                        ctx,
                        sj,
                        {
                            "phase": JobPhase.QUEUED.value,
                            "reason": QueueReason.FUNCTION_NOT_FOUND.value,
                            "message": f"{missing} (yet): waiting for it until "
                            f"{deadline.strftime('%Y-%m-%dT%H:%M:%SZ')}, then ERROR",
                        },
                    )
                    raise LookAgain(left)
                raise JobInputError(QueueReason.FUNCTION_NOT_FOUND.value, missing)
            fphase = (qf.get("status") or {}).get("phase")
            if fphase == c.FunctionPhase.FAILED:
                raise JobInputError(
                    "FunctionFailed",
                    f"function {spec['function']!r} is Failed: "
                    f"{(qf.get('status') or {}).get('message', '')}",
                )
            if fphase != c.FunctionPhase.READY and not retrying:
                await _write_status(
                    ctx,
                    sj,
                    {
                        "phase": JobPhase.QUEUED.value,
                        "reason": "FunctionNotReady",
                        "message": f"waiting for function {spec['function']!r} to be Ready "
                        f"(it is {fphase or 'Pending'})",
                    },
                )
                return
            checked = (QueueReason.PENDING, QueueReason.ADMITTED, QueueReason.KUEUE)
            user = jobspec.queue_user(sj)
            if not status.get("admittedAt") and status.get("reason") not in checked:
                if not spec.get("task"):
                    await check_run_right(ctx, sj, qf)
                    await check_arguments(ctx, sj, qf)
                else:
                    # Its job was checked (run right, arguments); it counts for its user.
                    user = jobspec.queue_user(check_task(sj, parent))
            kueue_queue = jobspec.kueue_queue_name(sj)
            if retrying:
                # Admitted before; the new batch Job is the old one's twin (for Kueue, a
                # suspended one that Kueue admits again).
                pass
            elif not kueue_queue and not status.get("admittedAt"):
                # Ready to run: the admission queue (scheduler.py) decides when.
                requests = jobspec.resources(sj, qf, ctx.config).get("requests") or {}
                changes: dict[str, Any] = {
                    "phase": JobPhase.QUEUED.value,
                    "reason": QueueReason.PENDING.value,
                    "user": user,
                    "requests": {k: str(requests[k]) for k in ("cpu", "memory") if k in requests},
                }
                if status.get("reason") != QueueReason.PENDING:
                    changes["message"] = "waiting for admission"
                await _write_status(ctx, sj, changes)
                return
            elif kueue_queue and status.get("reason") != QueueReason.KUEUE:
                await _write_status(
                    ctx,
                    sj,
                    {
                        "phase": JobPhase.QUEUED.value,
                        "reason": QueueReason.KUEUE.value,
                        "user": user,
                        "message": f"waiting for Kueue to admit it (LocalQueue {kueue_queue})",
                    },
                )
                sj = await ctx.kube.get(ServerlessJob, name, ns) or sj
            await _start(ctx, sj, qf)
        except JobInputError as bad:
            await _write_status(
                ctx,
                sj,
                {
                    "phase": JobPhase.ERROR.value,
                    "reason": bad.reason,
                    "message": bad.message,
                    "completionTime": now_iso(),
                },
            )
            return
        # Started: the batch Job's and then the pod's events bring the next look (and the
        # safety net, for a job admitted whose events never came).
        return

    if (job.get("spec") or {}).get("suspend"):
        # Created for Kueue and not admitted yet (no pod, nothing to observe), or admitted
        # and then evicted by it (suspended again: the Job controller removes the pod).
        if current in (JobPhase.INITIALIZING, JobPhase.RUNNING) and (
            (sj.get("status") or {}).get("reason") != c.REASON_EVICTED_BY_KUEUE
        ):
            await _write_status(
                ctx,
                sj,
                {
                    "phase": current,
                    "reason": c.REASON_EVICTED_BY_KUEUE,
                    "message": "Kueue suspended the job again (preempted or evicted); it runs "
                    f"again from the start when Kueue admits it (LocalQueue "
                    f"{jobspec.kueue_queue_name(sj)})",
                    "pod": None,
                },
            )
        return
    if job["metadata"]["uid"] == (sj.get("status") or {}).get("retriedJob"):
        # Given up on below; wait until it is gone to make its replacement.
        if not job["metadata"].get("deletionTimestamp"):
            await ctx.kube.delete(Job, job_name, where.namespace)
        raise kopf.TemporaryError("the batch Job being replaced is not gone yet", delay=1)
    # Only this batch Job's pods: a replaced one's failed pod may linger until collected.
    if cached and current == JobPhase.QUEUED and watched.pods(f"{ns}/{name}") is None:
        pods = []  # none seen yet: the pod's first event brings it, and a look of its own
    else:
        pods = [p for p in await _pods(ctx, sj, cached=cached) if _owned_by(p, job)]
    pod = max(pods, key=lambda p: p["metadata"]["creationTimestamp"]) if pods else None
    obs = observe(job, pod, jobspec.timeout_seconds(sj, ctx.config))
    if obs.never_started:
        retries = int((sj.get("status") or {}).get("startRetries") or 0)
        if retries < c.MAX_START_RETRIES:
            # Status first, then the delete: after a crash in between, retriedJob says this
            # Job was already counted.
            await _write_status(
                ctx,
                sj,
                {
                    "phase": advance(current, JobPhase.INITIALIZING).value,
                    "reason": c.REASON_START_RETRY,
                    "message": f"{obs.message}; starting it again in a new pod (retry "
                    f"{retries + 1} of {c.MAX_START_RETRIES})",
                    "startRetries": retries + 1,
                    "retriedJob": job["metadata"]["uid"],
                    "pod": None,
                },
            )
            await ctx.kube.delete(Job, job_name, where.namespace)
            raise kopf.TemporaryError("replacing a batch Job whose pod never started", delay=1)
        obs = replace(obs, message=f"{obs.message} (after {retries} new pods)")
    if pod is None and obs.phase == JobPhase.INITIALIZING and current == JobPhase.QUEUED:
        # The batch Job is there and its pod not yet: the Job controller makes it within
        # moments, and its first event writes INITIALIZING with what it shows. A write now
        # would be replaced at once (a write, an event and a reconcile per job, for nothing).
        return
    if obs.ahead_of_job and current != JobPhase.RUNNING:
        # A program that ended between two of the kubelet's reports was never seen running:
        # RUNNING first, DONE with the batch Job's verdict, so that its phases still read
        # QUEUED, INITIALIZING, RUNNING, DONE (the walkthrough's, and what clients wait for).
        obs = Observation(JobPhase.RUNNING, "Finishing", "the program finished")
    phase = advance(current, obs.phase)
    changes: dict[str, Any] = {"phase": phase.value}
    if not (sj.get("status") or {}).get("startTime"):
        changes["startTime"] = job["metadata"].get("creationTimestamp") or now_iso()
    if pod is not None:
        changes["pod"] = pod["metadata"]["name"]
    if phase in (JobPhase.DONE, JobPhase.ERROR):
        if obs.reason in ("ImagePullFailed", "PodConfigError"):
            # The pod would wait forever: remove it; the job ends here with the reason.
            await ctx.kube.delete(Job, job_name, where.namespace)
        changes.update(await _finish(ctx, sj, obs, pod))
    elif phase == JobPhase(obs.phase):
        changes.update({"reason": obs.reason, "message": obs.message})
    await _write_status(ctx, sj, changes)
    if phase in (JobPhase.DONE, JobPhase.ERROR):
        await _stop_tasks(ctx, sj)


# --------------------------------------------------------------------------- read links


def links_refresh_wanted(body: dict[str, Any]) -> bool:
    asked = ((body.get("metadata") or {}).get("annotations") or {}).get(c.ANNOTATION_REFRESH_LINKS)
    return bool(asked) and asked != (body.get("status") or {}).get("linksRefreshed")


def _underscored(data: dict[str, str]) -> dict[str, str]:
    return {key.replace("-", "_"): value for key, value in data.items()}


async def refresh_links(namespace: str, name: str) -> None:
    """New read links for a job's result and logs (presigned URLs last at most 7 days): a
    client whose links expired asks with the refresh-links annotation."""
    ctx = get_context()
    async with ctx.job_slots, ctx.lock(f"{namespace}/{name}"):
        sj = await ctx.kube.get(ServerlessJob, name, namespace)
        if sj is None or not links_refresh_wanted(sj):
            return
        seconds = ctx.config.read_link_seconds
        uid = sj["metadata"]["uid"]
        links = {
            jobspec.output_secret_name(name): {
                "result-url": ctx.store.presign_get(storage.result_key(namespace, uid), seconds),
                "logs-url": ctx.store.presign_get(storage.logs_key(namespace, uid), seconds),
            },
            jobspec.provider_secret_name(jobspec.placement(sj).base): {
                "logs-url": ctx.store.presign_get(
                    storage.provider_logs_key(namespace, uid), seconds
                ),
            },
        }
        homes = {
            jobspec.output_secret_name(name): namespace,
            jobspec.provider_secret_name(jobspec.placement(sj).base): jobspec.placement(
                sj
            ).namespace,
        }
        mine = jobspec.output_secret_name(name)
        for secret, data in links.items():
            try:
                await ctx.kube.patch(Secret, secret, homes[secret], {"stringData": data})
            except ApiError as exc:
                if exc.status.code != 404:  # never started, or not a provider's function
                    raise
                if secret == mine and (sj.get("status") or {}).get("startTime"):
                    # Deleted by hand: the links are the way to the result; make it again.
                    await ctx.kube.create_or_get(jobspec.output_secret(sj, **_underscored(data)))
        asked = sj["metadata"]["annotations"][c.ANNOTATION_REFRESH_LINKS]
        await ctx.kube.patch_status(ServerlessJob, name, namespace, {"linksRefreshed": asked})
        log.info("job %s/%s: read links refreshed", namespace, name)


# --------------------------------------------------------------------------- deletion


async def cleanup_job(body: dict[str, Any]) -> None:
    """Finalizer work: stop the pod, drop the Secrets and (per retention) stored objects."""
    ctx = get_context()
    async with ctx.job_slots:  # deleting a namespace of 10,000 jobs: same bound as reconciles
        await _cleanup(ctx, body)


async def _archived(ctx: Context, body: dict[str, Any]) -> bool:
    """Whether the archive holds the job (then its stored result and logs are the archive's
    to keep): its status says so, or, unmarked after a crash, the archive does."""
    if (body.get("status") or {}).get("archivedAt"):
        return True
    if ctx.archive is None:
        return False
    try:
        return await ctx.archive.exists(body["metadata"]["uid"])
    except ArchiveUnavailable as exc:
        raise kopf.TemporaryError(f"is the job archived? {exc}", delay=10) from exc


async def _cleanup(ctx: Context, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    # Deleting a job must not erase its user's usage (fair share could be gamed so).
    await usage.account_deleted(ctx, body, time.time())
    if (body.get("status") or {}).get("phase") not in {p.value for p in c.TERMINAL_JOB_PHASES}:
        _, runtime_message = await runtime_cancel.cancel(ctx, body)
        if runtime_message:
            log.info("job %s/%s deleted while it ran; %s", ns, name, runtime_message)
    where = jobspec.placement(body)
    await ctx.kube.delete(Job, jobspec.batch_job_name(where.base), where.namespace)
    pods = await _pods(ctx, body)
    if pods:
        # A terminating pod still uploads its final logs: only once it is gone can the
        # stored objects be removed for good. kopf retries this finalizer step.
        for pod in pods:
            await ctx.kube.delete(Pod, pod["metadata"]["name"], pod["metadata"]["namespace"])
        raise kopf.TemporaryError(f"waiting for {len(pods)} pod(s) of the job to stop", delay=2)
    for secret in (
        jobspec.runtime_secret_name(where.base),
        jobspec.arguments_secret_name(where.base),
        jobspec.provider_secret_name(where.base),
        jobspec.credentials_secret_name(where.base),
    ):
        await ctx.kube.delete(Secret, secret, where.namespace)
    await ctx.kube.delete(Secret, jobspec.output_secret_name(name), ns)
    if not ctx.config.retain_objects_on_delete and not await _archived(ctx, body):
        tasks_folder = storage.task_payloads_folder(ns, uid)
        payloads = [tasks_folder + n for n, _ in await ctx.store.alist_folder(tasks_folder)]
        await ctx.store.adelete(
            storage.result_key(ns, uid),
            storage.logs_key(ns, uid),
            storage.provider_logs_key(ns, uid),
            *payloads,
        )
