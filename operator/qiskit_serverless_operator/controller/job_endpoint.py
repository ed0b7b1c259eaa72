"""The operator's job endpoint: what a running program calls back (``ENV_JOB_GATEWAY_HOST``).

Not the REST gateway users talk to (``qiskit_serverless_operator.gateway``): this one is
served by every operator replica, answers job pods only, and authenticates them with the
per-job token below.

``qiskit_serverless.update_status()`` sends
``PATCH /api/{version}/jobs/{job uid}/sub_status/`` with form field ``sub_status`` and
``Authorization: Bearer <token>``. The token
is per job: ``<namespace>.<job name>.<random>``, kept in the job's runtime Secret, so the
operator finds the job without an index and a pod can update only its own job.
"""

from __future__ import annotations

import base64
import hmac
import logging

from aiohttp import web

from .. import constants as c
from ..kube import ApiError, Secret, ServerlessJob
from . import jobspec
from .context import get_context

log = logging.getLogger(__name__)

# The values qiskit_serverless's Job class defines for update_status().
SUB_STATUSES = ("MAPPING", "OPTIMIZING_HARDWARE", "WAITING_QPU", "EXECUTING_QPU", "POST_PROCESSING")


def make_token(namespace: str, name: str, secret: str) -> str:
    return f"{namespace}.{name}.{secret}"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


async def sub_status(request: web.Request) -> web.Response:
    ctx = get_context()
    auth = request.headers.get("Authorization", "")
    token = auth.removeprefix("Bearer ").strip()
    parts = token.split(".", 2)
    if not auth.startswith("Bearer ") or len(parts) != 3:
        return _error(401, "missing or malformed bearer token")
    namespace, name, _ = parts
    form = await request.post()
    value = str(form.get("sub_status", "")).strip()
    if value not in SUB_STATUSES:
        return _error(400, f"sub_status must be one of {', '.join(SUB_STATUSES)}; got {value!r}")
    try:
        secret = await ctx.kube.get(Secret, jobspec.runtime_secret_name(name), namespace)
        sj = await ctx.kube.get(ServerlessJob, name, namespace)
    except ApiError as exc:
        return _error(502, f"cannot read the job: {exc.status.message}")
    expected = ""
    if secret is not None:
        expected = base64.b64decode((secret.get("data") or {}).get("gateway-token", "")).decode()
    if sj is None or not expected or not hmac.compare_digest(expected, token):
        return _error(403, "token does not match this job")
    if sj["metadata"]["uid"] != request.match_info["job_id"]:
        return _error(403, "token does not match this job")
    phase = (sj.get("status") or {}).get("phase")
    if phase in {p.value for p in c.TERMINAL_JOB_PHASES}:
        return _error(409, f"the job is already {phase}")
    try:
        await ctx.kube.patch_status(ServerlessJob, name, namespace, {"subStatus": value})
    except ApiError as exc:
        return _error(502, f"cannot update the job: {exc.status.message}")
    log.info("job %s/%s sub-status %s", namespace, name, value)
    return web.json_response({"message": "Sub status updated correctly", "sub_status": value})


async def start(bind: str, port: int) -> web.AppRunner:
    app = web.Application()
    app.router.add_patch("/api/{version}/jobs/{job_id}/sub_status/", sub_status)
    app.router.add_get("/healthz", lambda _: web.json_response({"status": "ok"}))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, bind, port).start()
    log.info("job endpoint listening on %s:%d", bind, port)
    return runner
