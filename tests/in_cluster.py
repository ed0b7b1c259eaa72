"""The in-cluster install for tests: `kubectl apply -k manifests/overlays/local` (two operator
replicas, two REST gateway replicas), and clients of the REST gateway as users make them."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from kubernetes import client

from tests.cluster.config import Paths
from tests.cluster.install import DEPLOYMENT, GATEWAY, NAMESPACE, uninstall, write_local_overlay
from tests.kube import REPO_ROOT, SESSION_OPERATOR, kubectl, wait_until

OVERLAY = REPO_ROOT / "manifests" / "overlays" / "local"
PEERING = "qiskit-serverless-operator"


def pods(cluster: dict[str, Any], component: str) -> list[dict[str, Any]]:
    out = kubectl(
        cluster,
        "-n",
        NAMESPACE,
        "get",
        "pods",
        "-l",
        f"app.kubernetes.io/name=qiskit-serverless-operator,app.kubernetes.io/component={component}",
        "-o",
        "json",
    ).stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def operator_pods(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    return pods(cluster, "operator")


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ready_replicas(cluster: dict[str, Any], component: str = "operator") -> int:
    return sum(ready(p) for p in pods(cluster, component))


def active_replica(cluster: dict[str, Any]) -> str | None:
    """The pod kopf peering lets act: the live peer with the highest priority (POD_ID)."""
    out = kubectl(cluster, "get", "clusterkopfpeering", PEERING, "-o", "json").stdout
    peers = json.loads(out).get("status") or {}
    names = {p["metadata"]["name"] for p in operator_pods(cluster)}
    live = [(info["priority"], name) for name, info in peers.items() if name in names]
    return max(live)[1] if live else None


@contextlib.contextmanager
def installed(cluster: dict[str, Any]) -> Iterator[list[str]]:
    """The operator and the gateway installed from the local overlay, the session's own
    operator paused meanwhile; yields a list the tests add their namespaces to, whose jobs
    and functions the in-cluster operator finishes before it is removed."""
    paused = [proc for proc in SESSION_OPERATOR if proc.running]
    for proc in paused:
        proc.stop()
    namespaces: list[str] = []
    write_local_overlay(cluster)  # `up` did; again in case it ran from another checkout
    # A namespace still terminating from an earlier uninstall refuses new objects.
    kubectl(
        cluster, "wait", "--for=delete", f"namespace/{NAMESPACE}", "--timeout=180s", check=False
    )
    try:
        applied = kubectl(
            cluster, "apply", "--server-side", "--force-conflicts", "-k", str(OVERLAY)
        )
        for deployment in (DEPLOYMENT, GATEWAY):
            assert f"deployment.apps/{deployment} serverside-applied" in applied.stdout
            kubectl(
                cluster,
                "-n",
                NAMESPACE,
                "rollout",
                "status",
                f"deployment/{deployment}",
                "--timeout=300s",
            )
        for component in ("operator", "gateway"):
            wait_until(
                lambda component=component: ready_replicas(cluster, component) == 2,
                timeout=120,
                what=f"two Ready {component} replicas",
            )
        wait_until(lambda: active_replica(cluster), timeout=60, what="an active replica")
        yield namespaces
    finally:
        for ns in namespaces:
            kubectl(
                cluster,
                "-n",
                ns,
                "delete",
                "sj,qf",
                "--all",
                "--wait",
                "--timeout=120s",
                check=False,
            )
        uninstall(Paths.from_env())
        for proc in paused:
            proc.start()


def service_account_token(
    api_client: client.ApiClient, namespace: str, name: str, role: str | None = "edit"
) -> str:
    """A fresh ServiceAccount in ``namespace`` (bound to the built-in ClusterRole ``role`` in
    that namespace, if given) and a token for it, as `kubectl create token` makes."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    if role:
        client.RbacAuthorizationV1Api(api_client).create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name=f"{name}-{role}"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=namespace)
                ],
            ),
        )
    return core.create_namespaced_service_account_token(
        name,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        ),
    ).status.token
