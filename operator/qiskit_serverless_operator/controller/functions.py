"""QiskitFunction reconciliation: decide which image its jobs run and mark it Ready.

- ``spec.image``: a prebuilt image; Ready at once (pull problems surface on the job).
- ``spec.source.files`` without dependencies: the files go into a ConfigMap owned by the
  function, mounted into job pods on top of the runtime base image; Ready.
- Dependencies or an archive: an image built in the cluster (build Job per content hash,
  buildspec.py), then Ready with the pushed image pinned by digest; no registry configured:
  Failed, with a message saying so (never Pending forever).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import kopf

from .. import arguments, metrics, storage
from .. import constants as c
from ..constants import FunctionPhase
from ..kube import ApiError, Job, Pod, QiskitFunction, ServerlessJob
from ..source import MAX_INLINE_SOURCE_BYTES
from . import buildspec, catalog, jobspec, registry_auth
from .conditions import conditions
from .context import Context, get_context
from .jobs import reconcile_job

UPLOAD_LINK_SECONDS = 3600


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


def _status(
    phase: FunctionPhase,
    reason: str,
    message: str,
    digest: str,
    *,
    image: str | None = None,
    config_map: str | None = None,
    build_tag: str | None = None,
) -> dict[str, Any]:
    return {
        "phase": phase.value,
        "reason": reason,
        "message": message,
        "image": image,
        "sourceDigest": digest,
        "sourceConfigMap": config_map,
        "buildTag": build_tag,
    }


def desired_status(
    body: dict[str, Any], runtime_image: str, builds: bool = False
) -> dict[str, Any]:
    """Pure: the status the spec calls for. ``reason == "NeedsBuild"`` asks for an image build
    (done by ``reconcile_function``), only when ``builds`` (a registry and builder) are set."""
    spec = body["spec"]
    name = body["metadata"]["name"]
    digest = source_digest(spec)
    schema = arguments.schema_of(spec)
    if schema is not None:
        try:
            arguments.check_schema(schema)
        except arguments.SchemaError as exc:
            return _status(
                FunctionPhase.FAILED,
                "InvalidArgumentsSchema",
                f"spec.argumentsSchema is not a usable JSON Schema: {exc}",
                digest,
            )
    if spec.get("image"):
        return _status(
            FunctionPhase.PENDING,
            "NeedsCheck",
            "checking that the image can be pulled and holds the runtime wrapper",
            digest,
            image=spec["image"],
        )
    source = spec.get("source") or {}
    if source.get("archive"):
        if not builds:
            return _status(
                FunctionPhase.FAILED,
                "BuildUnavailable",
                "a source archive needs an image build, and this operator has no "
                "registry and builder configured (QSO_REGISTRY, QSO_BUILDER_IMAGE)",
                digest,
            )
        return _status(FunctionPhase.BUILDING, "NeedsBuild", "an image build is needed", digest)
    files = source.get("files") or {}
    size = sum(len(k.encode()) + len(v.encode()) for k, v in files.items())
    if size > MAX_INLINE_SOURCE_BYTES:
        return _status(
            FunctionPhase.FAILED,
            "SourceTooLarge",
            f"inline source is {size} bytes, over the {MAX_INLINE_SOURCE_BYTES} a "
            "ConfigMap can carry; upload it as an archive instead",
            digest,
        )
    if spec["entrypoint"] not in files:
        return _status(
            FunctionPhase.FAILED,
            "EntrypointNotFound",
            f"entrypoint {spec['entrypoint']!r} is not among the source files "
            f"({', '.join(sorted(files)) or 'none'})",
            digest,
        )
    if spec.get("dependencies"):
        if not builds:
            return _status(
                FunctionPhase.FAILED,
                "BuildUnavailable",
                "dependencies need an image build, and this operator has no "
                "registry and builder configured (QSO_REGISTRY, QSO_BUILDER_IMAGE); "
                "use a prebuilt image, or only packages the runtime base image has "
                "(qiskit, qiskit-ibm-runtime, qiskit-serverless)",
                digest,
            )
        return _status(FunctionPhase.BUILDING, "NeedsBuild", "an image build is needed", digest)
    return _status(
        FunctionPhase.READY,
        "RuntimeImage",
        "runs on the runtime base image with its source mounted",
        digest,
        image=runtime_image,
        config_map=jobspec.source_configmap_name(name),
    )


async def reconcile_function(namespace: str, name: str) -> None:
    ctx = get_context()
    async with ctx.lock(f"qf/{namespace}/{name}"):
        body = await ctx.kube.get(QiskitFunction, name, namespace)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        cfg = ctx.config
        status = desired_status(
            body, cfg.runtime_image, builds=bool(cfg.registry and cfg.builder_image)
        )
        if status["reason"] == "NeedsBuild":
            status = await _build(ctx, body, status)
        elif status["reason"] == "NeedsCheck":
            status = await _check_image(ctx, body, status)
        elif status["sourceConfigMap"]:
            await ctx.kube.apply(jobspec.source_configmap(body))
        written = await _write_status(ctx, body, status)
        if written is not None:
            # The jobs woken next read it from here: its event may not have come yet.
            catalog.remember(written)
    await _wake_jobs(ctx, namespace, body["spec"]["title"], body["spec"].get("provider"))


def rebuilding(old: dict[str, Any], digest: str) -> bool:
    """A Ready built function whose source is unchanged: only its base image moved."""
    return bool(
        old.get("phase") == FunctionPhase.READY
        and old.get("reason") in ("Built", "Rebuilding", "RebuildFailed")
        and old.get("image")
        and old.get("sourceDigest") == digest
    )


async def _build(ctx: Context, qf: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """Start, follow or finish the image build for ``qf``; return the status to write."""
    cfg = ctx.config
    meta = qf["metadata"]
    ns = meta["namespace"]
    tag = buildspec.build_tag(cfg.runtime_image, qf["spec"])
    old = qf.get("status") or {}
    if old.get("phase") == FunctionPhase.READY and old.get("buildTag") == tag:
        return {
            **status,
            "phase": FunctionPhase.READY.value,
            "reason": old.get("reason") or "Built",
            "message": old.get("message", "built"),
            "image": old.get("image"),
            "buildTag": tag,
        }
    # Only the runtime image changed (an operator upgrade): the function keeps running on its
    # old image, pinned by digest, while the new one builds; a failed rebuild keeps it.
    rebuild = rebuilding(old, status["sourceDigest"])
    target = buildspec.target_image(cfg, qf, tag)
    job_name = buildspec.build_job_name(meta["name"], tag)
    archive = (qf["spec"].get("source") or {}).get("archive")
    archive_url = None
    if archive:
        key = storage.archive_key(ns, meta["uid"], archive["sha256"])
        waiting = await _archive_in_place(ctx, qf, key, archive["sha256"], status, tag)
        if waiting is not None:
            return waiting
        archive_url = ctx.store.presign_get(key, cfg.build_timeout_seconds + 600)
    building = {
        **status,
        "buildTag": tag,
        "reason": "Building",
        "message": f"building {target} (build Job {job_name})",
    }
    if rebuild:
        building = {
            **status,
            "phase": FunctionPhase.READY.value,
            "reason": "Rebuilding",
            "message": f"runs {old['image']}; building {target} on the new runtime image "
            f"(build Job {job_name})",
            "image": old["image"],
            "buildTag": old.get("buildTag"),
        }
    job = await ctx.kube.get(Job, job_name, ns)
    if job is None:
        if not archive:
            await ctx.kube.apply(jobspec.source_configmap(qf))
        with_ca = False
        if cfg.pip_ca_bundle:
            bundle = await asyncio.to_thread(Path(cfg.pip_ca_bundle).read_text)
            await ctx.kube.apply(buildspec.ca_configmap(ns, bundle))
            with_ca = True
        pull = await registry_auth.ensure_pull_secret(ctx, ns)
        push = registry_auth.push_secret_name(job_name) if cfg.registry_push_secret else None
        made, _ = await ctx.kube.create_or_get(
            buildspec.build_job(
                qf,
                cfg,
                tag,
                with_ca=with_ca,
                archive_url=archive_url,
                push_secret=push,
                pull_secret=pull,
            )
        )
        # Owned by the Job, so it goes with it; its pod waits for it to be mounted.
        await registry_auth.push_secret(ctx, ns, made)
        return building
    done = {
        cond["type"]
        for cond in (job.get("status") or {}).get("conditions") or []
        if cond.get("status") == "True"
    }
    if not done & {"Complete", "Failed"}:
        return building
    pods = await ctx.kube.list(Pod, ns, labels={"batch.kubernetes.io/job-name": job_name})
    status = {**status, "buildLogs": await _keep_build_logs(ctx, qf, tag, pods)}
    report: dict[str, Any] = {}
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((cs.get("state") or {}).get("terminated") or {}).get("message")
            if message:
                try:
                    report = json.loads(message)
                except ValueError:
                    report = {"error": message.strip()}
    if "Complete" in done and report.get("image"):
        await ctx.kube.delete(Job, job_name, ns)
        return {
            **status,
            "phase": FunctionPhase.READY.value,
            "reason": "Built",
            "message": f"built {report['image']}",
            "image": report["image"],
            "buildTag": tag,
        }
    error = report.get("error")
    if not error:
        reasons = [
            cond.get("message") or cond.get("reason")
            for cond in (job.get("status") or {}).get("conditions") or []
            if cond.get("type") == "Failed"
        ]
        error = reasons[0] if reasons else "the build Job failed"
    if rebuild:
        return {
            **status,
            "phase": FunctionPhase.READY.value,
            "reason": "RebuildFailed",
            "message": f"runs {old['image']}; the rebuild on the new runtime image failed: "
            f"{error} (logs: kubectl -n {ns} logs job/{job_name})",
            "image": old["image"],
            "buildTag": tag,
        }
    return {
        **status,
        "phase": FunctionPhase.FAILED.value,
        "reason": "BuildFailed",
        "message": f"build failed: {error} (logs: kubectl -n {ns} logs job/{job_name})",
        "buildTag": tag,
    }


_PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName"}
_START_FAILURES = {"CreateContainerError", "RunContainerError", "CreateContainerConfigError"}


async def _check_image(ctx: Context, qf: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """A prebuilt image is Ready once a pod pulled it and, with the wrapper injected, found
    what a job runs in it (runtime/probe.py)."""
    meta = qf["metadata"]
    ns, image = meta["namespace"], qf["spec"]["image"]
    key = "image-" + hashlib.sha256(image.encode()).hexdigest()[:16]
    old = qf.get("status") or {}
    if old.get("phase") == FunctionPhase.READY and old.get("buildTag") == key:
        return {
            **status,
            "phase": FunctionPhase.READY.value,
            "reason": "PrebuiltImage",
            "message": old.get("message", "runs the prebuilt image"),
            "buildTag": key,
        }
    if old.get("phase") == FunctionPhase.FAILED and old.get("buildTag") == key:
        # Decided for this image already; the check pod being torn down afterwards (its
        # container "could not be located") must not rewrite the reason.
        kept = {k: old[k] for k in ("phase", "reason", "message") if k in old}
        return {**status, **kept, "buildTag": key}
    job_name = jobspec.child_name("qf-check", f"{meta['name']}-{key[6:16]}")
    status = {**status, "buildTag": key}
    job = await ctx.kube.get(Job, job_name, ns)
    if job is None:
        pull = await registry_auth.ensure_pull_secret(ctx, ns)
        await ctx.kube.create_or_get(
            buildspec.check_job(qf, job_name, ctx.config.runtime_image, pull_secret=pull)
        )
        return status
    failed = None
    for pod in await ctx.kube.list(Pod, ns, labels={"batch.kubernetes.io/job-name": job_name}):
        if pod["metadata"].get("deletionTimestamp"):
            continue  # going away: its final state says nothing about the image
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _PULL_FAILURES:
                failed = (
                    f"image {image} cannot be pulled: {waiting.get('message') or waiting['reason']}"
                )
            elif waiting.get("reason") in _START_FAILURES:
                failed = (
                    f"image {image} cannot run a job: it has no python3 "
                    f"({waiting.get('message') or waiting['reason']}); give it Python and "
                    "qiskit-serverless, or build it FROM the runtime base image"
                )
            terminated = (cs.get("state") or {}).get("terminated") or {}
            if terminated.get("exitCode"):
                detail = (terminated.get("message") or terminated.get("reason") or "").strip()
                failed = (
                    f"image {image} cannot run a job"
                    f"{': ' + detail[-300:] if detail else ''}; give it the entrypoint (or "
                    "/runner/runner.py), or build it FROM the runtime base image"
                )
    done = {
        cond["type"]
        for cond in (job.get("status") or {}).get("conditions") or []
        if cond.get("status") == "True"
    }
    if failed is None and "Failed" in done:
        failed = (
            f"image {image} cannot run a job (its check failed); give it Python, "
            "qiskit-serverless and the entrypoint (or /runner/runner.py), or build it FROM "
            "the runtime base image"
        )
    if failed:
        await ctx.kube.delete(Job, job_name, ns)
        return {
            **status,
            "phase": FunctionPhase.FAILED.value,
            "reason": "ImageCheckFailed",
            "message": failed,
        }
    if "Complete" in done:
        await ctx.kube.delete(Job, job_name, ns)
        return {
            **status,
            "phase": FunctionPhase.READY.value,
            "reason": "PrebuiltImage",
            "message": f"runs the prebuilt image {image}",
        }
    return status


async def _archive_in_place(
    ctx: Context, qf: dict[str, Any], key: str, sha256: str, status: dict[str, Any], tag: str
) -> dict[str, Any] | None:
    """None once the archive with the declared sha256 is stored; until then a status that
    says so, with an upload link for the function's owner in ``qf-upload-<name>``."""
    meta = qf["metadata"]
    stored = await asyncio.to_thread(ctx.store.sha256, key)
    if stored == sha256:
        return None
    if stored is not None:
        return {
            **status,
            "phase": FunctionPhase.FAILED.value,
            "reason": "ArchiveMismatch",
            "message": f"the uploaded archive's sha256 is {stored}, not the declared "
            f"{sha256}; upload again",
            "buildTag": tag,
        }
    await ctx.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": jobspec.child_name("qf-upload", meta["name"]),
                "namespace": meta["namespace"],
                "labels": {c.LABEL_MANAGED_BY: c.MANAGER},
                "ownerReferences": [jobspec.owner_reference(qf)],
            },
            "stringData": {
                "sha256": sha256,
                "upload-url": ctx.store.presign_put(key, UPLOAD_LINK_SECONDS),
            },
        }
    )
    return {
        **status,
        "phase": FunctionPhase.PENDING.value,
        "reason": "AwaitingUpload",
        "message": f"waiting for the source archive (sha256 {sha256[:12]}...) to be "
        f"uploaded through the link in Secret qf-upload-{meta['name']}",
        "buildTag": tag,
    }


