"""The in-cluster install on the local cluster: `kubectl apply -k manifests/overlays/local`.

`up` writes the overlay's site values (S3 endpoint and keys, registry, the image tags it
built, the machine's pip settings) into manifests/overlays/local/generated/; `install`
applies the overlay and waits for the operator's rollout; `uninstall` removes the operator
but keeps the CRDs (and so every QiskitFunction and ServerlessJob), the peering object and
the submitter admission policy (both are part of the API, like the CRDs).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from . import config, pki
from .config import Paths
from .progress import say

OVERLAY = config.REPO_ROOT / "manifests" / "overlays" / "local"
NAMESPACE = "qiskit-serverless"
DEPLOYMENT = "qiskit-serverless-operator"
GATEWAY = "qiskit-serverless-gateway"
POD_CA_PATH = "/etc/qso/pip-ca/ca.crt"
CLUSTER_OBJECTS = (
    # First: an APIService whose backend is gone makes API discovery fail, and with it the
    # namespace deletion below (its controller must discover every resource).
    "apiservice/v1alpha1.history.serverless.qiskit.org",
    "clusterrolebinding/qiskit-serverless-operator",
    "clusterrole/qiskit-serverless-operator",
    "clusterrole/qiskit-serverless-edit",
    "clusterrole/qiskit-serverless-view",
    "clusterrolebinding/qiskit-serverless-queue-reader",
    "clusterrole/qiskit-serverless-queue-reader",
    "clusterrolebinding/qiskit-serverless-gateway",
    "clusterrolebinding/qiskit-serverless-gateway-auth-delegator",
    "clusterrole/qiskit-serverless-gateway",
    "clusterrole/qiskit-serverless-function-runner",
)


def machine_ca_bundle() -> Path:
    """The CA bundle pip on this machine trusts (build pods need the same)."""
    return Path(
        os.environ.get("PIP_CERT")
        or os.environ.get("REQUESTS_CA_BUNDLE")
        or "/etc/ssl/certs/ca-certificates.crt"
    )


def _env_file(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


S3_KEYS = ("QSO_S3_ACCESS_KEY", "QSO_S3_SECRET_KEY")
SECRET_SETTINGS = (*S3_KEYS, "QSO_ARCHIVE_DSN")


def site_settings(info: dict[str, Any]) -> dict[str, str]:
    """The local cluster's site settings for the operator, wherever it runs: its S3, its
    registry, the images `up` built, and the machine's own package index (build pods reach
    the index the machine does)."""
    s3 = info["s3"]
    return {
        "QSO_S3_ENDPOINT": s3["endpoint"],
        "QSO_S3_BUCKET": s3["bucket"],
        "QSO_S3_ACCESS_KEY": s3["access_key"],
        "QSO_S3_SECRET_KEY": s3["secret_key"],
        "QSO_RUNTIME_IMAGE": info["images"]["runtime"],
        "QSO_BUILDER_IMAGE": info["images"]["builder"],
        "QSO_REGISTRY": info["registry"],
        "QSO_REGISTRY_INSECURE": "true",
        "QSO_PIP_INDEX_URL": os.environ.get("PIP_INDEX_URL", ""),
        "QSO_PIP_EXTRA_INDEX_URL": os.environ.get("PIP_EXTRA_INDEX_URL", ""),
        # The files API on a machine's own disk: files up to 8 MiB, 64 MiB per folder.
        "QSO_FILES_MAX_FILE_BYTES": str(8 * 1024 * 1024),
        "QSO_FILES_QUOTA_BYTES": str(64 * 1024 * 1024),
        # The job archive: Debian's PostgreSQL on the node (tests/cluster/postgres.py).
        "QSO_ARCHIVE_DSN": (info.get("archive") or {}).get("dsn", ""),
    }


def write_local_overlay(
    info: dict[str, Any], overlay: Path = OVERLAY, paths: Paths | None = None
) -> None:
    generated = overlay / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    cert, key = pki.ensure_leaf((paths or Paths.from_env()).pki, pki.gateway_cert())
    shutil.copyfile(cert, generated / "gateway-tls.crt")
    shutil.copyfile(key, generated / "gateway-tls.key")
    (generated / "gateway-tls.key").chmod(0o600)
    site = site_settings(info)
    settings = {
        "QSO_OPERATOR_IMAGE": info["images"]["operator"],
        **{key: value for key, value in site.items() if key not in SECRET_SETTINGS},
        "QSO_PIP_CA_BUNDLE": POD_CA_PATH,
    }
    (generated / "settings.env").write_text(_env_file(settings))
    for name, keys in (("s3.env", S3_KEYS), ("archive.env", ("QSO_ARCHIVE_DSN",))):
        secret = generated / name
        secret.write_text(_env_file({key: site[key] for key in keys if site[key]}))
        secret.chmod(0o600)
    shutil.copyfile(machine_ca_bundle(), generated / "pip-ca.crt")
    # The API server checks the history API's serving certificate (the gateway's, signed by
    # the cluster CA) against the APIService's caBundle.
    ca = Path(info.get("ca") or (paths or Paths.from_env()).pki / "ca.crt")
    (generated / "apiservice-ca.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1alpha1.history.serverless.qiskit.org"},
                "spec": {"caBundle": base64.b64encode(ca.read_bytes()).decode()},
            }
        )
    )


def _kubectl(paths: Paths, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(paths.state / "path" / "kubectl"), f"--kubeconfig={paths.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _check(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def install(paths: Paths, timeout: int = 300) -> None:
    # Again here: the cluster may have been brought up from another checkout.
    write_local_overlay(json.loads(paths.info.read_text()))
    # A namespace still terminating from an earlier uninstall refuses new objects.
    _kubectl(paths, "wait", "--for=delete", f"namespace/{NAMESPACE}", "--timeout=180s", timeout=200)
    say(f"kubectl apply -k {OVERLAY.relative_to(config.REPO_ROOT)}")
    # Server-side: the CRDs are too big for client-side apply's last-applied annotation.
    _check(
        _kubectl(paths, "apply", "--server-side", "--force-conflicts", "-k", str(OVERLAY)),
        "kubectl apply -k",
    )
    for deployment in (DEPLOYMENT, GATEWAY):
        say(f"waiting for deployment/{deployment} in {NAMESPACE} to roll out")
        _check(
            _kubectl(
                paths,
                "-n",
                NAMESPACE,
                "rollout",
                "status",
                f"deployment/{deployment}",
                f"--timeout={timeout}s",
                timeout=timeout + 30,
            ),
            f"the {deployment} rollout",
        )
    info = json.loads(paths.info.read_text())
    say(f"the operator runs in the cluster; the REST gateway answers at {info.get('gateway')}")


def uninstall(paths: Paths) -> None:
    """Remove the operator's Deployment, namespace and RBAC; keep CRDs and their objects.

    The namespace first: its operator replicas, stopped while their rights remain, leave the
    peering as they go (SIGTERM), so no stale peer makes the next operator wait."""
    _kubectl(paths, "delete", "--ignore-not-found", CLUSTER_OBJECTS[0])
    _check(
        _kubectl(
            paths,
            "delete",
            "namespace",
            NAMESPACE,
            "--ignore-not-found",
            "--wait",
            "--timeout=120s",
        ),
        f"deleting namespace {NAMESPACE}",
    )
    _kubectl(paths, "delete", "--ignore-not-found", *CLUSTER_OBJECTS)


def remove_api(paths: Paths) -> None:
    """Take the cluster back to before the first install: the operator (``uninstall``), then
    every QiskitFunction and ServerlessJob (their finalizers dropped: no operator is left to
    clean up), the CRDs of crds/ and the submitter admission policy. Destroys all jobs."""
    uninstall(paths)
    crds = str(config.REPO_ROOT / "crds")
    listed = _kubectl(paths, "get", "-k", crds, "-o", "name", "--ignore-not-found")
    present = [name.split("/", 1)[1] for name in _check(listed, "kubectl get crd").split()]
    for crd in present:
        kind = crd.split(".", 1)[0]
        found = _kubectl(paths, "get", kind, "-A", "-o", "json", "--ignore-not-found")
        items = json.loads(found.stdout or '{"items": []}').get("items", [])
        for item in items:
            meta = item["metadata"]
            where = ["-n", meta["namespace"]] if meta.get("namespace") else []
            if meta.get("finalizers"):
                _kubectl(
                    paths,
                    *where,
                    "patch",
                    kind,
                    meta["name"],
                    "--type=merge",
                    "-p",
                    '{"metadata":{"finalizers":null}}',
                )
    say(f"deleting the CRDs ({len(present)}), and with them every object of theirs")
    _check(
        _kubectl(
            paths,
            "delete",
            "-k",
            crds,
            "--ignore-not-found",
            "--wait",
            "--timeout=180s",
            timeout=200,
        ),
        "deleting the CRDs",
    )
    policy = str(config.REPO_ROOT / "manifests" / "base" / "admission-policy.yaml")
    _check(_kubectl(paths, "delete", "-f", policy, "--ignore-not-found"), "deleting the policy")


def gateway_env(paths: Paths, namespace: str, service_account: str) -> list[str]:
    """Exports for a REST client: a ServiceAccount in ``namespace`` bound to the built-in
    ``edit`` role (which aggregates the qiskit-serverless-edit rules), and a one-hour token."""
    info = json.loads(paths.info.read_text())
    for args in (
        ("create", "namespace", namespace),
        ("-n", namespace, "create", "serviceaccount", service_account),
        (
            "-n",
            namespace,
            "create",
            "rolebinding",
            f"{service_account}-edit",
            "--clusterrole=edit",
            f"--serviceaccount={namespace}:{service_account}",
        ),
    ):
        result = _kubectl(paths, *args)
        if result.returncode != 0 and "already exists" not in result.stderr.lower():
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    token = _check(
        _kubectl(paths, "-n", namespace, "create", "token", service_account, "--duration=1h"),
        "kubectl create token",
    ).strip()
    return [
        f"export QSO_GATEWAY_HOST={info['gateway']}",
        f"export QSO_GATEWAY_TOKEN={token}",
        f"export QSO_NAMESPACE={namespace}",
        f"export REQUESTS_CA_BUNDLE={info['ca']}",
    ]
