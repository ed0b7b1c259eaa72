"""The install manifests (manifests/), read as files: what must hold before any cluster sees
them. tests/integration/test_manifests_render.py renders and validates them on a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from qiskit_serverless_operator.config import OperatorConfig
from tests.unit.operator_env import REQUIRED

pytestmark = pytest.mark.unit

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
BASE = MANIFESTS / "base"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kind(kind: str) -> list[dict[str, Any]]:
    return [doc for path in BASE.glob("*.yaml") for doc in _docs(path) if doc["kind"] == kind]


def _named(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in _kind(kind) if d["metadata"]["name"] == name]
    return doc


def _literals(kustomization: Path) -> dict[str, str]:
    doc = yaml.safe_load(kustomization.read_text())
    values: dict[str, str] = {}
    for generator in doc.get("configMapGenerator", []):
        if generator["name"] == "qiskit-serverless-operator-settings":
            values.update(item.split("=", 1) for item in generator.get("literals", []))
    return values


def test_rbac_has_no_wildcards() -> None:
    roles = _kind("ClusterRole") + _kind("Role")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in "".join(rule.get(key, [])), (role["metadata"]["name"], rule)


def test_operator_never_lists_or_watches_secrets() -> None:
    (role,) = [
        r for r in _kind("ClusterRole") if r["metadata"]["name"] == "qiskit-serverless-operator"
    ]
    for rule in role["rules"]:
        if "secrets" in rule["resources"]:
            assert not {"list", "watch"} & set(rule["verbs"]), rule


@pytest.mark.parametrize("name", ["qiskit-serverless-operator", "qiskit-serverless-gateway"])
def test_operator_and_gateway_pods_are_restricted(name: str) -> None:
    deployment = _named("Deployment", name)
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"] and container["readinessProbe"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    pdb = _named("PodDisruptionBudget", name)
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_ports_and_names_agree_with_the_operator_settings() -> None:
    deployment = _named("Deployment", "qiskit-serverless-operator")
    service = _named("Service", "qiskit-serverless-operator")
    (namespace,) = _kind("Namespace")
    base = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    literals = _literals(BASE / "kustomization.yaml")
    cfg = OperatorConfig.from_env({**literals, **REQUIRED})
    ports = {
        p["name"]: p["containerPort"]
        for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert ports["job-endpoint"] == cfg.job_endpoint_port and ports["metrics"] == cfg.metrics_port
    from tests.in_cluster import PEERING

    assert cfg.peering == PEERING  # the object the operator creates, the tests read
    assert base["namespace"] == namespace["metadata"]["name"]
    service_url = (
        f"http://{service['metadata']['name']}.{base['namespace']}.svc:{cfg.job_endpoint_port}"
    )
    assert cfg.job_endpoint_url == service_url
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def _installed_files(kustomization_dir: Path) -> list[Path]:
    """Every YAML file a kustomization's ``resources`` reach, through nested folders."""
    doc = yaml.safe_load((kustomization_dir / "kustomization.yaml").read_text())
    files: list[Path] = []
    for entry in doc.get("resources", []):
        path = (kustomization_dir / entry).resolve()
        files += _installed_files(path) if path.is_dir() else [path]
    return files


@pytest.mark.parametrize("install", ["base", "overlays/local", "overlays/production"])
def test_install_holds_no_object_of_its_own_crds(install: str) -> None:
    """One `kubectl apply -k` sends CRDs and objects together; on a cluster that never had
    the CRDs, an object of their kinds is refused ("ensure CRDs are installed first"). So an
    install carries CRDs and built-in kinds only; the operator makes its own objects."""
    docs = [doc for path in _installed_files(MANIFESTS / install) for doc in _docs(path)]
    crds = [doc for doc in docs if doc["kind"] == "CustomResourceDefinition"]
    assert crds, install
    served = {(crd["spec"]["group"], crd["spec"]["names"]["kind"]) for crd in crds}
    for doc in docs:
        group = doc["apiVersion"].rpartition("/")[0]
        assert (group, doc["kind"]) not in served, (install, doc["kind"], doc["metadata"])


def test_production_overlay_is_a_complete_configuration() -> None:
    env = {
        **_literals(BASE / "kustomization.yaml"),
        **_literals(MANIFESTS / "overlays" / "production" / "kustomization.yaml"),
        # The one Secret a site creates itself (see the overlay's comment).
        "QSO_S3_ACCESS_KEY": "a",
        "QSO_S3_SECRET_KEY": "s",
    }
    cfg = OperatorConfig.from_env(env)
    assert cfg.registry and cfg.builder_image and cfg.s3.endpoint.startswith("https://")


def test_examples_folder_applies_as_is() -> None:
    """`kubectl apply -f examples/` reads the YAML files directly in examples/."""
    examples = MANIFESTS.parent / "examples"
    docs = [doc for path in sorted(examples.glob("*.yaml")) for doc in _docs(path)]
    kinds = [doc["kind"] for doc in docs]
    assert "QiskitFunction" in kinds and "ServerlessJob" in kinds
    assert all("namespace" not in doc["metadata"] for doc in docs)


def test_gateway_agrees_with_its_settings_the_policy_and_the_harness() -> None:
    from qiskit_serverless_operator.gateway.config import GatewayConfig
    from tests.cluster import pki

    deployment = _named("Deployment", "qiskit-serverless-gateway")
    service = _named("Service", "qiskit-serverless-gateway")
    base = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    cfg = GatewayConfig.from_env({**_literals(BASE / "kustomization.yaml"), **REQUIRED})
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"https": cfg.port, "history": cfg.history_port, "health": cfg.health_port}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"https", "history", "health"}
    (api_service,) = _kind("APIService")
    assert api_service["spec"]["service"] == {
        "name": service["metadata"]["name"],
        "namespace": base["namespace"],
        "port": next(p["port"] for p in service["spec"]["ports"] if p["name"] == "history"),
    }
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # The TLS files the gateway reads are the mounted Secret's.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert env["QSO_GATEWAY_TLS_CERT"] == f"{mounts['tls']}/tls.crt"
    assert env["QSO_GATEWAY_TLS_KEY"] == f"{mounts['tls']}/tls.key"
    assert volumes["tls"]["secret"]["secretName"] == "qiskit-serverless-gateway-tls"
    # The admission policy trusts exactly this ServiceAccount to name a job's submitter.
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    policy = _named("ValidatingAdmissionPolicy", "serverlessjob-submitter.serverless.qiskit.org")
    (gateway_variable,) = [v for v in policy["spec"]["variables"] if v["name"] == "gateway"]
    expected = f"system:serviceaccount:{base['namespace']}:{account}"
    assert gateway_variable["expression"] == f"'{expected}'"
    # The harness's certificate names the Service as clients reach it.
    assert service["metadata"]["name"] == pki.GATEWAY_SERVICE
    assert base["namespace"] == pki.GATEWAY_NAMESPACE
    # It never reads Secrets: results, logs and files come from object storage.
    role = _named("ClusterRole", "qiskit-serverless-gateway")
    for rule in role["rules"]:
        if "secrets" in rule["resources"]:
            assert set(rule["verbs"]) <= {"create", "patch"}, rule
        if "configmaps" in rule["resources"]:
            assert rule["resourceNames"] == ["extension-apiserver-authentication"], rule
