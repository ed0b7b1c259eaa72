"""The operator's job endpoint: what a running program calls back (``ENV_JOB_GATEWAY_HOST``).

Not the REST gateway users talk to (``qiskit_serverless_operator.gateway``): this one is
served by every operator replica, answers job pods only, and authenticates them with a
per-job token: ``<namespace>.<job name>.<random>``, kept in the job's runtime Secret, so the
operator finds the job without an index and a pod can reach only its own job.

What the qiskit_serverless package in the pod calls, under ``/api/{version}/jobs/{job uid}/``:

- ``PATCH sub_status/`` (form field ``sub_status``): ``update_status()``;
- ``POST runtime_jobs/`` (``{"runtime_job", "runtime_session"}``): a Qiskit Runtime job the
  program started through ``get_runtime_service()``, kept in ``status.runtimeJobs``;
- ``POST event/`` (``{"type": "ERROR", "code", "message", "exception", "args"}``):
  ``send_error()``, kept in ``status.events``;

and what the pod's wrapper (runtime/) calls for the files API's folders (files.py):

- ``GET files/``: the job's ``/data`` and ``/function_data`` files, with download links;
- ``POST files/`` (``{"folder", "name", "size"}``): an upload link for a file the program
  wrote, after the name and quota checks;

and what ``distribute_task`` in the program calls (runtime/tasks.py):

- ``POST tasks/`` (``{"index", "size"}``): an upload link for task ``index``'s pickled call;
- ``PUT tasks/{index}/`` (``{"requests": {"cpu", "memory"}, "env"}``): make the task's
  ServerlessJob once its call is stored (a repeat answers with the one made before);
- ``GET tasks/``: every task of the job, with a read link to each finished one's result.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .. import constants as c
from .. import files, storage
from ..kube import ApiError, Secret, ServerlessJob
from . import jobspec
from .catalog import find_function
from .context import Context, get_context

log = logging.getLogger(__name__)

# The values qiskit_serverless's Job class defines for update_status().
SUB_STATUSES = ("MAPPING", "OPTIMIZING_HARDWARE", "WAITING_QPU", "EXECUTING_QPU", "POST_PROCESSING")
RUNTIME_JOBS_KEPT = 1000
EVENTS_KEPT = 20
LINK_SECONDS = 3600
_TERMINAL = {p.value for p in c.TERMINAL_JOB_PHASES}


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def _token(request: web.Request) -> tuple[str, str, str]:
    auth = request.headers.get("Authorization", "")
    token = auth.removeprefix("Bearer ").strip()
    parts = token.split(".", 2)
    if not auth.startswith("Bearer ") or len(parts) != 3:
        raise Refused(401, "missing or malformed bearer token")
    return parts[0], parts[1], token


async def _own_job(ctx: Context, request: web.Request) -> dict[str, Any]:
    """The job the token belongs to, if it is the one in the path."""
    namespace, name, token = _token(request)
    try:
        sj = await ctx.kube.get(ServerlessJob, name, namespace)
        digest = ((sj or {}).get("status") or {}).get("tokenSha256")
        if sj is not None and not digest:
            # Started by an operator before status.tokenSha256: the runtime Secret holds it.
            digest = await _digest_from_secret(ctx, sj)
    except ApiError as exc:
        raise Refused(502, f"cannot read the job: {exc.status.message}") from exc
    if sj is None or not digest or not hmac.compare_digest(digest, jobspec.token_digest(token)):
        raise Refused(403, "token does not match this job")
    if sj["metadata"]["uid"] != request.match_info["job_id"]:
        raise Refused(403, "token does not match this job")
    return sj


async def _digest_from_secret(ctx: Context, sj: dict[str, Any]) -> str:
    where = jobspec.placement(sj)  # a provider's namespace for a catalog function
    secret = await ctx.kube.get(Secret, jobspec.runtime_secret_name(where.base), where.namespace)
    token = base64.b64decode(((secret or {}).get("data") or {}).get(jobspec.GATEWAY_TOKEN_KEY, ""))
    return jobspec.token_digest(token.decode()) if token else ""


def _endpoint(
    handler: Callable[[Context, web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(get_context(), request)
        except Refused as exc:
            return _error(exc.status, exc.message)

    return wrapped


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise Refused(400, f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise Refused(400, "the request body must be a JSON object")
    return body


async def _update_list(
    ctx: Context, sj: dict[str, Any], field: str, change: Callable[[list], list]
) -> None:
    """Read-modify-write of a list in the job's status (a merge patch replaces lists whole),
    guarded by resourceVersion and retried when another writer came first."""
    meta = sj["metadata"]
    for _ in range(10):
        current = list((sj.get("status") or {}).get(field) or [])
        try:
            await ctx.kube.patch_status(
                ServerlessJob,
                meta["name"],
                meta["namespace"],
                {field: change(current)},
                resource_version=sj["metadata"]["resourceVersion"],
            )
            return
        except ApiError as exc:
            if exc.status.code != 409:
                raise Refused(502, f"cannot update the job: {exc.status.message}") from exc
        await asyncio.sleep(0.05)
        fresh = await ctx.kube.get(ServerlessJob, meta["name"], meta["namespace"])
        if fresh is None:
            raise Refused(404, "the job is gone")
        sj = fresh
    raise Refused(503, "the job changed too often to update; try again")


@_endpoint
async def sub_status(ctx: Context, request: web.Request) -> web.Response:
    namespace, name, _ = _token(request)
    sj = await _own_job(ctx, request)  # first: a stranger learns nothing from a 400
    form = await request.post()
    value = str(form.get("sub_status", "")).strip()
    if value not in SUB_STATUSES:
        return _error(400, f"sub_status must be one of {', '.join(SUB_STATUSES)}; got {value!r}")
    phase = (sj.get("status") or {}).get("phase")
    if phase in _TERMINAL:
        return _error(409, f"the job is already {phase}")
    try:
        await ctx.kube.patch_status(ServerlessJob, name, namespace, {"subStatus": value})
    except ApiError as exc:
        return _error(502, f"cannot update the job: {exc.status.message}")
    log.info("job %s/%s sub-status %s", namespace, name, value)
    return web.json_response({"message": "Sub status updated correctly", "sub_status": value})


@_endpoint
async def runtime_job(ctx: Context, request: web.Request) -> web.Response:
    sj = await _own_job(ctx, request)
    body = await _json(request)
    job_id, session = body.get("runtime_job"), body.get("runtime_session")
    if not isinstance(job_id, str) or not job_id or len(job_id) > 100:
        return _error(400, "'runtime_job' must be a Qiskit Runtime job id (1 to 100 characters)")
    if session is not None and (not isinstance(session, str) or len(session) > 100):
        return _error(400, "'runtime_session' must be a session id (up to 100 characters)")

    def add(present: list) -> list:
        kept = [item for item in present if item.get("job") != job_id]
        entry = {"job": job_id, **({"session": session} if session else {})}
        return [*kept, entry][-RUNTIME_JOBS_KEPT:]

    await _update_list(ctx, sj, "runtimeJobs", add)
    uid = sj["metadata"]["uid"]
    return web.json_response(
        {"message": f"RuntimeJob object [{job_id}] created for serverless job id [{uid}]."}
    )


@_endpoint
async def event(ctx: Context, request: web.Request) -> web.Response:
    sj = await _own_job(ctx, request)
    body = await _json(request)
    missing = [key for key in ("type", "code", "message", "exception") if body.get(key) is None]
    if missing:
        return _error(400, f"missing fields: {', '.join(missing)}")
    if str(body["type"]).upper() != "ERROR":
        return _error(400, "Type is not valid. Valid types: ['ERROR']")
    args = body.get("args")
    if args is not None and len(json.dumps(args)) > 16 * 1024:
        args = {"note": "args over 16 KiB were dropped"}
    entry = {
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "code": str(body["code"])[:256],
        "message": str(body["message"])[:4096],
        "exception": str(body["exception"])[:256],
        **({"args": args} if args is not None else {}),
    }
    await _update_list(ctx, sj, "events", lambda present: [*present, entry][-EVENTS_KEPT:])
    return web.Response(status=200)


async def _folders(ctx: Context, sj: dict[str, Any]) -> dict[str, str]:
    """The job's folders: mount point -> object-storage prefix."""
    qf = await find_function(ctx, sj)
    return files.job_folders(
        sj["metadata"]["namespace"],
        jobspec.queue_user(sj),
        sj["spec"]["function"],
        (qf or {}).get("spec", {}).get("provider") or None,
        provider_namespace=(qf or {}).get("metadata", {}).get("namespace"),
    )


