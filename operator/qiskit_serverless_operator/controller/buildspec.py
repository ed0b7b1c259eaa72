"""The build Job that turns a QiskitFunction into an image (pure functions, no API calls)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .. import constants as c
from ..config import OperatorConfig
from . import registry_auth
from .jobspec import (
    child_name,
    owner_reference,
    restricted_container_security,
    restricted_pod_security,
    source_configmap_name,
    source_items,
    wrapper_injection,
)

CA_CONFIGMAP = "qso-build-ca"


def base_identity(base_image: str) -> str:
    """What names the base image's content: its digest when the reference pins one (a new
    operator release whose runtime image is byte for byte the same rebuilds nothing, whatever
    its repository or tag), else the reference itself."""
    _, at, digest = base_image.partition("@")
    return digest if at else base_image


def build_tag(base_image: str, spec: dict[str, Any]) -> str:
    """Content hash of what goes into the image: the same inputs never build twice."""
    material = {
        "base": base_identity(base_image),
        "dependencies": sorted(spec.get("dependencies") or []),
        "entrypoint": spec.get("entrypoint"),
        "files": (spec.get("source") or {}).get("files") or {},
        "archive": ((spec.get("source") or {}).get("archive") or {}).get("sha256"),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:20]


def target_image(cfg: OperatorConfig, qf: dict[str, Any], tag: str) -> str:
    meta = qf["metadata"]
    return f"{cfg.registry}/qso-functions/{meta['namespace']}/{meta['name']}:{tag}"


def build_job_name(qf_name: str, tag: str) -> str:
    return child_name("qf-build", f"{qf_name}-{tag[:10]}")


def ca_configmap(namespace: str, bundle: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CA_CONFIGMAP,
            "namespace": namespace,
            "labels": {c.LABEL_MANAGED_BY: c.MANAGER},
        },
        "data": {"ca.crt": bundle},
    }


def build_job(
    qf: dict[str, Any],
    cfg: OperatorConfig,
    tag: str,
    *,
    with_ca: bool,
    archive_url: str | None = None,
    push_secret: str | None = None,
    pull_secret: str | None = None,
) -> dict[str, Any]:
    meta = qf["metadata"]
    env = [
        {"name": "QSO_BASE_IMAGE", "value": cfg.runtime_image},
        {"name": "QSO_TARGET_IMAGE", "value": target_image(cfg, qf, tag)},
        {"name": "QSO_ENTRYPOINT", "value": qf["spec"]["entrypoint"]},
        {"name": "QSO_DEPENDENCIES", "value": json.dumps(qf["spec"].get("dependencies") or [])},
        {"name": "QSO_REGISTRY_INSECURE", "value": "true" if cfg.registry_insecure else "false"},
        {"name": "QSO_BUILD_SOURCE", "value": "/source"},
        {"name": "QSO_BUILD_WORK", "value": "/work"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if cfg.pip_index_url:
        env.append({"name": "PIP_INDEX_URL", "value": cfg.pip_index_url})
    if cfg.pip_extra_index_url:
        env.append({"name": "PIP_EXTRA_INDEX_URL", "value": cfg.pip_extra_index_url})
    for key, value in sorted(cfg.build_proxy.items()):
        env += [{"name": key, "value": value}, {"name": key.lower(), "value": value}]
    volumes: list[dict[str, Any]] = [
        {"name": "work", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "work", "mountPath": "/work"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if archive_url:
        # The archive comes from object storage through a read link; the builder checks it.
        env += [
            {"name": "QSO_SOURCE_ARCHIVE_URL", "value": archive_url},
            {
                "name": "QSO_SOURCE_ARCHIVE_SHA256",
                "value": qf["spec"]["source"]["archive"]["sha256"],
            },
        ]
    else:
        volumes.append(
            {
                "name": "source",
                "configMap": {
                    "name": source_configmap_name(meta["name"]),
                    "items": source_items(qf),
                },
            }
        )
        mounts.append({"name": "source", "mountPath": "/source", "readOnly": True})
    if with_ca:
        env += [
            {"name": "PIP_CERT", "value": "/etc/qso-ca/ca.crt"},
            {"name": "SSL_CERT_FILE", "value": "/etc/qso-ca/ca.crt"},
        ]
        volumes.append({"name": "ca", "configMap": {"name": CA_CONFIGMAP}})
        mounts.append({"name": "ca", "mountPath": "/etc/qso-ca", "readOnly": True})
    if push_secret:
        volume, mount, variable = registry_auth.push_mount(push_secret)
        volumes.append(volume)
        mounts.append(mount)
        env.append(variable)
    container = {
        "name": "build",
        "image": cfg.builder_image,
        "command": ["python3", "-m", "qiskit_serverless_operator.builder"],
        "env": env,
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
    }
    # pip needs the package index's name: the node's resolvers, not cluster DNS.
    return _function_job(
        qf,
        build_job_name(meta["name"], tag),
        container,
        volumes,
        deadline=cfg.build_timeout_seconds,
        dns_policy="Default",
        pull_secret=pull_secret,
    )


def _function_job(
    qf: dict[str, Any],
    name: str,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    *,
    deadline: int,
    dns_policy: str = "ClusterFirst",
    pull_secret: str | None = None,
) -> dict[str, Any]:
    """A one-pod Job owned by the function, locked down like job pods."""
    meta = qf["metadata"]
    labels = {
        c.LABEL_BUILD: meta["name"],
        c.LABEL_FUNCTION: qf["spec"]["title"],
        c.LABEL_MANAGED_BY: c.MANAGER,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(qf)],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "dnsPolicy": dns_policy,
                    "securityContext": restricted_pod_security(),
                    "volumes": volumes,
                    "containers": [
                        {**container, "securityContext": restricted_container_security()}
                    ],
                    **({"imagePullSecrets": [{"name": pull_secret}]} if pull_secret else {}),
                },
            },
        },
    }


def check_job(
    qf: dict[str, Any], name: str, runtime_image: str, pull_secret: str | None = None
) -> dict[str, Any]:
    """A pod that pulls the prebuilt image and, with the wrapper injected, checks it can run
    a job: Python, and the function's entrypoint or Qiskit Serverless' /runner/runner.py."""
    inject = wrapper_injection(runtime_image)
    container = {
        "name": "check",
        "image": qf["spec"]["image"],
        "command": ["python3", "-m", "qiskit_serverless_operator.runtime.probe"],
        "env": [
            inject["env"],
            {"name": "QSO_SOURCE_DIR", "value": c.POD_SOURCE_DIR},
            {"name": "QSO_ENTRYPOINT", "value": qf["spec"]["entrypoint"]},
        ],
        "volumeMounts": [inject["mount"]],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
    }
    job = _function_job(
        qf, name, container, [inject["volume"]], deadline=600, pull_secret=pull_secret
    )
    job["spec"]["template"]["spec"]["initContainers"] = [inject["init"]]
    return job
