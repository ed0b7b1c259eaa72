"""QiskitFunction reconciliation: decide which image its jobs run and mark it Ready.

- ``spec.image``: a prebuilt image; Ready at once (pull problems surface on the job).
- ``spec.source.files`` without dependencies: the files go into a ConfigMap owned by the
  function, mounted into job pods on top of the runtime base image; Ready.
- Dependencies or an archive need an image build, which this version does not do yet:
  Failed, with a message saying so (never Pending forever).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import kopf

from .. import constants as c
from ..constants import FunctionPhase
from ..kube import ApiError, QiskitFunction, ServerlessJob
from . import jobspec
from .conditions import conditions
from .context import Context, get_context
from .jobs import reconcile_job

# A ConfigMap holds at most 1 MiB; leave room for keys and metadata.
MAX_INLINE_SOURCE_BYTES = 900 * 1024


def source_digest(spec: dict[str, Any]) -> str:
    material = {
        "entrypoint": spec.get("entrypoint"),
        "source": spec.get("source"),
        "image": spec.get("image"),
        "dependencies": spec.get("dependencies") or [],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _conditions(
    phase: FunctionPhase, reason: str, message: str, generation: int, previous: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    wanted = {
        "Ready": phase == FunctionPhase.READY,
        "Reconciling": phase in (FunctionPhase.PENDING, FunctionPhase.BUILDING),
        "Stalled": phase == FunctionPhase.FAILED,
    }
    return conditions(
        wanted, reason=reason, message=message, generation=generation, previous=previous
    )


def desired_status(body: dict[str, Any], runtime_image: str) -> dict[str, Any]:
    """Pure: the status the spec calls for (ConfigMap creation happens separately)."""
    spec = body["spec"]
    name = body["metadata"]["name"]
    digest = source_digest(spec)
    if spec.get("image"):
        return {
            "phase": FunctionPhase.READY.value,
            "reason": "PrebuiltImage",
            "message": "runs the prebuilt image",
            "image": spec["image"],
            "sourceDigest": digest,
            "sourceConfigMap": None,
        }
    source = spec.get("source") or {}
    if spec.get("dependencies"):
        return {
            "phase": FunctionPhase.FAILED.value,
            "reason": "BuildUnavailable",
            "message": "dependencies need an image build, which this operator version "
            "does not do yet; use a prebuilt image, or only packages the "
            "runtime base image has (qiskit, qiskit-ibm-runtime, "
            "qiskit-serverless)",
            "image": None,
            "sourceDigest": digest,
            "sourceConfigMap": None,
        }
    if source.get("archive"):
        return {
            "phase": FunctionPhase.FAILED.value,
            "reason": "BuildUnavailable",
            "message": "source archives need an image build, which this operator version "
            "does not do yet; give source.files or a prebuilt image",
            "image": None,
            "sourceDigest": digest,
            "sourceConfigMap": None,
        }
    files = source.get("files") or {}
    size = sum(len(k.encode()) + len(v.encode()) for k, v in files.items())
    if size > MAX_INLINE_SOURCE_BYTES:
        return {
            "phase": FunctionPhase.FAILED.value,
            "reason": "SourceTooLarge",
            "message": f"inline source is {size} bytes, over the {MAX_INLINE_SOURCE_BYTES} "
            "a ConfigMap can carry; upload it as an archive instead",
            "image": None,
            "sourceDigest": digest,
            "sourceConfigMap": None,
        }
    if spec["entrypoint"] not in files:
        return {
            "phase": FunctionPhase.FAILED.value,
            "reason": "EntrypointNotFound",
            "message": f"entrypoint {spec['entrypoint']!r} is not among the source files "
            f"({', '.join(sorted(files)) or 'none'})",
            "image": None,
            "sourceDigest": digest,
            "sourceConfigMap": None,
        }
    return {
        "phase": FunctionPhase.READY.value,
        "reason": "RuntimeImage",
        "message": "runs on the runtime base image with its source mounted",
        "image": runtime_image,
        "sourceDigest": digest,
        "sourceConfigMap": jobspec.source_configmap_name(name),
    }


async def reconcile_function(body: dict[str, Any]) -> None:
    ctx = get_context()
    meta = body["metadata"]
    status = desired_status(body, ctx.config.runtime_image)
    if status["sourceConfigMap"]:
        await ctx.kube.apply(jobspec.source_configmap(body))
    await _write_status(ctx, body, status)
    await _wake_jobs(ctx, meta["namespace"], body["spec"]["title"])


async def _write_status(ctx: Context, body: dict[str, Any], status: dict[str, Any]) -> None:
    meta = body["metadata"]
    old = body.get("status") or {}
    generation = meta.get("generation", 1)
    new = {**status, "observedGeneration": generation}
    new["conditions"] = _conditions(
        FunctionPhase(new["phase"]),
        new["reason"],
        new["message"],
        generation,
        old.get("conditions") or [],
    )
    try:
        await ctx.kube.patch_status(QiskitFunction, meta["name"], meta["namespace"], new)
    except ApiError as exc:
        if exc.status.code == 404:
            return
        raise
    if old.get("phase") != new["phase"] or old.get("sourceDigest") != new["sourceDigest"]:
        kopf.event(
            body,
            type="Warning" if new["phase"] == "Failed" else "Normal",
            reason=new["phase"],
            message=new["message"],
        )


async def _wake_jobs(ctx: Context, namespace: str, title: str) -> None:
    """Jobs waiting for this function (or for it to exist) get another look."""
    for sj in await ctx.kube.list(ServerlessJob, namespace):
        phase = (sj.get("status") or {}).get("phase")
        if sj["spec"].get("function") == title and phase in (None, c.JobPhase.QUEUED.value):
            await reconcile_job(namespace, sj["metadata"]["name"])
