"""Every kustomization under manifests/ renders with `kubectl kustomize`, and every object it
renders passes the cluster's own validation (server-side dry run with strict field checks,
i.e. the OpenAPI schema of this Kubernetes version), with no wildcard in any RBAC rule and
only resources the cluster actually serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.install import write_local_overlay
from tests.kube import REPO_ROOT, kubectl

MANIFESTS = REPO_ROOT / "manifests"
INSTALLS = ["base", "overlays/local", "overlays/production"]
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ClusterKopfPeering",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "APIService",
}


def render(cluster: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    out = kubectl(cluster, "kustomize", str(folder)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def dry_run(cluster: dict[str, Any], docs: list[dict[str, Any]]) -> str:
    result = kubectl(
        cluster,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "--validate=strict",
        "--field-manager=qso-manifest-test",
        "-f",
        "-",
        input=yaml.safe_dump_all(docs),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def served_resources(cluster: dict[str, Any]) -> set[tuple[str, str]]:
    out = kubectl(cluster, "api-resources", "-o", "name").stdout.split()
    pairs = set()
    for name in out:
        resource, _, group = name.partition(".")
        pairs.add((group, resource))
    return pairs


def retarget(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """Put namespaced objects into the test's namespace, so the dry run needs nothing else."""
    for doc in docs:
        if doc["kind"] == "Namespace":
            doc["metadata"]["name"] = f"{namespace}-install"  # dry run: never created
        elif doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            if subject["kind"] == "ServiceAccount":
                subject["namespace"] = namespace
    return docs


@pytest.mark.parametrize("install", INSTALLS)
def test_install_renders_and_validates(
    cluster: dict[str, Any], crds: None, namespace: str, install: str
) -> None:
    write_local_overlay(cluster)  # `up` did; again in case it ran from another checkout
    docs = render(cluster, MANIFESTS / install)
    kinds = sorted({doc["kind"] for doc in docs})
    for kind in (
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ConfigMap",
    ):
        assert kind in kinds, (install, kinds)
    crd_names = {d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert crd_names == {
        "qiskitfunctions.serverless.qiskit.org",
        "serverlessjobs.serverless.qiskit.org",
        "serverlessqueues.serverless.qiskit.org",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }

    # Nothing of a kind its own CRDs define: refused on a cluster that never had them.
    defined = {d["spec"]["names"]["kind"] for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert not defined & set(kinds), (install, kinds)

    served = served_resources(cluster)
    for role in (d for d in docs if d["kind"] in ("ClusterRole", "Role")):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in "".join(rule.get(key, [])), (role["metadata"]["name"], rule)
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    top = resource.split("/")[0]
                    if group == "events.k8s.io" or (group, top) in served:
                        continue
                    if (group, resource) == ("serverless.qiskit.org", "qiskitfunctions/run"):
                        continue  # a right the operator checks, not an endpoint (access.py)
                    if group == "history.serverless.qiskit.org" and "APIService" in kinds:
                        continue  # served by the install's own APIService (the gateway)
                    pytest.fail(f"{role['metadata']['name']} names {group}/{resource}, not served")

    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"qiskit-serverless-operator", "qiskit-serverless-gateway"}
    # Every ConfigMap/Secret a pod reads is one the install renders (kustomize rewrites
    # generated names only within one namespace), except the Secrets a real site makes: the
    # S3 keys and the gateway's TLS certificate (cert-manager's, say).
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    site_made = {
        ("Secret", "qiskit-serverless-operator-s3"),
        ("Secret", "qiskit-serverless-gateway-tls"),
        ("Secret", "qiskit-serverless-archive"),  # optional: no archive, live jobs only
    }
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        refs = [
            ("ConfigMap", v["configMap"]["name"])
            for v in pod.get("volumes", [])
            if "configMap" in v
        ]
        refs += [
            ("Secret", v["secret"]["secretName"]) for v in pod.get("volumes", []) if "secret" in v
        ]
        for source in pod["containers"][0].get("envFrom", []):
            if "configMapRef" in source:
                refs.append(("ConfigMap", source["configMapRef"]["name"]))
            if "secretRef" in source:
                refs.append(("Secret", source["secretRef"]["name"]))
        for ref in refs:
            if install != "overlays/local" and ref in site_made:
                continue
            assert ref in names, (install, ref, sorted(names))
        image = pod["containers"][0]["image"]
        if install == "overlays/local":
            assert image == cluster["images"]["operator"]
        elif install == "overlays/production":
            assert image == "registry.example.com/qiskit-serverless/operator:0.1.0"

    out = dry_run(cluster, retarget(docs, namespace))
    assert out.count("(server dry run)") == len(docs), out


def test_argocd_kustomization_renders_and_its_configmap_validates(
    cluster: dict[str, Any], namespace: str
) -> None:
    docs = render(cluster, MANIFESTS / "argocd")
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    assert len(by_kind["Application"]) == 2
    (cm,) = by_kind["ConfigMap"]
    assert cm["metadata"]["name"] == "argocd-cm"  # no hash suffix: Argo CD reads this name
    lua = cm["data"]["resource.customizations.health.serverless.qiskit.org_ServerlessJob"]
    assert "hs.status" in lua
    # Argo CD's own CRDs are not installed here: the Applications are checked in
    # tests/unit/test_argocd_health.py; the ConfigMap is validated by the cluster.
    dry_run(cluster, retarget([cm], namespace))


def test_examples_folder_validates(cluster: dict[str, Any], crds: None, namespace: str) -> None:
    """`kubectl apply -f examples/` on a fresh install: what it holds passes the CRDs' schema."""
    result = kubectl(
        cluster,
        "-n",
        namespace,
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        str(REPO_ROOT / "examples"),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "qiskitfunction.serverless.qiskit.org/hello created (server dry run)" in result.stdout
    assert "serverlessjob.serverless.qiskit.org/hello created (server dry run)" in result.stdout
