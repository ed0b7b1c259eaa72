"""Debian's Prometheus on the machine, scraping the in-cluster operator and gateway pods and
evaluating manifests/monitoring's alerts, for the monitoring test (a site runs the
Prometheus Operator with the ServiceMonitor and PrometheusRule instead; the rules and the
scrape targets are the same).

It scrapes the pods annotated ``prometheus.io/scrape`` at the annotated port, as the
annotations in manifests/base ask; Debian's build has no Kubernetes service discovery, so
the harness writes the pods into a file_sd file (``refresh_targets``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from typing import Any

import yaml

from . import config, procs
from .cluster import ensure_packages
from .config import Paths

COMPONENT = "prometheus"
PORT = 9089  # loopback; 9090 is the operator's metrics port on the node
RULES = config.REPO_ROOT / "manifests" / "monitoring" / "prometheusrule.yaml"


def rule_groups(for_seconds: int | None = None) -> dict[str, Any]:
    """The PrometheusRule's groups as a Prometheus rules file; ``for_seconds`` replaces every
    rule's ``for`` (a test does not wait out an alert's quarter of an hour)."""
    groups = yaml.safe_load(RULES.read_text())["spec"]["groups"]
    if for_seconds is not None:
        for group in groups:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = f"{for_seconds}s"
    return {"groups": groups}


def scrape_config(interval: str = "2s") -> dict[str, Any]:
    """Scrape what targets.json lists (refresh_targets writes it)."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [
            {
                "job_name": "qiskit-serverless",
                "file_sd_configs": [{"files": ["targets.json"], "refresh_interval": "5s"}],
            }
        ],
    }


def pod_targets(paths: Paths, namespace: str) -> list[dict[str, Any]]:
    """The pods annotated ``prometheus.io/scrape``, at their annotated port. (Debian builds
    Prometheus without Kubernetes service discovery: the harness lists the pods itself.)"""
    out = subprocess.run(
        [
            str(paths.state / "path" / "kubectl"),
            f"--kubeconfig={paths.kubeconfig}",
            "-n",
            namespace,
            "get",
            "pods",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = []
    for pod in json.loads(out)["items"]:
        notes = pod["metadata"].get("annotations") or {}
        ip = (pod.get("status") or {}).get("podIP")
        if (
            notes.get("prometheus.io/scrape") == "true"
            and ip
            and not pod["metadata"].get("deletionTimestamp")
        ):
            port = notes.get("prometheus.io/port", "9090")
            found.append({"targets": [f"{ip}:{port}"], "labels": {"pod": pod["metadata"]["name"]}})
    return found


def refresh_targets(paths: Paths, namespace: str) -> None:
    home = paths.state / "prometheus"
    staging = home / "targets.json.tmp"
    staging.write_text(json.dumps(pod_targets(paths, namespace)))
    staging.rename(home / "targets.json")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)


def start(paths: Paths, namespace: str, for_seconds: int | None = 0) -> str:
    """Prometheus on 127.0.0.1:PORT with a fresh data folder; its URL."""
    ensure_packages(paths, ("prometheus",))
    home = paths.state / "prometheus"
    shutil.rmtree(home, ignore_errors=True)
    (home / "data").mkdir(parents=True)
    (home / "rules.yaml").write_text(yaml.safe_dump(rule_groups(for_seconds)))
    (home / "prometheus.yml").write_text(yaml.safe_dump(scrape_config()))
    refresh_targets(paths, namespace)
    procs.start(
        paths,
        COMPONENT,
        [
            "prometheus",
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{PORT}",
        ],
        cwd=home,
    )
    url = f"http://127.0.0.1:{PORT}"
    procs.wait_for(
        lambda: _ready(url),
        what="Prometheus ready",
        timeout=60,
        alive=procs.alive(paths, COMPONENT),
    )
    return url


def stop(paths: Paths) -> None:
    procs.stop(paths, COMPONENT)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def api(url: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}/api/v1/{path}{query}", timeout=10) as answer:
        body = json.loads(answer.read())
    assert body["status"] == "success", body
    return body["data"]


def wait_for_targets(
    url: str, count: int, paths: Paths, namespace: str, timeout: float = 120
) -> list[dict[str, Any]]:
    """Until ``count`` targets are up (the pod list written again each time: a replica an
    earlier test killed comes back under a new name and address)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        refresh_targets(paths, namespace)
        active = api(url, "targets")["activeTargets"]
        up = [t for t in active if t["health"] == "up"]
        if len(up) >= count:
            return up
        time.sleep(1)
    raise TimeoutError(f"Prometheus scrapes fewer than {count} targets: {active}")
