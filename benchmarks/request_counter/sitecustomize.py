"""Loaded by the operator's Python when benchmarks/api_requests.py puts this folder first on
its PYTHONPATH: counts every request the operator makes (lightkube's httpx2 for the
reconciles, aiohttp for kopf), by verb and path shape, into $QSO_COUNT_OUT every 2 s;
the answers that were not a success once more, under ``... -> CODE`` (a 409 is a request
made for nothing).
For the benchmark only; nothing of the operator's own imports it."""

from __future__ import annotations

import collections
import json
import os
import re
import threading
import time
from typing import Any

COUNTS: collections.Counter[str] = collections.Counter()
OUT = os.environ.get("QSO_COUNT_OUT", "requests.json")
KINDS = {"pods", "jobs", "secrets", "events", "serverlessjobs", "serverlessqueues",
         "qiskitfunctions", "nodes", "leases", "clusterkopfpeerings", "configmaps"}  # fmt: skip


def shape(method: str, url: str) -> str:
    """``PATCH serverlessjobs/NAME/status``: names and namespaces out, the rest kept."""
    path, _, query = url.partition("?")
    path = re.sub(r"^https?://[^/]+", "", path)
    path = re.sub(r"/namespaces/[^/]+", "", path)
    parts, out, name_next = path.strip("/").split("/"), [], False
    for part in parts:
        out.append("NAME" if name_next else part)
        name_next = not name_next and part in KINDS
    verb = method.upper()
    if "watch=true" in query or "watch=1" in query:
        verb = "WATCH"
    elif verb == "GET" and out[-1] in KINDS:
        verb = "LIST"
    kept = [p for p in out if p not in ("api", "apis", "v1", "v1alpha1")]
    return f"{verb} {'/'.join(kept[-3:])}"


def _status_fields(request: Any) -> str:
    try:
        status = json.loads(request.content)["status"]
    except (ValueError, KeyError, TypeError):
        return ""
    skip = {"conditions", "duration", "observedGeneration", "jobId"}
    return " {" + ",".join(sorted(k for k in status if k not in skip)) + "}"


def _install() -> None:
    try:
        import httpx2

        send = httpx2.AsyncClient.send

        async def counted(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            key = shape(request.method, str(request.url))
            if key.startswith("PATCH serverlessjobs/NAME/status"):
                key += _status_fields(request)
            COUNTS[key] += 1
            response = await send(self, request, *args, **kwargs)
            if response.status_code >= 300:
                COUNTS[f"{key} -> {response.status_code}"] += 1
            return response

        httpx2.AsyncClient.send = counted  # type: ignore[method-assign]
    except ImportError:
        pass
    try:
        import aiohttp

        request = aiohttp.ClientSession._request

        async def kopf_counted(self: Any, method: str, url: Any, *args: Any, **kw: Any) -> Any:
            params = kw.get("params") or {}
            watching = isinstance(params, dict) and params.get("watch")
            key = "kopf " + shape(method, str(url) + ("?watch=true" if watching else ""))
            COUNTS[key] += 1
            response = await request(self, method, url, *args, **kw)
            if response.status >= 300:
                COUNTS[f"{key} -> {response.status}"] += 1
            return response

        aiohttp.ClientSession._request = kopf_counted  # type: ignore[method-assign]
    except ImportError:
        pass


def _dump() -> None:
    while True:
        time.sleep(2)
        try:
            with open(OUT + ".tmp", "w") as f:
                json.dump(COUNTS, f)
            os.replace(OUT + ".tmp", OUT)
        except OSError:
            pass


_install()
threading.Thread(target=_dump, daemon=True).start()
