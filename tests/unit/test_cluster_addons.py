"""The harness's changes to Kueue's manifests and Argo CD's settings (tests/cluster/kueue.py,
argocd.py), on small stand-ins for what kustomize renders."""

from __future__ import annotations

import pytest
import yaml

from tests.cluster import argocd, kueue

RENDERED_KUEUE = """
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta2.visibility.kueue.x-k8s.io}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kueue-controller-manager, namespace: kueue-system}
spec:
  template:
    spec:
      containers:
      - name: manager
        image: upstream/kueue:main
        imagePullPolicy: Always
        command: [/manager]
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: kueue-mutating-webhook-configuration}
webhooks:
- name: mjob.kb.io
  rules: [{apiGroups: [batch], resources: [jobs]}]
- name: mpod.kb.io
  namespaceSelector:
    matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system]}]
  rules: [{apiGroups: [""], resources: [pods]}]
- name: mworkload.kb.io
  rules: [{apiGroups: [kueue.x-k8s.io], resources: [workloads]}]
"""


def test_kueue_runs_our_image_without_the_aggregated_api_and_scoped_webhooks() -> None:
    docs = kueue.manifests(RENDERED_KUEUE, "registry/qso/kueue:abc")
    assert [d["kind"] for d in docs] == ["Deployment", "MutatingWebhookConfiguration"]
    (container,) = docs[0]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry/qso/kueue:abc"
    assert container["command"] == ["/kueue"] and container["imagePullPolicy"] == "IfNotPresent"
    hooks = {w["name"]: w for w in docs[1]["webhooks"]}
    key, value = kueue.NAMESPACE_LABEL
    for name in ("mjob.kb.io", "mpod.kb.io"):
        assert hooks[name]["namespaceSelector"] == {"matchLabels": {key: value}}
    # Kueue's own kinds keep their webhooks everywhere: nobody else creates them.
    assert "namespaceSelector" not in hooks["mworkload.kb.io"]


def test_kueue_manifests_without_a_deployment_are_refused() -> None:
    with pytest.raises(RuntimeError, match="no Deployment"):
        kueue.manifests("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n", "img")


def test_argocd_settings_keep_our_health_checks_and_poll_every_10_s() -> None:
    rendered = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "namespace": "argocd"},
            "data": {"resource.customizations.health.serverless.qiskit.org_QiskitFunction": "x"},
        }
    )
    docs = {d["kind"] + "/" + d["metadata"]["name"]: d for d in argocd.settings(rendered)}
    cm = docs["ConfigMap/argocd-cm"]["data"]
    assert cm["resource.customizations.health.serverless.qiskit.org_QiskitFunction"] == "x"
    assert cm["timeout.reconciliation"] == "10s"
    assert docs["AppProject/default"]["spec"]["sourceRepos"] == ["*"]
    assert docs["Secret/argocd-secret"]["stringData"]["server.secretkey"]


def test_the_argocd_application_is_ours_pointed_at_the_test_repository() -> None:
    app = argocd.application("functions-t1", "t1", "t1")
    assert app["spec"]["source"]["repoURL"].startswith("git://127.0.0.1:")
    assert app["spec"]["source"]["repoURL"].endswith("/t1.git")
    assert app["spec"]["destination"]["namespace"] == "t1"
    assert app["spec"]["syncPolicy"]["automated"]["prune"] is True
    kinds = {d["kind"] for d in app["spec"]["ignoreDifferences"]}
    assert kinds == {"QiskitFunction", "ServerlessJob"}