async def folder_listing(
    ctx: Context, folders: dict[str, str], seconds: int = LINK_SECONDS
) -> dict[str, list[dict[str, Any]]]:
    """Each folder's files with a download link: what the pod's wrapper fetches."""
    listing: dict[str, list[dict[str, Any]]] = {}
    for mount, prefix in folders.items():
        present = await ctx.store.alist_folder(prefix)
        listing[mount] = [
            {"name": name, "size": size, "url": ctx.store.presign_get(prefix + name, seconds)}
            for name, size in present
        ]
    return listing


@_endpoint
async def list_files(ctx: Context, request: web.Request) -> web.Response:
    sj = await _own_job(ctx, request)
    answer: dict[str, Any] = {
        "max_file_bytes": ctx.config.files.max_file_bytes,
        "quota_bytes": ctx.config.files.quota_bytes,
    }
    answer["folders"] = await folder_listing(ctx, await _folders(ctx, sj))
    return web.json_response(answer)


@_endpoint
async def file_upload_link(ctx: Context, request: web.Request) -> web.Response:
    sj = await _own_job(ctx, request)
    body = await _json(request)
    folders = await _folders(ctx, sj)
    mount, size = body.get("folder"), body.get("size")
    if mount not in folders:
        return _error(400, f"'folder' must be one of {', '.join(folders)}; got {mount!r}")
    if not isinstance(size, int) or size < 0:
        return _error(400, "'size' must be the file's size in bytes")
    try:
        name = files.check_name(str(body.get("name") or ""))
        present = await ctx.store.alist_folder(folders[mount])
        files.check_quota(ctx.config.files, present, name, size, mount)
    except files.FileNameError as exc:
        return _error(400, str(exc))
    except files.QuotaError as exc:
        return _error(413, str(exc))
    return web.json_response(
        {"url": ctx.store.presign_put(folders[mount] + name, LINK_SECONDS), "name": name}
    )


