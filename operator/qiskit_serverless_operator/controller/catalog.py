"""Which function a job runs: its own namespace's (by title), or, for a job naming
``spec.provider``, that provider's catalog: the QiskitFunctions of the namespace named after
the provider whose ``spec.provider`` says so (who may run them is RBAC's: access.py)."""

from __future__ import annotations

from typing import Any

from ..kube import QiskitFunction
from . import jobspec
from .context import Context


async def find_function(ctx: Context, sj: dict[str, Any]) -> dict[str, Any] | None:
    """The function a job names: by title in its own namespace, or, for ``spec.provider``,
    in the provider's catalog (the namespace named after the provider)."""
    title, provider = sj["spec"]["function"], sj["spec"].get("provider")
    where = jobspec.placement(sj)
    # crds/: spec.title is a selectable field, so only the functions of that title travel;
    # from the API server's cache: a function changed in the same milliseconds as the job's
    # read is a race either way, and the job's reconcile runs again on the function's news.
    for qf in await ctx.kube.list_cached(
        QiskitFunction, where.namespace, fields={"spec.title": title}
    ):
        spec = qf["spec"]
        if spec.get("title") == title and (not where.remote or spec.get("provider") == provider):
            return qf
    return None
