"""Run the operator on the host against the local cluster, as a component `down` stops.

Used by ./scripts/walkthrough until the in-cluster install (manifests/) exists: it applies
the CRDs and the peering object, then starts `python -m qiskit_serverless_operator` with the
cluster's S3, registry and runtime-image settings.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

from . import config, procs
from .config import Paths

NAME = "operator"
LIVENESS = "http://127.0.0.1:8080/healthz"


def _kubectl(paths: Paths, *args: str) -> None:
    subprocess.run(
        [str(paths.state / "path" / "kubectl"), f"--kubeconfig={paths.kubeconfig}", *args],
        check=True,
        capture_output=True,
        text=True,
    )


def start(paths: Paths) -> None:
    info = json.loads(paths.info.read_text())
    _kubectl(
        paths, "apply", "--server-side", "--force-conflicts", "-f", str(config.REPO_ROOT / "crds")
    )
    _kubectl(paths, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    _kubectl(
        paths,
        "apply",
        "--server-side",
        "-f",
        str(config.REPO_ROOT / "manifests" / "base" / "kopf-peering.yaml"),
    )
    s3 = info["s3"]
    env = {
        "KUBECONFIG": info["kubeconfig"],
        "QSO_S3_ENDPOINT": s3["endpoint"],
        "QSO_S3_BUCKET": s3["bucket"],
        "QSO_S3_ACCESS_KEY": s3["access_key"],
        "QSO_S3_SECRET_KEY": s3["secret_key"],
        "QSO_RUNTIME_IMAGE": info["images"]["runtime"],
        "QSO_GATEWAY_URL": f"http://{config.NODE_IP}:8000",
        "QSO_GATEWAY_BIND": config.NODE_IP,
        "QSO_METRICS_BIND": "127.0.0.1",
    }
    procs.start(
        paths,
        NAME,
        [sys.executable, "-m", "qiskit_serverless_operator", "--liveness", LIVENESS],
        env=env,
    )

    def healthy() -> bool:
        with urllib.request.urlopen(LIVENESS, timeout=2) as response:
            return response.status == 200

    procs.wait_for(
        healthy, what="the operator", timeout=60, alive=lambda: procs.exited_early(paths, NAME)
    )


def stop(paths: Paths) -> None:
    procs.stop(paths, NAME)
