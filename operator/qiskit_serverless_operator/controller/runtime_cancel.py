"""Stopping a job also cancels what its program started on IBM Quantum.

The program reports the Qiskit Runtime jobs (and sessions) it creates (``status.runtimeJobs``,
through the job endpoint); when the job is stopped or deleted while it runs, the operator
cancels each of them with the job's own credentials (its credentials Secret), before the pod
goes, over the same HTTP calls qiskit-ibm-runtime 0.50 makes:

- an IAM token for the API key: ``POST {iam}/identity/token`` (form ``grant_type=
  urn:ibm:params:oauth:grant-type:apikey``, ``apikey``); if that fails, ``apikey <key>`` as the
  library falls back to;
- a session: ``DELETE {base}/sessions/{id}/close`` (Session.cancel(): its queued jobs do not
  run); a job: ``POST {base}/jobs/{id}/cancel`` (409: it had already finished);
- headers ``Authorization``, ``Service-CRN: <instance>``, ``IBM-API-Version``.

``base`` is the Secret's ``url`` if it has one, else the instance CRN's regional endpoint
(``https://quantum.cloud.ibm.com/api/v1``, ``https://eu-de.quantum.cloud.ibm.com/api/v1``);
``iam`` the Secret's ``iam_url``, else ``https://iam.cloud.ibm.com``. Each outcome is kept in
the job's status next to the job it concerns; a service that does not answer in 10 s does not
hold the stop up.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import aiohttp

from ..kube import ApiError, Secret
from .context import Context

log = logging.getLogger(__name__)

API_VERSION_HEADER = {"IBM-API-Version": "2026-04-15"}
IAM_URL = "https://iam.cloud.ibm.com"
TIMEOUT = aiohttp.ClientTimeout(total=10)


def api_base(instance: str | None, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    parts = (instance or "").split(":")
    region = parts[5] if len(parts) > 5 and parts[0] == "crn" else ""
    host = (
        "quantum.cloud.ibm.com" if region in ("", "us-east") else f"{region}.quantum.cloud.ibm.com"
    )
    return f"https://{host}/api/v1"


async def _credentials(ctx: Context, sj: dict[str, Any]) -> dict[str, str] | None:
    ref = ((sj["spec"].get("credentials") or {}).get("secretRef") or {}).get("name")
    if not ref:
        return None
    try:
        secret = await ctx.kube.get(Secret, ref, sj["metadata"]["namespace"])
    except ApiError:
        return None
    data = (secret or {}).get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


async def _authorization(http: aiohttp.ClientSession, creds: dict[str, str]) -> str:
    key = creds["token"]
    try:
        async with http.post(
            f"{creds.get('iam_url', IAM_URL).rstrip('/')}/identity/token",
            data={
                "grant_type": "urn:ibm:params:oauth:grant-type:apikey",
                "apikey": key,
                "response_type": "cloud_iam",
            },
            headers={"Accept": "application/json"},
        ) as answer:
            if answer.status == 200:
                return f"Bearer {(await answer.json())['access_token']}"
            log.warning("IAM refused the job's API key (HTTP %d)", answer.status)
    except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
        log.warning("no IAM token for the job's API key: %s", exc)
    return f"apikey {key}"


async def _call(http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str]) -> str:
    try:
        async with http.request(method, url, headers=headers) as answer:
            if answer.status < 300:
                return "canceled"
            if answer.status == 409:
                return "already finished"
            if answer.status == 404:
                return "not found"
            return f"not canceled: HTTP {answer.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"not canceled: {exc or type(exc).__name__}"


async def cancel(ctx: Context, sj: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, str]:
    """Cancel the job's Qiskit Runtime jobs and sessions: (runtimeJobs with each outcome, a
    sentence for the job's message); (None, "") when it started none or was done already."""
    recorded = list((sj.get("status") or {}).get("runtimeJobs") or [])
    pending = [r for r in recorded if "cancel" not in r]
    if not pending:
        return None, ""
    creds = await _credentials(ctx, sj)
    if not creds or not creds.get("token"):
        outcome = "not canceled: the job has no IBM Quantum credentials"
        for r in pending:
            r["cancel"] = outcome
        return (
            recorded,
            f"its {len(pending)} Qiskit Runtime job(s) were not canceled (no credentials)",
        )
    base = api_base(creds.get("instance"), creds.get("url"))
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        headers = {
            **API_VERSION_HEADER,
            "Authorization": await _authorization(http, creds),
            **({"Service-CRN": creds["instance"]} if creds.get("instance") else {}),
        }
        sessions: dict[str, str] = {}
        for session in sorted({r["session"] for r in pending if r.get("session")}):
            sessions[session] = await _call(
                http, "DELETE", f"{base}/sessions/{session}/close", headers
            )
        for r in pending:
            outcome = await _call(http, "POST", f"{base}/jobs/{r['job']}/cancel", headers)
            if r.get("session"):
                outcome += f"; session {sessions[r['session']]}"
            r["cancel"] = outcome
    done = sum(r["cancel"].startswith(("canceled", "already finished")) for r in pending)
    log.info(
        "job %s/%s: %d of %d Qiskit Runtime jobs canceled or finished",
        sj["metadata"]["namespace"],
        sj["metadata"]["name"],
        done,
        len(pending),
    )
    summary = ", ".join(f"{r['job']} {r['cancel']}" for r in pending)
    return recorded, f"Qiskit Runtime: {summary}"
