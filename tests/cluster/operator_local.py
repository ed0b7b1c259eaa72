"""Run the operator on the host against the local cluster, as a component `down` stops.

For a quick loop on operator code without rebuilding its image (./scripts/walkthrough uses
the in-cluster install, `python -m tests.cluster install`): it applies the CRDs and the
peering object, then starts `python -m qiskit_serverless_operator` with the
cluster's S3, registry and runtime-image settings.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any

from . import config, procs
from .config import Paths
from .install import machine_ca_bundle, site_settings

NAME = "operator"
LIVENESS = "http://127.0.0.1:8080/healthz"


def operator_env(
    info: dict[str, Any], job_endpoint_port: int = 8000, metrics_port: int = 9090
) -> dict[str, str]:
    """The operator's settings for the local cluster (the tests use the same ones)."""
    return {
        "KUBECONFIG": info["kubeconfig"],
        **site_settings(info),
        "QSO_JOB_ENDPOINT_URL": f"http://{info['node_ip']}:{job_endpoint_port}",
        "QSO_JOB_ENDPOINT_PORT": str(job_endpoint_port),
        "QSO_JOB_ENDPOINT_BIND": info["node_ip"],
        "QSO_METRICS_BIND": "127.0.0.1",
        "QSO_METRICS_PORT": str(metrics_port),
        "QSO_PIP_CA_BUNDLE": str(machine_ca_bundle()),
    }


def _kubectl(paths: Paths, *args: str) -> None:
    subprocess.run(
        [str(paths.state / "path" / "kubectl"), f"--kubeconfig={paths.kubeconfig}", *args],
        check=True,
        capture_output=True,
        text=True,
    )


def apply_api(paths: Paths) -> None:
    """What the operator serves, before any operator runs: the CRDs (from crds/, their single
    source), Established; and the policy that makes a job's submitter unforgeable. The
    operator creates the object kopf peering elects the active replica through."""
    _kubectl(
        paths, "apply", "--server-side", "--force-conflicts", "-k", str(config.REPO_ROOT / "crds")
    )
    _kubectl(paths, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    _kubectl(
        paths,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(config.REPO_ROOT / "manifests" / "base" / "admission-policy.yaml"),
    )


def start(paths: Paths) -> None:
    info = json.loads(paths.info.read_text())
    apply_api(paths)
    env = operator_env(info)
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
