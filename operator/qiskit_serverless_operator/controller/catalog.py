"""Which function a job runs: its own namespace's (by title), or, for a job naming
``spec.provider``, that provider's catalog: the QiskitFunctions of the namespace named after
the provider whose ``spec.provider`` says so (who may run them is RBAC's: access.py).

Functions are few and every job reads one, twice (when it is queued and when it starts):
the operator keeps each function as its last event, or its own last status write, showed
it (``remember``), its source files' contents left out (a job needs their names only).
A function not seen yet, or not for CACHE_SECONDS, is asked of the API server's cache: a
deletion whose event never came (a replica paused by peering, a watch restarting) is
believed for at most that long.
"""

from __future__ import annotations

import time
from typing import Any

from ..kube import QiskitFunction
from . import jobspec
from .context import Context

CACHE_SECONDS = 30.0

# namespace -> object name -> (the function, its files' contents left out; when seen)
_seen: dict[str, dict[str, tuple[dict[str, Any], float]]] = {}


def _lean(body: dict[str, Any]) -> dict[str, Any]:
    spec = dict(body.get("spec") or {})
    source = spec.get("source")
    if isinstance(source, dict) and isinstance(source.get("files"), dict):
        spec["source"] = {**source, "files": dict.fromkeys(source["files"], "")}
    return {**body, "spec": spec}


def remember(body: dict[str, Any]) -> None:
    """A function as an event (or the operator's own write) just showed it."""
    meta = body["metadata"]
    _seen.setdefault(meta["namespace"], {})[meta["name"]] = (_lean(body), time.monotonic())


def forget(namespace: str, name: str) -> None:
    """A function deleted."""
    _seen.get(namespace, {}).pop(name, None)


def _matches(qf: dict[str, Any], title: str, provider: str | None, remote: bool) -> bool:
    spec = qf["spec"]
    return spec.get("title") == title and (not remote or spec.get("provider") == provider)


async def find_function(ctx: Context, sj: dict[str, Any]) -> dict[str, Any] | None:
    """The function a job names: by title in its own namespace, or, for ``spec.provider``,
    in the provider's catalog (the namespace named after the provider)."""
    title, provider = sj["spec"]["function"], sj["spec"].get("provider")
    where = jobspec.placement(sj)
    seen = _seen.get(where.namespace, {})
    fresh_after = time.monotonic() - CACHE_SECONDS
    for qf, at in seen.values():
        if at >= fresh_after and _matches(qf, title, provider, where.remote):
            return qf
    for name in [n for n, (qf, _) in seen.items() if _matches(qf, title, provider, where.remote)]:
        del seen[name]  # asked again below: what the API server has replaces it
    # crds/: spec.title is a selectable field, so only the functions of that title travel;
    # from the API server's cache: a function changed in the same milliseconds as the job's
    # read is a race either way, and the job's reconcile runs again on the function's news.
    for qf in await ctx.kube.list_cached(
        QiskitFunction, where.namespace, fields={"spec.title": title}
    ):
        if _matches(qf, title, provider, where.remote):
            remember(qf)
            return _seen[where.namespace][qf["metadata"]["name"]][0]
    return None
