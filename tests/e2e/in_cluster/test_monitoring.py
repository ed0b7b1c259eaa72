"""Monitoring on the real cluster: Debian's Prometheus scrapes the in-cluster operator and
gateway replicas (their pods' scrape annotations), `promtool` accepts manifests/monitoring's
alerts, and one of them fires on a real failure (jobs ending in ERROR). The rules' `for`
durations are set to 0 here: the test does not wait out a quarter of an hour."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.cluster import prometheus
from tests.cluster.config import Paths
from tests.cluster.install import NAMESPACE
from tests.kube import REPO_ROOT
from tests.serverless import custom, make_function, make_job, wait_job

FAILING = "raise SystemExit('this job fails on purpose')\n"


@pytest.fixture
def prom(cluster: dict[str, Any], in_cluster: list[str]) -> Iterator[str]:
    paths = Paths.from_env()
    url = prometheus.start(paths, NAMESPACE, for_seconds=0)
    try:
        yield url
    finally:
        prometheus.stop(paths)


def test_promtool_accepts_the_rules_and_the_dashboard_queries_are_prometheus(
    tmp_path: Any, cluster: dict[str, Any]
) -> None:
    paths = Paths.from_env()
    from tests.cluster.cluster import ensure_packages

    ensure_packages(paths, ("prometheus",))
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(prometheus.rule_groups()))
    checked = prometheus.promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout
    dashboard = json.loads(
        (REPO_ROOT / "manifests/monitoring/dashboards/qiskit-serverless.json").read_text()
    )
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    for expr in exprs:  # every panel's query parses (promtool's own parser)
        parsed = prometheus.promtool("check", "rules", _one_rule(tmp_path, expr))
        assert parsed.returncode == 0, (expr, parsed.stdout + parsed.stderr)


def _one_rule(tmp_path: Any, expr: str) -> str:
    path = tmp_path / "expr.yaml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "q", "rules": [{"record": "q:check", "expr": expr}]}]})
    )
    return str(path)


def test_prometheus_scrapes_both_components_and_an_alert_fires_on_failing_jobs(
    prom: str, api_client: Any, namespace: str, in_cluster: list[str]
) -> None:
    in_cluster.append(namespace)
    # Two operator and two gateway replicas.
    targets = prometheus.wait_for_targets(prom, 4, Paths.from_env(), NAMESPACE)
    pods = {t["labels"]["pod"] for t in targets}
    assert any("operator" in p for p in pods) and any("gateway" in p for p in pods)

    def value(query: str) -> float | None:
        result = prometheus.api(prom, "query", query=query)["result"]
        return float(result[0]["value"][1]) if result else None

    deadline = time.monotonic() + 60
    while value("sum(qso_operator_active)") != 1.0 and time.monotonic() < deadline:
        time.sleep(1)
    assert value("sum(qso_operator_active)") == 1.0  # one replica acts
    assert value('sum(qso_job_transitions_total{phase="ERROR"})') is not None

    # Nothing fires on a healthy install (NoActiveOperator would, were no replica acting).
    # A rule evaluated before the first scrape saw no active replica: wait for the next ones.
    def firing() -> set[str]:
        return {
            a["labels"]["alertname"]
            for a in prometheus.api(prom, "alerts")["alerts"]
            if a["state"] == "firing"
        }

    deadline = time.monotonic() + 60
    while "QiskitServerlessNoActiveOperator" in firing() and time.monotonic() < deadline:
        time.sleep(1)
    assert "QiskitServerlessNoActiveOperator" not in firing()

    api = custom(api_client)
    make_function(api, namespace, "fails", {"main.py": FAILING})
    for index in range(2):
        make_job(api, namespace, f"fails-{index}", "fails")
    for index in range(2):
        assert (
            wait_job(api, namespace, f"fails-{index}", {"DONE", "ERROR"})["status"]["phase"]
            == "ERROR"
        )

    def jobs_failing() -> dict[str, Any] | None:
        for alert in prometheus.api(prom, "alerts")["alerts"]:
            if alert["labels"]["alertname"] == "QiskitServerlessJobsFailing":
                return alert if alert["state"] == "firing" else None
        return None

    deadline = time.monotonic() + 90
    alert = None
    while alert is None and time.monotonic() < deadline:
        alert = jobs_failing()
        time.sleep(2)
    assert alert is not None, prometheus.api(prom, "alerts")
    assert alert["labels"]["severity"] == "warning"
    assert "ERROR" in alert["annotations"]["description"]