def _running(sj: dict[str, Any]) -> None:
    phase = (sj.get("status") or {}).get("phase")
    if phase in _TERMINAL:
        raise Refused(409, f"the job is already {phase}: it starts no more tasks")


def _task_index(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not (0 <= value < c.MAX_TASKS_PER_JOB)
    ):
        raise Refused(400, f"a task index is 0..{c.MAX_TASKS_PER_JOB - 1}, not {value!r}")
    return value


@_endpoint
async def task_upload_link(ctx: Context, request: web.Request) -> web.Response:
    sj = await _own_job(ctx, request)
    _running(sj)
    body = await _json(request)
    index, size = _task_index(body.get("index")), body.get("size")
    if not isinstance(size, int) or not 0 < size <= c.MAX_TASK_PAYLOAD_BYTES:
        return _error(
            413 if isinstance(size, int) and size > 0 else 400,
            f"'size' is the pickled call's size in bytes, 1..{c.MAX_TASK_PAYLOAD_BYTES}; "
            f"got {size!r}",
        )
    meta = sj["metadata"]
    key = storage.task_payload_key(meta["namespace"], meta["uid"], index)
    return web.json_response({"url": ctx.store.presign_put(key, LINK_SECONDS)})


def _task_requests(body: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    requests, env = body.get("requests") or {}, body.get("env") or {}
    if not isinstance(requests, dict) or set(requests) - {"cpu", "memory"}:
        raise Refused(400, "'requests' takes 'cpu' and 'memory' only")
    if not isinstance(env, dict) or len(env) > 64:
        raise Refused(400, "'env' is an object of at most 64 variables")
    for key, value in [*requests.items(), *env.items()]:
        if not isinstance(value, str) or len(value) > 4096 or not isinstance(key, str):
            raise Refused(400, f"{key!r}: values are strings (at most 4096 characters)")
    return requests, env


@_endpoint
async def task_start(ctx: Context, request: web.Request) -> web.Response:
    sj = await _own_job(ctx, request)
    _running(sj)
    index = _task_index(request.match_info["index"])
    requests, env = _task_requests(await _json(request))
    meta = sj["metadata"]
    key = storage.task_payload_key(meta["namespace"], meta["uid"], index)
    if await ctx.store.asize(key) is None:
        return _error(409, f"task {index}'s call is not stored yet: upload it first (POST tasks/)")
    body = jobspec.task_job(sj, index, requests, env)
    try:
        task, _ = await ctx.kube.create_or_get(body)
    except ApiError as exc:
        return _error(
            422 if exc.status.code == 422 else 502,
            f"the task's job was refused: {exc.status.message}",
        )
    if jobspec.task_owner_uid(task) != meta["uid"]:
        return _error(
            409, f"a job named {body['metadata']['name']} exists and is not this job's task"
        )
    log.info(
        "job %s/%s started task %d (%s)",
        meta["namespace"],
        meta["name"],
        index,
        body["metadata"]["name"],
    )
    return web.json_response({"name": task["metadata"]["name"]})


@_endpoint
async def task_states(ctx: Context, request: web.Request) -> web.Response:
    sj = await _own_job(ctx, request)
    meta = sj["metadata"]
    try:
        tasks = await ctx.kube.list(
            ServerlessJob, meta["namespace"], labels={c.LABEL_TASK_PARENT: meta["name"]}
        )
    except ApiError as exc:
        return _error(502, f"cannot list the job's tasks: {exc.status.message}")
    answer: dict[str, dict[str, Any]] = {}
    for task in tasks:
        if jobspec.task_owner_uid(task) != meta["uid"]:
            continue
        status = task.get("status") or {}
        entry = {
            "name": task["metadata"]["name"],
            "phase": status.get("phase") or c.JobPhase.QUEUED.value,
            "reason": status.get("reason", ""),
            "message": status.get("message", ""),
        }
        if entry["phase"] == c.JobPhase.DONE.value:
            entry["result_url"] = ctx.store.presign_get(
                storage.result_key(meta["namespace"], task["metadata"]["uid"]), LINK_SECONDS
            )
        answer[str(task["spec"]["task"]["index"])] = entry
    return web.json_response({"tasks": answer})


async def start(bind: str, port: int) -> web.AppRunner:
    app = web.Application()
    base = "/api/{version}/jobs/{job_id}"
    app.router.add_patch(f"{base}/sub_status/", sub_status)
    app.router.add_post(f"{base}/runtime_jobs/", runtime_job)
    app.router.add_post(f"{base}/event/", event)
    app.router.add_get(f"{base}/files/", list_files)
    app.router.add_post(f"{base}/files/", file_upload_link)
    app.router.add_post(f"{base}/tasks/", task_upload_link)
    app.router.add_put(f"{base}/tasks/{{index}}/", task_start)
    app.router.add_get(f"{base}/tasks/", task_states)
    app.router.add_get("/healthz", lambda _: web.json_response({"status": "ok"}))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, bind, port).start()
    log.info("job endpoint listening on %s:%d", bind, port)
    return runner
