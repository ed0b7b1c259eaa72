"""The Helm chart on the local cluster, installed as a site installs it (docs/install.md):
the site's own Secrets first (the gateway's certificate, the archive's DSN), then
`helm install` of charts/qiskit-serverless with values for this cluster.

Helm is built from its Go module (gobuild.HELM) like the other components; its caches and
configuration live under the cluster's state, never in the home directory.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from . import config, gobuild, pki
from .config import Paths
from .install import NAMESPACE, machine_ca_bundle, site_settings
from .progress import say

CHART = config.REPO_ROOT / "charts" / "qiskit-serverless"
RELEASE = "qso"
ARCHIVE_SECRET = "qiskit-serverless-archive"
PIP_CA = "qiskit-serverless-pip-ca"


def helm_binary(paths: Paths) -> Path:
    return gobuild.build(paths, gobuild.HELM) / "helm"


def helm(paths: Paths, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    home = paths.state / "helm"
    env = {
        "PATH": "/usr/bin:/bin",
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(paths.kubeconfig),
    }
    return subprocess.run(
        [str(helm_binary(paths)), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def _image(ref: str) -> dict[str, str]:
    repository, _, tag = ref.rpartition(":")
    return {"repository": repository, "tag": tag}


def local_values(info: dict[str, Any]) -> dict[str, Any]:
    """Values for this cluster: its images, S3 (keys in the chart's own Secret), registry,
    archive (a Secret of the site's), the gateway on the node port, the cluster CA."""
    site = site_settings(info)
    return {
        "images": {
            name: _image(info["images"][name]) for name in ("operator", "runtime", "builder")
        },
        "s3": {
            "endpoint": site["QSO_S3_ENDPOINT"],
            "bucket": site["QSO_S3_BUCKET"],
            "accessKey": site["QSO_S3_ACCESS_KEY"],
            "secretKey": site["QSO_S3_SECRET_KEY"],
        },
        "builds": {
            "registry": site["QSO_REGISTRY"],
            "insecureRegistry": True,
            "pipIndexUrl": site["QSO_PIP_INDEX_URL"],
            "pipExtraIndexUrl": site["QSO_PIP_EXTRA_INDEX_URL"],
            "caBundleConfigMap": PIP_CA,
        },
        "archive": {"existingSecret": ARCHIVE_SECRET if site["QSO_ARCHIVE_DSN"] else ""},
        "settings": {
            "QSO_FILES_MAX_FILE_BYTES": site["QSO_FILES_MAX_FILE_BYTES"],
            "QSO_FILES_QUOTA_BYTES": site["QSO_FILES_QUOTA_BYTES"],
        },
        "gateway": {"service": {"type": "NodePort", "nodePort": config.GATEWAY_NODE_PORT}},
        "historyApi": {"caBundle": base64.b64encode(Path(info["ca"]).read_bytes()).decode()},
    }


def _kubectl(paths: Paths, *args: str, input: str | None = None) -> None:
    subprocess.run(
        [str(paths.state / "path" / "kubectl"), f"--kubeconfig={paths.kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        check=True,
    )


def site_objects(paths: Paths, info: dict[str, Any]) -> None:
    """What a site makes before `helm install`: the namespace (restricted Pod Security), the
    gateway's certificate Secret, the archive's DSN Secret, the package index's CA bundle."""
    cert, key = pki.ensure_leaf(paths.pki, pki.gateway_cert())
    dsn = site_settings(info)["QSO_ARCHIVE_DSN"]
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": NAMESPACE,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "qiskit-serverless-gateway-tls", "namespace": NAMESPACE},
            "data": {
                "tls.crt": base64.b64encode(Path(cert).read_bytes()).decode(),
                "tls.key": base64.b64encode(Path(key).read_bytes()).decode(),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": PIP_CA, "namespace": NAMESPACE},
            "data": {"ca.crt": machine_ca_bundle().read_text()},
        },
    ]
    if dsn:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": ARCHIVE_SECRET, "namespace": NAMESPACE},
                "stringData": {"QSO_ARCHIVE_DSN": dsn},
            }
        )
    for obj in objects:
        _kubectl(
            paths, "apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(obj)
        )


def install(paths: Paths, timeout: int = 300, extra_values: dict[str, Any] | None = None) -> str:
    """`helm upgrade --install` of the chart with this cluster's values; Helm's output."""
    info = json.loads(paths.info.read_text())
    site_objects(paths, info)
    values = paths.state / "helm" / "values-local.yaml"
    values.parent.mkdir(parents=True, exist_ok=True)
    values.write_text(yaml.safe_dump({**local_values(info), **(extra_values or {})}))
    values.chmod(0o600)
    say(f"helm upgrade --install {RELEASE} {CHART.relative_to(config.REPO_ROOT)}")
    result = helm(
        paths,
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--values",
        str(values),
        "--wait",
        f"--timeout={timeout}s",
        timeout=timeout + 60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm install failed: {result.stderr.strip() or result.stdout}")
    return result.stdout


def uninstall(paths: Paths, timeout: int = 180) -> str:
    result = helm(
        paths, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", f"--timeout={timeout}s"
    )
    if result.returncode != 0 and "not found" not in result.stderr:
        raise RuntimeError(f"helm uninstall failed: {result.stderr.strip()}")
    return result.stdout
