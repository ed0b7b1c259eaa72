"""The Helm chart (charts/qiskit-serverless) with a real Helm built from its Go module:
lint, `helm template` of the default and the two example values files checked by the API
server (server-side dry run, strict: the 1.34 API schemas and our CRDs), the objects the same
as the kustomize install's, and a real `helm install` on a cluster without our CRDs followed
by the walkthrough (our SDK and PyPI's ServerlessClient); `helm uninstall` keeps the CRDs
and every function, job and archived row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.cluster import helm
from tests.cluster.config import Paths
from tests.cluster.install import NAMESPACE
from tests.e2e.test_walkthrough import check_walkthrough_record, load_walkthrough
from tests.in_cluster import service_account_token
from tests.kube import REPO_ROOT, kubectl, session_operator_paused, wait_until

EXAMPLES = helm.CHART / "examples"
# Kinds of other projects' CRDs this cluster does not have (cert-manager, the Prometheus
# Operator): their objects are checked by the tests of what they carry (promtool for rules).
FOREIGN = {"Certificate", "ServiceMonitor", "PrometheusRule"}


def _rendered(paths: Paths, namespace: str, *values: Path) -> list[dict[str, Any]]:
    args = [arg for v in values for arg in ("--values", str(v))]
    out = helm.helm(paths, "template", helm.RELEASE, str(helm.CHART), "-n", namespace, *args)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.mark.parametrize("values", [None, "values-production.yaml", "values-openshift.yaml"])
def test_chart_lints_and_renders_objects_the_api_server_accepts(
    cluster: dict[str, Any], crds: None, namespace: str, values: str | None
) -> None:
    paths = Paths.from_env()
    files = [EXAMPLES / values] if values else []
    lint = helm.helm(
        paths,
        "lint",
        "--strict",
        str(helm.CHART),
        *[a for f in files for a in ("--values", str(f))],
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = _rendered(paths, namespace, *files)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ClusterRole", "APIService", "ValidatingAdmissionPolicy"} <= kinds
    checked = [d for d in docs if d["kind"] not in FOREIGN]
    result = kubectl(
        cluster,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "--validate=strict",
        "--field-manager=qso-chart-test",
        "-f",
        "-",
        input=yaml.safe_dump_all(checked),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(checked)


def test_chart_renders_the_kustomize_install_s_objects(cluster: dict[str, Any], crds: None) -> None:
    """One source: every object of manifests/base is in the chart's output with the same
    rules, ports and probes; only what values set differs."""
    paths = Paths.from_env()
    chart = {(d["kind"], d["metadata"]["name"]): d for d in _rendered(paths, NAMESPACE)}
    base = kubectl(cluster, "kustomize", str(REPO_ROOT / "manifests" / "base")).stdout
    for doc in (d for d in yaml.safe_load_all(base) if d):
        key = (doc["kind"], doc["metadata"]["name"])
        if doc["kind"] in ("Namespace", "CustomResourceDefinition"):
            continue  # the release's namespace; the chart's crds/ folder
        if doc["kind"] == "ConfigMap":
            key = ("ConfigMap", "qiskit-serverless-operator-settings")  # no hash suffix
        assert key in chart, key
        mine = chart[key]
        if "rules" in doc:
            assert mine["rules"] == doc["rules"], key
        if doc["kind"] == "Deployment":
            ours, theirs = (d["spec"]["template"]["spec"]["containers"][0] for d in (mine, doc))
            for field in ("ports", "livenessProbe", "readinessProbe", "command"):
                assert ours.get(field) == theirs.get(field), (key, field)
        if doc["kind"] == "ConfigMap":
            for name, value in doc["data"].items():
                assert mine["data"][name] == value, name


def test_helm_install_on_an_empty_cluster_runs_the_walkthrough_and_uninstall_keeps_data(
    cluster: dict[str, Any],
    crds: None,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    api_client: Any,
) -> None:
    paths = Paths.from_env()
    with session_operator_paused():
        removed = subprocess.run(
            [sys.executable, "-m", "tests.cluster", "uninstall", "--api"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert removed.returncode == 0, removed.stderr
        assert "serverlessjobs" not in kubectl(cluster, "get", "crd", "-o", "name").stdout
        try:
            helm.install(paths)
            crds = kubectl(cluster, "get", "crd", "-o", "name").stdout
            assert "serverlessjobs.serverless.qiskit.org" in crds  # from the chart's crds/

            # The walkthrough, through our SDK and through ServerlessClient and the gateway.
            monkeypatch.setenv("KUBECONFIG", cluster["kubeconfig"])
            monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", cluster["ca"])
            walkthrough = load_walkthrough()
            check_walkthrough_record(walkthrough.main(namespace=namespace))
            token = service_account_token(api_client, namespace, "helm-user")
            rest = walkthrough.main(namespace=namespace, rest=(cluster["gateway"], token))
            check_walkthrough_record(rest)

            # One job archived before the uninstall: its row must outlive it.
            job = rest["job_id"]
            name = json.loads(
                kubectl(
                    cluster,
                    "-n",
                    namespace,
                    "get",
                    "sj",
                    "--field-selector",
                    f"status.jobId={job}",
                    "-o",
                    "json",
                ).stdout
            )["items"][0]["metadata"]["name"]
            kubectl(
                cluster,
                "-n",
                namespace,
                "patch",
                "sj",
                name,
                "--type=merge",
                "-p",
                '{"spec": {"ttlSecondsAfterFinished": 0}}',
            )

            def archived() -> bool:
                out = kubectl(cluster, "-n", namespace, "get", "sj", name, check=False)
                return out.returncode != 0

            wait_until(archived, timeout=60, what="the job archived and deleted")
            jobs_before = kubectl(cluster, "-n", namespace, "get", "sj", "-o", "name").stdout
        finally:
            uninstalled = helm.uninstall(paths)
        assert "uninstalled" in uninstalled
        # The operator and gateway are gone; the API and the data stay.
        assert not kubectl(cluster, "-n", NAMESPACE, "get", "deploy", "-o", "name").stdout
        assert (
            "serverlessjobs.serverless.qiskit.org"
            in kubectl(cluster, "get", "crd", "-o", "name").stdout
        )
        assert kubectl(cluster, "-n", namespace, "get", "sj", "-o", "name").stdout == jobs_before
        assert (
            "qiskitfunction" in kubectl(cluster, "-n", namespace, "get", "qf", "-o", "name").stdout
        )
        with psycopg.connect(cluster["archive"]["dsn"]) as conn:
            rows = conn.execute(
                "SELECT count(*) FROM qso_jobs WHERE job_id = %s", (job,)
            ).fetchone()
        assert rows == (1,)
        # The site's Secrets go with the namespace; the next install starts from nothing.
        kubectl(cluster, "delete", "namespace", NAMESPACE, "--wait", "--timeout=180s", check=False)