async def _keep_build_logs(
    ctx: Context, qf: dict[str, Any], tag: str, pods: list[dict[str, Any]]
) -> dict[str, Any]:
    """Store the build pod's log in object storage (before the Job goes) and hand the
    function's owner a read link in the ``qf-out-<name>`` Secret."""
    meta = qf["metadata"]
    key = storage.build_logs_key(meta["namespace"], meta["uid"], tag)
    text = ""
    for pod in pods:
        text += await ctx.kube.pod_log_tail(
            pod["metadata"]["name"], meta["namespace"], 100_000, container="build"
        )
    await ctx.store.aput(key, text.encode()[-ctx.config.max_log_bytes :])
    await ctx.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": jobspec.child_name("qf-out", meta["name"]),
                "namespace": meta["namespace"],
                "labels": {c.LABEL_MANAGED_BY: c.MANAGER},
                "ownerReferences": [jobspec.owner_reference(qf)],
            },
            "stringData": {"build-logs-url": ctx.store.presign_get(key, storage.MAX_URL_SECONDS)},
        }
    )
    return {"bucket": ctx.store.bucket, "key": key, "size": len(text.encode())}


async def _write_status(
    ctx: Context, body: dict[str, Any], status: dict[str, Any]
) -> dict[str, Any] | None:
    """Write the function's status; the function as written (None if it is gone)."""
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
        written = await ctx.kube.patch_status(QiskitFunction, meta["name"], meta["namespace"], new)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise
    if old.get("phase") == FunctionPhase.BUILDING and new["phase"] in (
        FunctionPhase.READY,
        FunctionPhase.FAILED,
    ):
        metrics.BUILDS.labels(
            "succeeded" if new["phase"] == FunctionPhase.READY else "failed"
        ).inc()
    if old.get("phase") != new["phase"] or old.get("sourceDigest") != new["sourceDigest"]:
        kopf.event(
            body,
            type="Warning" if new["phase"] == "Failed" else "Normal",
            reason=new["phase"],
            message=new["message"],
        )
    return written


async def _wake_jobs(ctx: Context, namespace: str, title: str, provider: str | None) -> None:
    """Jobs waiting for this function (or not looked at yet) get another look. A page of
    jobs at a time and only names are kept: a namespace can hold 10,000 queued jobs, and
    those waiting for admission are the queue's, not this function's."""
    waiting: list[tuple[str, str]] = []
    # A provider's catalog function (in the namespace named after it) is run from others too.
    catalog = provider == namespace
    async for sj in ctx.kube.each(ServerlessJob, "*" if catalog else namespace):
        status = sj.get("status") or {}
        mine = sj["metadata"]["namespace"] == namespace or sj["spec"].get("provider") == provider
        if (
            mine
            and sj["spec"].get("function") == title
            and (
                not status.get("phase")
                or (
                    status["phase"] == c.JobPhase.QUEUED
                    and status.get("reason")
                    in (c.QueueReason.FUNCTION_NOT_READY, c.QueueReason.FUNCTION_NOT_FOUND)
                )
            )
        ):
            waiting.append((sj["metadata"]["namespace"], sj["metadata"]["name"]))
    for job_namespace, name in waiting:
        await reconcile_job(job_namespace, name)
