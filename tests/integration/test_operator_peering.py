"""Two operator replicas never both act: the lower-priority one pauses while the other lives."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from tests.kube import OperatorProcess, wait_until
from tests.serverless import custom, make_function, wait_function_phase


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_standby_replica_pauses_while_the_active_one_lives(
    api_client: client.ApiClient, cluster: dict, namespace: str, operator, tmp_path: Path
) -> None:
    api = custom(api_client)
    standby = OperatorProcess(
        cluster, tmp_path / "standby.log", priority=10, ports=(8001, 8081, 9091)
    )
    standby.start()
    try:
        wait_until(
            lambda: "Pausing operations in favour of" in _log(standby.log_path),
            timeout=30,
            what="the standby replica to pause",
        )
        make_function(api, namespace, "while-paused", {"main.py": "print(1)"})
        wait_function_phase(api, namespace, "while-paused", "Ready")
        # The active replica did that; the paused one did not touch the function.
        assert "while-paused" not in _log(standby.log_path)

        # The active replica crashes and comes back (as its Deployment restarts it):
        # work goes on, and the standby is still paused in favour of the new process.
        operator.kill()
        operator.start()
        make_function(api, namespace, "after-restart", {"main.py": "print(2)"})
        wait_function_phase(api, namespace, "after-restart", "Ready")
        assert "after-restart" not in _log(standby.log_path)
    finally:
        if operator.proc is None or operator.proc.poll() is not None:
            operator.start()
        standby.stop()


def test_a_deleted_peering_object_is_made_again(
    api_client: client.ApiClient, cluster: dict, operator
) -> None:
    """The operator makes its peering object (no install ships it: an object of a CRD in the
    same `kubectl apply -k` as the CRD is refused on a new cluster), and makes it again when
    something deletes it (an Argo CD prune of an install that still listed it)."""
    from tests.in_cluster import PEERING

    api = client.CustomObjectsApi(api_client)
    first = api.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", PEERING)
    assert first["metadata"]["labels"]["app.kubernetes.io/managed-by"] == (
        "qiskit-serverless-operator"
    )
    api.delete_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", PEERING)

    def remade() -> dict | None:
        try:
            body = api.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", PEERING)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return body if body["metadata"]["uid"] != first["metadata"]["uid"] else None

    wait_until(remade, timeout=30, what="the peering object made again")
