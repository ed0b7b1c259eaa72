"""python -m qiskit_serverless_operator.gateway: serve the Qiskit Serverless REST API.

Unchanged ``qiskit_serverless.ServerlessClient(host=..., token=..., instance=...)`` code
talks to it; every request becomes reads and writes of QiskitFunctions, ServerlessJobs and
object storage (docs/gateway.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
from typing import Any

from aiohttp import web
from lightkube import AsyncClient

from .. import logsetup
from ..config import ConfigError
from ..kube import Kube
from . import app as gateway_app
from . import history_api, live
from .config import GatewayConfig

log = logging.getLogger("qiskit_serverless_operator.gateway")
FIELD_MANAGER = "qiskit-serverless-gateway"
CERT_CHECK_SECONDS = 60.0


def tls_context(config: GatewayConfig) -> ssl.SSLContext | None:
    if not config.tls_cert or not config.tls_key:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


async def _reload_certificates(config: GatewayConfig, context: ssl.SSLContext) -> None:
    """A renewed certificate (cert-manager rewrites the mounted Secret) is served to new
    connections without a restart."""
    assert config.tls_cert and config.tls_key
    seen = os.stat(config.tls_cert).st_mtime
    while True:
        await asyncio.sleep(CERT_CHECK_SECONDS)
        try:
            mtime = os.stat(config.tls_cert).st_mtime
            if mtime != seen:
                context.load_cert_chain(config.tls_cert, config.tls_key)
                seen = mtime
                log.info("TLS certificate reloaded from %s", config.tls_cert)
        except (OSError, ssl.SSLError) as exc:
            log.warning("TLS certificate not reloaded (keeping the current one): %s", exc)


async def _open_archive(config: GatewayConfig, gateway: Any) -> None:
    """The job archive, read-only here; a database that is down now is retried per request."""
    from ..archive.errors import ArchiveUnavailable
    from ..archive.store import Archive

    assert config.archive_dsn
    archive = Archive(config.archive_dsn, max_size=4, timeout=5.0)
    await archive.open()
    try:
        await archive.migrate()  # idempotent; the operator does the same
    except ArchiveUnavailable as exc:
        log.warning("job archive: %s (archived jobs are unavailable until it answers)", exc)
    gateway.history.archive = archive


async def _serve_history(config: GatewayConfig, gateway: Any) -> web.AppRunner | None:
    """The history API for the API server's front proxy (history_api.py), when there is a
    certificate to serve it with and the cluster is set up as an aggregation front proxy."""
    if not config.history_port or not config.tls_cert or not config.tls_key:
        return None
    settings = await history_api.front_proxy_settings(gateway)
    if settings is None:
        log.warning(
            "the API server publishes no requestheader CA (%s/%s): the history API is not "
            "served (kubectl get serverlessjobrecords and the SDK's archived jobs need it)",
            *history_api.AUTH_CONFIGMAP,
        )
        return None
    client_ca, proxy = settings
    runner = web.AppRunner(history_api.app(gateway, proxy), access_log=None)
    await runner.setup()
    context = history_api.tls_context(config.tls_cert, config.tls_key, client_ca)
    await web.TCPSite(runner, config.bind, config.history_port, ssl_context=context).start()
    log.info("history API on https://%s:%d (front proxy only)", config.bind, config.history_port)
    return runner


async def serve(config: GatewayConfig) -> None:
    gateway = gateway_app.build(config, Kube(AsyncClient(field_manager=FIELD_MANAGER)))
    stopping = False
    # The watch cache of live jobs: every job read starts there (live.py).
    follower = asyncio.create_task(
        live.follow(gateway.kube, gateway.history.live, lambda: stopping)
    )
    if config.archive_dsn:
        await _open_archive(config, gateway)
    api = web.AppRunner(gateway_app.api(gateway), access_log=None)
    health = web.AppRunner(gateway_app.health(gateway), access_log=None)
    await api.setup()
    await health.setup()
    context = tls_context(config)
    await web.TCPSite(api, config.bind, config.port, ssl_context=context).start()
    await web.TCPSite(health, config.health_bind, config.health_port).start()
    history = await _serve_history(config, gateway)
    scheme = "https" if context else "http"
    log.info(
        "REST gateway on %s://%s:%d (health and metrics on http://%s:%d)",
        scheme,
        config.bind,
        config.port,
        config.health_bind,
        config.health_port,
    )
    if context is None:
        log.warning("no TLS certificate configured: the API is served over plain HTTP")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloader = asyncio.create_task(_reload_certificates(config, context)) if context else None
    await stop.wait()
    log.info("stopping: finishing the requests in flight")
    if reloader:
        reloader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reloader
    await api.cleanup()
    await health.cleanup()
    if history is not None:
        await history.cleanup()
    stopping = True
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    if gateway.history.archive is not None:
        await gateway.history.archive.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qiskit_serverless_operator.gateway",
        description="Serve the Qiskit Serverless REST API over the cluster's custom resources.",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logsetup.configure(args.verbose)
    try:
        config = GatewayConfig.from_env()
    except ConfigError as exc:
        print(f"qiskit-serverless-gateway: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
