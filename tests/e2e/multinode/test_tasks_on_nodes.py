"""Sixteen tasks of one job over three nodes (the task pods spread by their job's label),
gathered by the job: qiskit-serverless' distribute_task code, unchanged."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from kubernetes import client, watch

from qiskit_serverless_operator import constants as c
from tests.fan_out import run_fan_out, tasks_of
from tests.serverless import custom


class _TaskPodNodes(threading.Thread):
    """The node of every task pod of job ``fan`` (pods go away after their TTL)."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        super().__init__(daemon=True)
        self.core, self.namespace = core, namespace
        self.nodes: dict[str, str] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                for event in watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=f"{c.LABEL_TASK_PARENT}=fan",
                    timeout_seconds=10,
                ):
                    pod = event["object"]
                    if pod.spec.node_name:
                        self.nodes[pod.metadata.name] = pod.spec.node_name
            except Exception:  # a watch cut short: watch again
                continue


def test_sixteen_tasks_spread_over_three_nodes_and_are_gathered(
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    cluster: dict[str, Any],
    namespace: str,
    cluster_nodes: list[dict[str, str]],
    operator,
) -> None:
    api = custom(api_client)
    pods = _TaskPodNodes(core, namespace)
    pods.start()
    try:
        _, result = run_fan_out(api, cluster, namespace, tasks=16, timeout=900)
    finally:
        pods.stop.set()
    assert result["values"] == [i * i + 100 for i in range(16)]
    hosts = result["hosts"]
    assert len(set(hosts)) == 16, hosts  # one pod per task
    per_node = Counter(pods.nodes[host] for host in hosts)
    print("task pods per node:", dict(per_node))
    assert set(per_node) == {n["name"] for n in cluster_nodes}, per_node
    assert all(t["status"]["phase"] == "DONE" for t in tasks_of(api, namespace, "fan"))
