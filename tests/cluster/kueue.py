"""Real Kueue in the local cluster: its controller-manager built from sigs.k8s.io/kueue and run
from Kueue's own manifests (``config/default`` in the module), for the tests in tests/e2e/kueue.

What the harness changes in those manifests, and why:

- the image: ours, the binary of ``gobuild/kueue`` in an otherwise empty image in the local
  registry (the published image is not pulled: the cluster pulls from nowhere else);
- the visibility API's APIServices are left out: the tests do not need Kueue's visibility API
  (pending workloads), and an aggregated API whose server is down (Kueue restarting) makes
  API discovery fail for every client;
- Kueue's webhooks on kinds that are not its own (Pods, Jobs, Deployments, StatefulSets...)
  are limited to namespaces labelled ``qso.test/kueue=enabled``: they fail closed, so while
  Kueue restarts, every other test's batch Jobs and pods would be refused. A production
  cluster installs Kueue's manifests unchanged; our operator needs nothing of it but the
  batch/job integration (docs/operator.md, "Kueue").

Everything else (the configuration, the internal certificates, RBAC, CRDs) is Kueue's.
"""

from __future__ import annotations

import json
import time
from typing import Any

import yaml

from . import gobuild, images
from .cluster import apply_docs, kubectl
from .config import Paths
from .progress import say

VERSION = "v0.17.0"
NAMESPACE = "kueue-system"
DEPLOYMENT = "kueue-controller-manager"
# Namespaces whose Jobs and pods Kueue's webhooks see (the module docstring says why).
NAMESPACE_LABEL = ("qso.test/kueue", "enabled")
_OWN_GROUP_SUFFIX = "kueue.x-k8s.io"


def _own_kind(webhook: dict[str, Any]) -> bool:
    return all(
        group.endswith(_OWN_GROUP_SUFFIX)
        for rule in webhook.get("rules", [])
        for group in rule.get("apiGroups", [])
    )


def manifests(rendered: str, image: str) -> list[dict[str, Any]]:
    """Kueue's ``config/default``, as rendered by kustomize, with the harness's changes."""
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    out = []
    key, value = NAMESPACE_LABEL
    for doc in docs:
        kind = doc["kind"]
        if kind == "APIService":
            continue
        if kind == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                if container["name"] == "manager":
                    container["image"] = image
                    container["imagePullPolicy"] = "IfNotPresent"
                    container["command"] = ["/kueue"]
        if kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            for webhook in doc["webhooks"]:
                if not _own_kind(webhook):
                    webhook["namespaceSelector"] = {"matchLabels": {key: value}}
        out.append(doc)
    if not any(d["kind"] == "Deployment" for d in out):
        raise RuntimeError("Kueue's config/default rendered no Deployment")
    return out


def _webhook_answers(paths: Paths) -> bool:
    """A server-side dry run of a ResourceFlavor goes through Kueue's webhooks."""
    flavor = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "ResourceFlavor",
        "metadata": {"name": "qso-webhook-probe"},
    }
    out = kubectl(
        paths, "create", "--dry-run=server", "-f", "-", input=json.dumps(flavor), check=False
    )
    return out.returncode == 0


def install(paths: Paths, timeout: float = 300) -> None:
    """Build (cached), push and apply Kueue; return once its webhooks answer."""
    binary = gobuild.build(paths, gobuild.KUEUE) / "kueue"
    # Kueue's published image runs as the distroless nonroot user, as its manifests require.
    image = images.binary_image(paths, "kueue", binary, user="65532:65532")
    images.push(paths, image)
    rendered = kubectl(
        paths,
        "kustomize",
        str(gobuild.module_source(gobuild.KUEUE, "sigs.k8s.io/kueue") / "config" / "default"),
    ).stdout
    docs = manifests(rendered, image.ref)
    say(f"installing Kueue {VERSION} ({image.ref})")
    apply_docs(paths, docs, "applying Kueue's manifests")
    rollout = kubectl(
        paths,
        "-n",
        NAMESPACE,
        "rollout",
        "status",
        f"deployment/{DEPLOYMENT}",
        f"--timeout={int(timeout)}s",
        check=False,
    )
    if rollout.returncode != 0:
        pods = kubectl(paths, "-n", NAMESPACE, "get", "pods", check=False).stdout
        raise RuntimeError(f"Kueue did not roll out: {rollout.stderr.strip()}\n{pods}")
    # Ready is not enough: the internal certificates reach the webhook configurations a
    # few seconds after the pod starts, and until then every admission call fails.
    deadline = time.monotonic() + timeout
    while not _webhook_answers(paths):
        if time.monotonic() > deadline:
            raise RuntimeError("Kueue's webhooks did not answer")
        time.sleep(2)
    say("Kueue is running and its webhooks answer")


def pause(paths: Paths) -> None:
    """Stop Kueue and remove its webhook configurations, keeping its CRDs and objects: the
    other tiers get the node's CPU back (Kueue requests 500m), and no webhook of a stopped
    Kueue refuses anything. ``install`` brings all of it back."""
    kubectl(
        paths, "-n", NAMESPACE, "scale", f"deployment/{DEPLOYMENT}", "--replicas=0", check=False
    )
    kubectl(
        paths,
        "delete",
        "--ignore-not-found",
        "mutatingwebhookconfiguration/kueue-mutating-webhook-configuration",
        "validatingwebhookconfiguration/kueue-validating-webhook-configuration",
        check=False,
    )
