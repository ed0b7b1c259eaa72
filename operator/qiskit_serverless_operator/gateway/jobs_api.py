"""``/api/v1/jobs/...``: list jobs, and a job's status, result, logs, events and stop.

Rights are those kubectl needs for the same: ``list``/``get serverlessjobs`` to see jobs,
``patch serverlessjobs`` to stop one, and ``get secrets`` on the job's read-link Secret
(``sj-out-<job>``) to read its result or logs (the SDK reads them through that Secret).
"""

from __future__ import annotations

import datetime
from typing import Any

from aiohttp import web
from lightkube.core.exceptions import ApiError

from .. import constants as c
from .. import storage
from ..archive.errors import ArchiveUnavailable
from ..archive.query import JobQuery, Scope
from ..constants import JobPhase
from ..controller import jobspec
from ..kube import ServerlessJob
from ..runtime import logsplit
from . import shapes
from .auth import Caller
from .errors import GatewayError, bad_request, forbidden, job_not_found
from .history import unavailable
from .state import GATEWAY, Gateway, Routes, query

routes = Routes()
MESSAGE_STOPPED = "Job has been stopped."
MESSAGE_TERMINAL = "Job already in terminal state."
MESSAGE_DELETED = "Job has been deleted."
DEFAULT_PAGE = 100


def _gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


def _int(request: web.Request, name: str, default: int) -> int:
    raw = query(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"'{name}': A valid integer is required.") from None
    if value < 0:
        raise bad_request(f"'{name}': Ensure this value is greater than or equal to 0.")
    return value


def _created_after(request: web.Request) -> float | None:
    raw = query(request, "created_after")
    if raw is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"'created_after' is not an ISO 8601 date and time: {raw!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _query(request: web.Request, scopes: tuple[Scope, ...]) -> JobQuery:
    """The listing the request asks for: its filters and page over ``scopes``."""
    status = query(request, "status")
    phases: tuple[str, ...] | None = None
    stop_requested: bool | None = None
    if status == shapes.STOPPING:
        # Asked to stop, not ended yet: live jobs only (archived ones have all ended).
        phases, stop_requested = tuple(p.value for p in shapes.NOT_ENDED), True
    elif status:
        if status not in shapes.PHASE_OF_STATUS:
            choices = ", ".join([*shapes.PHASE_OF_STATUS, shapes.STOPPING])
            raise bad_request(f"'status' must be one of {choices}; got {status!r}")
        phase = shapes.PHASE_OF_STATUS[status]
        phases = (phase.value,)
        if phase in shapes.NOT_ENDED:
            stop_requested = False  # a job asked to stop shows as STOPPING instead
    limit = _int(request, "limit", DEFAULT_PAGE)
    return JobQuery(
        scopes=scopes,
        phases=phases,
        stop_requested=stop_requested,
        created_after=_created_after(request),
        limit=limit or None,
        offset=_int(request, "offset", 0),
    )


async def _page(request: web.Request, gw: Gateway, listing: JobQuery) -> web.Response:
    """One page, in the real gateway's shape: {count, next, previous, results}."""
    items, count = await gw.history.page(listing)
    limit, offset = listing.limit or 0, listing.offset
    functions: dict[tuple[str, str, str | None], dict[str, Any] | None] = {}
    base = f"{request.scheme}://{request.host}{request.path}"
    more = bool(limit) and offset + limit < count
    return web.json_response(
        {
            "count": count,
            "next": f"{base}?limit={limit}&offset={offset + limit}" if more else None,
            "previous": (
                f"{base}?limit={limit}&offset={max(0, offset - limit)}"
                if limit and offset
                else None
            ),
            "results": [
                shapes.job_json(key.body, await _function_of(gw, key.body, functions))
                for key in items
            ],
        }
    )


async def _function_of(
    gw: Gateway, sj: dict[str, Any], seen: dict[tuple[str, str, str | None], Any]
) -> dict[str, Any] | None:
    key = (sj["metadata"]["namespace"], sj["spec"]["function"], sj["spec"].get("provider"))
    if key not in seen:
        seen[key] = await gw.job_function(sj)
    return seen[key]


