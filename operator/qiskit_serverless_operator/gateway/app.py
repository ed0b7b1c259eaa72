"""The REST gateway's aiohttp applications: the API (TLS) and health + metrics (plain).

Every error leaves in the real gateway's JSON shape (errors.py), whatever raised it: ours,
aiohttp's own (unknown path, wrong method, body too large) or an unexpected one (500, logged
with its traceback, never shown to the caller). Each request is counted per route, method
and status, and timed per route.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from ..kube import Kube, QiskitFunction
from ..storage import ObjectStore
from . import files_api, functions_api, jobs_api
from .auth import Authority
from .config import GatewayConfig
from .errors import GatewayError
from .state import GATEWAY, Gateway

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "qso_gateway_requests_total",
    "REST gateway requests by route, method and status",
    ["route", "method", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "qso_gateway_request_seconds",
    "REST gateway request time by route and method",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf")),
    registry=REGISTRY,
)
READY_CACHE_SECONDS = 5.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    try:
        response = await handler(request)
    except GatewayError as exc:
        response = exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.reason
        if exc.status == 404:
            reason = f"no such endpoint: {request.method} {request.path}"
        elif exc.status == 405:
            reason = f"{request.method} is not allowed on {request.path}"
        response = web.json_response({"message": reason}, status=exc.status)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        response = web.json_response({"message": "Internal server error"}, status=500)
    route = _route(request)
    REQUESTS.labels(route, request.method, str(response.status)).inc()
    LATENCY.labels(route, request.method).observe(time.monotonic() - started)
    return response


def api(gateway: Gateway) -> web.Application:
    # aiohttp's own body limit for request.json()/read(): uploads stream (state.read_form).
    app = web.Application(middlewares=[_errors_and_metrics], client_max_size=4 * 1024 * 1024)
    app[GATEWAY] = gateway
    for module in (functions_api, jobs_api, files_api):
        app.add_routes(module.routes)
    return app


def health(gateway: Gateway) -> web.Application:
    checked = {"at": 0.0, "ok": False, "why": "not checked yet"}

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        """Ready when the API server answers (every request needs it) and the watch cache of
        live jobs holds its first listing (before it, every job would read as unknown)."""
        if not gateway.history.live.synced.is_set():
            return web.json_response(
                {"status": "not ready", "message": "listing the live jobs"}, status=503
            )
        if time.monotonic() - checked["at"] > READY_CACHE_SECONDS:
            try:
                async for _qf in gateway.kube.client.list(
                    QiskitFunction, namespace="*", chunk_size=1
                ):
                    break
                checked.update(ok=True, why="")
            except Exception as exc:  # any failure to reach it is "not ready"
                checked.update(ok=False, why=f"the API server does not answer: {exc}")
            checked["at"] = time.monotonic()
        if checked["ok"]:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "message": checked["why"]}, status=503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


def build(config: GatewayConfig, kube: Kube | None = None) -> Gateway:
    kube = kube or Kube()
    return Gateway(
        config=config,
        kube=kube,
        store=ObjectStore(config.s3),
        authority=Authority(
            kube,
            token_seconds=config.token_cache_seconds,
            access_seconds=config.access_cache_seconds,
        ),
    )
