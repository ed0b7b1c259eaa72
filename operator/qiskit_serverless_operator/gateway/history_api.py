"""The history API: every job, live or archived, as a Kubernetes API the API server serves.

An APIService (``v1alpha1.history.serverless.qiskit.org``, manifests/base/history-api.yaml)
makes the Kubernetes API server proxy ``/apis/history.serverless.qiskit.org/...`` here, as it
does for metrics-server. So the SDK reaches archived jobs with its kubeconfig, whatever the
kubeconfig authenticates with (client certificates included), and ``kubectl get
serverlessjobrecords`` works; the cluster's own RBAC decides who sees what:

- only the API server's front proxy may connect (its client certificate, signed by the
  requestheader CA the API server publishes in ``kube-system/extension-apiserver-authentication``);
- the user it vouches for (``X-Remote-User``/``-Group``/``-Extra-*``) is checked with a
  SubjectAccessReview on ``serverlessjobrecords`` (and its ``result``, ``logs``,
  ``providerlogs`` subresources) in the job's namespace, as kubectl's own requests are.

A record's name is its job id (a ServerlessJob's name can be used again after it is gone).
Lists page with ``limit`` and ``continue`` (keyset: the job order, newest first); ``offset``
is accepted too, for the SDK's ``jobs(offset=...)``.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import re
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .. import storage
from ..archive.query import JobKey, JobQuery, Scope
from ..constants import JobPhase
from ..runtime import logsplit
from .auth import Caller
from .errors import GatewayError
from .history import unavailable
from .state import GATEWAY, Gateway

log = logging.getLogger(__name__)

GROUP = "history.serverless.qiskit.org"
VERSION = "v1alpha1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
KIND = "ServerlessJobRecord"
PLURAL = "serverlessjobrecords"
SINGULAR = "serverlessjobrecord"
SHORT_NAMES = ["sjr"]
SUBRESOURCES = ("result", "logs", "providerlogs")
DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
# The API server's front proxy publishes its CA and names here (every cluster has it).
AUTH_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")
_FIELD = re.compile(r"^([a-zA-Z.]+)(==|=)(.*)$")

ROUTES = web.RouteTableDef()
BASE = f"/apis/{GROUP}/{VERSION}"


def status_error(code: int, reason: str, message: str, **details: Any) -> web.Response:
    """An error in the Kubernetes API's own shape (kubectl prints its message)."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return web.json_response(body, status=code)


