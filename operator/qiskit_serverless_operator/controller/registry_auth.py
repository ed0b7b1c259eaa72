"""Registry credentials: build pods push function images with a Secret, job pods pull them
with an image pull Secret.

The site keeps two kubernetes.io/dockerconfigjson Secrets where the operator runs
(``QSO_REGISTRY_PUSH_SECRET``, ``QSO_REGISTRY_PULL_SECRET``: ``name`` in the operator's
namespace, or ``namespace/name``). A pod can only use a Secret of its own namespace, so:

- the push Secret is copied for each build, owned by the build Job (it goes with the Job), and
  mounted as the builder's docker config (crane reads it);
- the pull Secret is copied once into each namespace that runs jobs or builds
  (``qso-registry-pull``) and named in their pods' ``imagePullSecrets``; a changed source is
  copied again.

Use a push credential limited to the functions' repository path (``<registry>/qso-functions/``),
as a registry's robot accounts allow: it is readable in the function's namespace while its
build runs.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import kopf

from .. import constants as c
from ..kube import Secret
from .context import Context

PULL_SECRET = "qso-registry-pull"
DOCKER_CONFIG_KEY = ".dockerconfigjson"
DOCKER_CONFIG_DIR = "/etc/qso/registry"
# A source Secret is read again after this long (a rotated credential reaches new pods).
SOURCE_SECONDS = 60.0


def source(ref: str) -> tuple[str, str]:
    """``namespace/name``, or ``name`` in the operator's own namespace (POD_NAMESPACE)."""
    namespace, _, name = ref.rpartition("/")
    return namespace or os.environ.get("POD_NAMESPACE") or "qiskit-serverless", name


def push_secret_name(build_job: str) -> str:
    return f"{build_job}-push"[:253]


async def _source_data(ctx: Context, ref: str) -> dict[str, str]:
    cached = ctx.registry_sources.get(ref)
    if cached is not None and time.monotonic() - cached[0] < SOURCE_SECONDS:
        return cached[1]
    namespace, name = source(ref)
    found = await ctx.kube.get(Secret, name, namespace)
    if found is None or DOCKER_CONFIG_KEY not in (found.get("data") or {}):
        # Retried: the site can still create it; the message shows in the object's Events.
        raise kopf.TemporaryError(
            f"the registry Secret {namespace}/{name} (QSO_REGISTRY_*_SECRET) is missing or "
            f"has no {DOCKER_CONFIG_KEY}",
            delay=30,
        )
    data = {DOCKER_CONFIG_KEY: found["data"][DOCKER_CONFIG_KEY]}
    ctx.registry_sources[ref] = (time.monotonic(), data)
    return data


def _secret(namespace: str, name: str, data: dict[str, str], owner: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {c.LABEL_MANAGED_BY: c.MANAGER, c.LABEL_COMPONENT: "registry-credentials"},
    }
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": meta,
        "data": data,
    }


async def ensure_pull_secret(ctx: Context, namespace: str) -> str | None:
    """The pull Secret's copy in ``namespace`` (made or refreshed when needed); its name, or
    None when no pull Secret is configured."""
    ref = ctx.config.registry_pull_secret
    if not ref:
        return None
    data = await _source_data(ctx, ref)
    digest = hashlib.sha256(data[DOCKER_CONFIG_KEY].encode()).hexdigest()
    copied = ctx.registry_copies.get(namespace)
    # Applied again when the source changed, and now and then in case the copy was deleted.
    if copied is None or copied[0] != digest or time.monotonic() - copied[1] > SOURCE_SECONDS:
        await ctx.kube.apply(_secret(namespace, PULL_SECRET, data))
        ctx.registry_copies[namespace] = (digest, time.monotonic())
    return PULL_SECRET


async def push_secret(ctx: Context, namespace: str, build_job: dict[str, Any]) -> str | None:
    """The push Secret's copy for one build, owned by its (created) build Job."""
    ref = ctx.config.registry_push_secret
    if not ref:
        return None
    data = await _source_data(ctx, ref)
    meta = build_job["metadata"]
    owner = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }
    name = push_secret_name(meta["name"])
    await ctx.kube.create_or_get(_secret(namespace, name, data, owner))
    return name


def push_mount(name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The builder's docker config from the push Secret: volume, mount, env."""
    volume = {
        "name": "registry-auth",
        "secret": {
            "secretName": name,
            "items": [{"key": DOCKER_CONFIG_KEY, "path": "config.json"}],
        },
    }
    mount = {"name": "registry-auth", "mountPath": DOCKER_CONFIG_DIR, "readOnly": True}
    return volume, mount, {"name": "DOCKER_CONFIG", "value": DOCKER_CONFIG_DIR}