@routes.get("/api/{version}/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    """The caller's own jobs (those they submitted), newest first, as the real gateway lists
    its author's. A program's tasks (distribute_task) are parts of its job, not jobs of their
    own (as Ray's tasks were not): they are left out."""
    gw = _gateway(request)
    caller = await gw.caller(request)
    await gw.authority.require(caller, "list", "serverlessjobs")
    provider = query(request, "provider")
    title = query(request, "function")
    scope = Scope(namespace=caller.namespace, user=caller.user)
    if title:
        qf = await gw.require_function(caller.namespace, title, provider)
        catalog = qf["metadata"]["namespace"] != caller.namespace
        scope = Scope(
            namespace=caller.namespace,
            user=caller.user,
            function=title,
            provider=qf["spec"].get("provider") if catalog else "",
        )
    return await _page(request, gw, _query(request, (scope,)))


@routes.get("/api/{version}/jobs/provider")
async def list_provider_jobs(request: web.Request) -> web.Response:
    """Every user's jobs of a provider's functions, for whoever may change those functions."""
    gw = _gateway(request)
    caller = await gw.caller(request)
    provider = query(request, "provider", required=True)
    title = query(request, "function")
    await gw.authority.require(caller, "list", "serverlessjobs")
    # The provider's functions here, and its catalog ones (in the namespace named after it).
    candidates = list(await gw.functions(caller.namespace))
    if provider != caller.namespace:
        candidates += [qf for qf in await gw.functions(provider) if caller.namespace != provider]
    functions = [
        qf
        for qf in candidates
        if qf["spec"].get("provider") == provider and (not title or qf["spec"]["title"] == title)
    ]
    if title and not functions:
        await gw.require_function(caller.namespace, title, provider)
    for qf in functions:
        await gw.authority.require(
            caller,
            "update",
            "qiskitfunctions",
            name=qf["metadata"]["name"],
            namespace=qf["metadata"]["namespace"],
        )
    here = caller.namespace
    scopes: list[Scope] = []
    for qf in functions:
        title_of = qf["spec"]["title"]
        if qf["metadata"]["namespace"] == here:
            # The namespace's own function: its jobs here name no provider.
            scopes.append(Scope(namespace=here, function=title_of, provider=""))
        if qf["metadata"]["namespace"] == qf["spec"].get("provider"):
            # A catalog function (in the namespace named after its provider) is run from
            # others: its jobs are its users', in every namespace.
            scopes.append(Scope(function=title_of, provider=provider))
    if not scopes:
        return await _page(request, gw, _query(request, (Scope(namespace="", user=""),)))
    return await _page(request, gw, _query(request, tuple(scopes)))


async def _job(
    request: web.Request, verb: str = "get", *, providers_too: bool = False
) -> tuple[Gateway, Caller, dict[str, Any]]:
    """The caller's namespace's job with that id; with ``providers_too``, also another
    namespace's job of a catalog function the caller may change (its provider reads its
    status, provider logs, runtime jobs and events, as on IBM's gateway; never its result)."""
    gw = _gateway(request)
    caller = await gw.caller(request)
    job_id = request.match_info["job_id"]
    await gw.authority.require(caller, verb, "serverlessjobs")
    sj = await gw.job(caller.namespace, job_id)
    if sj is None and providers_too:
        sj = await gw.job("*", job_id)
        qf = await gw.job_function(sj) if sj is not None else None
        a_providers = qf is not None and sj is not None and sj["spec"].get("provider")
        if not a_providers or not await _may_change(gw, caller, qf):
            sj = None
    if sj is None:
        raise job_not_found(job_id)
    return gw, caller, sj


@routes.get("/api/{version}/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    gw, caller, sj = await _job(request, providers_too=True)
    shape = shapes.job_json(sj, await gw.job_function(sj))
    if query(request, "with_result") not in ("false", "False", "0"):
        # The result is its author's (None for the provider, as on IBM's gateway).
        mine = sj["metadata"]["namespace"] == caller.namespace
        shape["result"] = await _result_text(gw, sj) if mine else None
    return web.json_response(shape)


@routes.post("/api/{version}/jobs/{job_id}/stop")
async def stop(request: web.Request) -> web.Response:
    gw, caller, sj = await _job(request, "patch")
    if shapes.phase(sj) in c.TERMINAL_JOB_PHASES:
        return web.json_response({"message": MESSAGE_TERMINAL})
    try:
        await gw.kube.patch(
            ServerlessJob, sj["metadata"]["name"], caller.namespace, {"spec": {"stop": True}}
        )
    except ApiError as exc:
        raise GatewayError(502, f"could not stop the job: {exc.status.message}") from exc
    return web.json_response({"message": MESSAGE_STOPPED})


@routes.delete("/api/{version}/jobs/{job_id}")
async def delete_job(request: web.Request) -> web.Response:
    """Delete a job for good (an extension of the real gateway's API; our SDK's
    ``delete_job``): a finished live job's ServerlessJob (its finalizer removes its Secrets,
    result and logs), or an archived job's row, result and logs. A job that has not ended
    must be stopped first."""
    gw, caller, sj = await _job(request, "delete")
    job_id = request.match_info["job_id"]
    if shapes.phase(sj) not in c.TERMINAL_JOB_PHASES:
        raise GatewayError(409, f"Job {job_id} has not ended: stop it first.")
    archive = gw.history.archive
    if (sj.get("status") or {}).get("archivedAt") and archive is not None:
        try:
            removed = await archive.delete(job_id)
        except ArchiveUnavailable as exc:
            raise unavailable(exc) from exc
        if removed and removed.object_keys:
            await gw.store.adelete(*removed.object_keys)
    if gw.history.live.get(job_id) is not None or gw.history.archive is None:
        await gw.kube.delete(ServerlessJob, sj["metadata"]["name"], caller.namespace)
    return web.json_response({"message": MESSAGE_DELETED})


async def _may_read_outputs(gw: Gateway, caller: Caller, sj: dict[str, Any]) -> None:
    await gw.authority.require(
        caller, "get", "secrets", group="", name=jobspec.output_secret_name(sj["metadata"]["name"])
    )


async def _result_text(gw: Gateway, sj: dict[str, Any]) -> str | None:
    if shapes.phase(sj) != JobPhase.DONE:
        return None
    location = (sj.get("status") or {}).get("result")
    if not location:
        return None
    data = await gw.store.aget(location["key"])
    return data.decode() if data is not None else None


@routes.get("/api/{version}/jobs/{job_id}/result")
async def result(request: web.Request) -> web.Response:
    gw, caller, sj = await _job(request)
    await _may_read_outputs(gw, caller, sj)
    text = await _result_text(gw, sj)
    if text is None:
        return web.Response(status=204)  # the client reads this as {}
    return web.json_response({"result": text})


async def _log_text(gw: Gateway, sj: dict[str, Any], provider_side: bool = False) -> str:
    meta = sj["metadata"]
    field, default = (
        ("providerLogs", storage.provider_logs_key) if provider_side else ("logs", storage.logs_key)
    )
    location = (sj.get("status") or {}).get(field) or {}
    # While the job runs, the pod's wrapper keeps the same object up to date (every 5 s).
    key = location.get("key") or default(meta["namespace"], meta["uid"])
    data = await gw.store.aget(key)
    return (data or b"")[-gw.config.max_log_bytes :].decode(errors="replace")


async def _may_change(gw: Gateway, caller: Caller, qf: dict[str, Any]) -> bool:
    """Whether the caller may update the function: what makes a provider of it here."""
    ok, _ = await gw.authority.allowed(
        caller,
        "update",
        "qiskitfunctions",
        name=qf["metadata"]["name"],
        namespace=qf["metadata"]["namespace"],
    )
    return ok


async def _provider_function(gw: Gateway, caller: Caller, sj: dict[str, Any]) -> dict | None:
    qf = await gw.job_function(sj)
    return qf if qf is not None and qf["spec"].get("provider") else None


@routes.get("/api/{version}/jobs/{job_id}/logs")
async def logs(request: web.Request) -> web.Response:
    gw, caller, sj = await _job(request)
    await _may_read_outputs(gw, caller, sj)
    text = await _log_text(gw, sj)
    if not text:
        return web.Response(status=204)  # the client says 'No logs yet.'
    # A provider's function: the stored logs are already the user's share (its [PUBLIC] lines).
    return web.json_response({"logs": logsplit.user_view(text, provider_function=False)})


@routes.get("/api/{version}/jobs/{job_id}/provider-logs")
async def provider_logs(request: web.Request) -> web.Response:
    gw, caller, sj = await _job(request, providers_too=True)
    job_id = request.match_info["job_id"]
    qf = await _provider_function(gw, caller, sj)
    if qf is None:
        raise forbidden(f"You don't have access to job [{job_id}]: it is not a provider's function")
    if not await _may_change(gw, caller, qf):
        raise forbidden(
            f"You don't have access to job [{job_id}]: provider logs are for who may change "
            f"the function {qf['spec']['provider']}/{qf['spec']['title']}"
        )
    text = await _log_text(gw, sj, provider_side=True)
    if not text:
        return web.Response(status=204)
    return web.json_response({"logs": text})


@routes.get("/api/{version}/jobs/{job_id}/runtime_jobs")
async def runtime_jobs(request: web.Request) -> web.Response:
    _, _, sj = await _job(request, providers_too=True)
    return web.json_response({"runtime_jobs": shapes.runtime_jobs(sj)})


@routes.get("/api/{version}/jobs/{job_id}/events")
async def events(request: web.Request) -> web.Response:
    kind = query(request, "type")
    if kind and kind.upper() != "ERROR":
        raise bad_request("Type is not valid. Valid types: ['ERROR']")
    _, _, sj = await _job(request, providers_too=True)
    return web.json_response(shapes.job_events(sj))