class ApiFailure(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@dataclass(frozen=True)
class FrontProxy:
    """Who may connect (the front proxy's certificate names) and how it names the user."""

    allowed_names: frozenset[str]
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    def caller(self, request: web.Request, namespace: str) -> Caller:
        cert = request.transport.get_extra_info("peercert") if request.transport else None
        if not cert:
            raise ApiFailure(401, "Unauthorized", "a client certificate of the front proxy")
        subject = dict(pair[0] for pair in cert.get("subject", ()))
        if self.allowed_names and subject.get("commonName") not in self.allowed_names:
            raise ApiFailure(401, "Unauthorized", "this client may not act as the front proxy")
        names = [request.headers[h] for h in self.username_headers if h in request.headers]
        if not names or not names[0]:
            raise ApiFailure(401, "Unauthorized", "the front proxy named no user")
        user = names[0]
        groups = tuple(g for h in self.group_headers for g in request.headers.getall(h, []))
        extra: dict[str, list[str]] = {}
        for header, value in request.headers.items():
            for prefix in self.extra_prefixes:
                if header.lower().startswith(prefix.lower()):
                    key = urllib.parse.unquote(header[len(prefix) :]).lower()
                    extra.setdefault(key, []).append(value)
        return Caller(
            user=user,
            groups=groups,
            uid="",
            extra=tuple(sorted((k, tuple(v)) for k, v in extra.items())),
            namespace=namespace,
        )


PROXY = web.AppKey("front_proxy", FrontProxy)


@web.middleware
async def _statuses(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiFailure as exc:
        return status_error(exc.code, exc.reason, exc.message)
    except GatewayError as exc:
        reason = {403: "Forbidden", 404: "NotFound", 400: "BadRequest"}.get(
            exc.status, "ServiceUnavailable"
        )
        return status_error(exc.status, reason, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return status_error(exc.status, "NotFound", f"{request.method} {request.path}")
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return status_error(500, "InternalError", "internal error")


# --------------------------------------------------------------------------- discovery


@ROUTES.get(f"/apis/{GROUP}")
async def api_group(_: web.Request) -> web.Response:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return web.json_response(
        {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": GROUP,
            "versions": [version],
            "preferredVersion": version,
        }
    )


@ROUTES.get(BASE)
async def api_resources(_: web.Request) -> web.Response:
    resources = [
        {
            "name": PLURAL,
            "singularName": SINGULAR,
            "namespaced": True,
            "kind": KIND,
            "verbs": ["get", "list", "delete"],
            "shortNames": SHORT_NAMES,
        }
    ] + [
        {
            "name": f"{PLURAL}/{sub}",
            "singularName": "",
            "namespaced": True,
            "kind": KIND,
            "verbs": ["get"],
        }
        for sub in SUBRESOURCES
    ]
    return web.json_response(
        {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": GROUP_VERSION,
            "resources": resources,
        }
    )


# --------------------------------------------------------------------------- objects


def record(key: JobKey) -> dict[str, Any]:
    """A job as a ServerlessJobRecord: its id for a name, the job's spec and status."""
    body = key.body
    meta = body["metadata"]
    annotations = dict(meta.get("annotations") or {})
    annotations["serverless.qiskit.org/job-name"] = meta["name"]
    return {
        "apiVersion": GROUP_VERSION,
        "kind": KIND,
        "metadata": {
            "name": key.job_id,
            "namespace": key.namespace,
            "uid": key.job_id,
            "creationTimestamp": meta.get("creationTimestamp"),
            "labels": meta.get("labels") or {},
            "annotations": annotations,
        },
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }


def _age(created: str | None) -> str:
    if not created:
        return "<unknown>"
    start = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    seconds = int((datetime.datetime.now(datetime.UTC) - start).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


COLUMNS = [
    ("Name", "string", "name", "The job's id."),
    ("Job", "string", "", "The ServerlessJob's name."),
    ("Function", "string", "", "The function's title."),
    ("Status", "string", "", "The job's phase."),
    ("User", "string", "", "Who submitted it."),
    ("Archived", "string", "", "When its summary was archived (empty: live)."),
    ("Age", "string", "", "Since the job was created."),
]


def table(items: list[JobKey], continue_token: str | None) -> dict[str, Any]:
    """The Table kubectl asks for (``kubectl get`` prints it as it comes)."""
    rows = []
    for key in items:
        obj = record(key)
        status = obj["status"]
        rows.append(
            {
                "cells": [
                    key.job_id,
                    key.body["metadata"]["name"],
                    key.function,
                    key.phase,
                    key.user,
                    status.get("archivedAt") or "",
                    _age(obj["metadata"]["creationTimestamp"]),
                ],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            }
        )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"continue": continue_token} if continue_token else {},
        "columnDefinitions": [
            {"name": n, "type": t, "format": f, "description": d, "priority": 0}
            for n, t, f, d in COLUMNS
        ],
        "rows": rows,
    }


def _wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


# --------------------------------------------------------------------------- requests


def _gw(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


async def _authorize(
    request: web.Request,
    verb: str,
    namespace: str,
    name: str | None = None,
    subresource: str | None = None,
) -> Caller:
    caller = request.app[PROXY].caller(request, namespace)
    gw = _gw(request)
    ok, reason = await gw.authority.allowed(
        caller,
        verb,
        PLURAL,
        namespace=namespace or None,
        name=name,
        group=GROUP,
        subresource=subresource,
    )
    if not ok:
        what = f"{PLURAL}.{GROUP}" + (f"/{subresource}" if subresource else "")
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        raise ApiFailure(
            403,
            "Forbidden",
            f"{PLURAL}.{GROUP}{f' {name!r}' if name else ''} is forbidden: User "
            f'"{caller.user}" cannot {verb} resource "{what}"{where}'
            + (f": {reason}" if reason else ""),
        )
    return caller


def _fields(request: web.Request) -> dict[str, str]:
    raw = request.query.get("fieldSelector") or ""
    selected: dict[str, str] = {}
    for part in filter(None, raw.split(",")):
        match = _FIELD.match(part.strip())
        if (
            not match
            or match.group(1)
            not in (
                "metadata.name",
                "metadata.namespace",
                "spec.function",
                "spec.provider",
                "status.phase",
                "status.user",
                "task",
            )
            or (match.group(1) == "task" and match.group(3) not in ("true", "false"))
        ):
            raise ApiFailure(
                400,
                "BadRequest",
                f"field selector {part!r} is not supported: use metadata.name, spec.function, "
                "spec.provider, status.phase, status.user or task=false (leaves a job's tasks "
                "out), with =",
            )
        selected[match.group(1)] = match.group(3)
    if request.query.get("labelSelector"):
        raise ApiFailure(400, "BadRequest", "label selectors are not supported: use fields")
    return selected


def _continue(token: str | None) -> tuple[float, str] | None:
    if not token:
        return None
    try:
        moment, job_id = json.loads(base64.urlsafe_b64decode(token.encode()).decode())
        return float(moment), str(job_id)
    except (ValueError, TypeError) as exc:
        raise ApiFailure(410, "Expired", "the continue token is not one of this API's") from exc


def _token(key: JobKey) -> str:
    return base64.urlsafe_b64encode(json.dumps([key.submitted_at, key.job_id]).encode()).decode()


def _int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiFailure(400, "BadRequest", f"{name} must be an integer, not {raw!r}") from exc
    if value < 0:
        raise ApiFailure(400, "BadRequest", f"{name} must be 0 or more")
    return value


def listing(request: web.Request, namespace: str | None) -> tuple[JobQuery, str | None]:
    """The request's listing, and the one job id it names (``metadata.name=``), if any."""
    fields = _fields(request)
    namespace = fields.get("metadata.namespace", namespace) if namespace is None else namespace
    phase = fields.get("status.phase")
    if phase and phase not in {p.value for p in JobPhase}:
        raise ApiFailure(400, "BadRequest", f"status.phase {phase!r} is not a job phase")
    limit = min(_int(request, "limit", DEFAULT_LIMIT) or DEFAULT_LIMIT, MAX_LIMIT)
    task = fields.get("task")
    return JobQuery(
        scopes=(
            Scope(
                namespace=namespace,
                user=fields.get("status.user"),
                function=fields.get("spec.function"),
                provider=fields.get("spec.provider"),
            ),
        ),
        phases=(phase,) if phase else None,
        include_tasks=task != "false",
        limit=limit,
        offset=_int(request, "offset", 0),
        before=_continue(request.query.get("continue")),
    ), fields.get("metadata.name")


async def _list(request: web.Request, namespace: str | None) -> web.Response:
    await _authorize(request, "list", namespace or "")
    query, only_id = listing(request, namespace)
    gw = _gw(request)
    if only_id:
        found = await gw.history.find(only_id, namespace)
        items = [found] if found is not None and query.matches(found) else []
        more = False
    else:
        items, _ = await gw.history.page(query, with_count=False)
        more = query.limit is not None and len(items) == query.limit
    token = _token(items[-1]) if more and items else None
    if _wants_table(request):
        return web.json_response(table(items, token))
    meta: dict[str, Any] = {"resourceVersion": ""}
    if token:
        meta["continue"] = token
    return web.json_response(
        {
            "kind": f"{KIND}List",
            "apiVersion": GROUP_VERSION,
            "metadata": meta,
            "items": [record(key) for key in items],
        }
    )


@ROUTES.get(f"{BASE}/{PLURAL}")
async def list_all(request: web.Request) -> web.Response:
    return await _list(request, None)


@ROUTES.get(f"{BASE}/namespaces/{{namespace}}/{PLURAL}")
async def list_namespace(request: web.Request) -> web.Response:
    return await _list(request, request.match_info["namespace"])


async def _one(request: web.Request, verb: str, subresource: str | None = None) -> JobKey:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    await _authorize(request, verb, namespace, name, subresource)
    found = await _gw(request).history.find(name, namespace)
    if found is None:
        raise ApiFailure(404, "NotFound", f'{PLURAL}.{GROUP} "{name}" not found')
    return found


@ROUTES.get(f"{BASE}/namespaces/{{namespace}}/{PLURAL}/{{name}}")
async def get_record(request: web.Request) -> web.Response:
    found = await _one(request, "get")
    if _wants_table(request):
        return web.json_response(table([found], None))
    return web.json_response(record(found))


@ROUTES.delete(f"{BASE}/namespaces/{{namespace}}/{PLURAL}/{{name}}")
async def delete_record(request: web.Request) -> web.Response:
    """Delete an archived job for good: its row and its stored result and logs."""
    found = await _one(request, "delete")
    gw = _gw(request)
    if gw.history.live.get(found.job_id) is not None:
        raise ApiFailure(
            409,
            "Conflict",
            f"job {found.job_id} is live: delete its ServerlessJob "
            f"{found.body['metadata']['name']!r} (kubectl delete sj)",
        )
    assert gw.history.archive is not None  # found and not live: archived
    try:
        removed = await gw.history.archive.delete(found.job_id)
    except Exception as exc:
        from ..archive.errors import ArchiveUnavailable

        if isinstance(exc, ArchiveUnavailable):
            raise unavailable(exc) from exc
        raise
    if removed and removed.object_keys:
        await gw.store.adelete(*removed.object_keys)
    return web.json_response(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": found.job_id, "group": GROUP, "kind": PLURAL},
        }
    )


async def _text(gw: Gateway, key: JobKey, which: str) -> str | None:
    status = key.body.get("status") or {}
    if which == "result":
        if key.phase != JobPhase.DONE or not (status.get("result") or {}).get("key"):
            return None
        data = await gw.store.aget(status["result"]["key"])
        return data.decode() if data is not None else None
    field, default = (
        ("providerLogs", storage.provider_logs_key)
        if which == "providerlogs"
        else ("logs", storage.logs_key)
    )
    location = status.get(field) or {}
    data = await gw.store.aget(location.get("key") or default(key.namespace, key.job_id))
    if data is None:
        return None
    text = data[-gw.config.max_log_bytes :].decode(errors="replace")
    return logsplit.user_view(text, provider_function=False) if which == "logs" else text


def _subresource_route(which: str) -> None:
    @ROUTES.get(f"{BASE}/namespaces/{{namespace}}/{PLURAL}/{{name}}/{which}")
    async def read(request: web.Request) -> web.Response:
        found = await _one(request, "get", which)
        text = await _text(_gw(request), found, which)
        return web.json_response(
            {
                "apiVersion": GROUP_VERSION,
                "kind": "ServerlessJobOutput",
                "jobId": found.job_id,
                "output": which,
                "phase": found.phase,
                "present": text is not None,
                "text": text,
            }
        )


for _which in SUBRESOURCES:
    _subresource_route(_which)


# --------------------------------------------------------------------------- serving


def app(gateway: Gateway, proxy: FrontProxy) -> web.Application:
    application = web.Application(middlewares=[_statuses])
    application[GATEWAY] = gateway
    application[PROXY] = proxy
    application.add_routes(ROUTES)
    return application


async def front_proxy_settings(gateway: Gateway) -> tuple[str, FrontProxy] | None:
    """The requestheader CA (PEM) and names the API server published, or None when it is
    not set up as an aggregation front proxy (then the history API is not served)."""
    from ..kube import ConfigMap

    namespace, name = AUTH_CONFIGMAP
    found = await gateway.kube.get(ConfigMap, name, namespace)
    data = (found or {}).get("data") or {}
    ca = data.get("requestheader-client-ca-file")
    if not ca:
        return None

    def names(key: str, default: list[str]) -> tuple[str, ...]:
        return tuple(json.loads(data[key])) if data.get(key) else tuple(default)

    proxy = FrontProxy(
        allowed_names=frozenset(names("requestheader-allowed-names", [])),
        username_headers=names("requestheader-username-headers", ["X-Remote-User"]),
        group_headers=names("requestheader-group-headers", ["X-Remote-Group"]),
        extra_prefixes=names("requestheader-extra-headers-prefix", ["X-Remote-Extra-"]),
    )
    return ca, proxy


def tls_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """Serve with the gateway's certificate; accept only clients the front proxy's CA signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cadata=client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context
