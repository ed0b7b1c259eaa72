"""Sixteen tasks of one job over three nodes (the task pods spread by their job's label),
gathered by the job: qiskit-serverless' distribute_task code, unchanged."""

from __future__ import annotations

from collections import Counter
from typing import Any

from kubernetes import client

from qiskit_serverless_operator import constants as c
from tests.fan_out import run_fan_out, tasks_of
from tests.serverless import JobPodCounter, custom


def test_sixteen_tasks_spread_over_three_nodes_and_are_gathered(
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    cluster: dict[str, Any],
    namespace: str,
    cluster_nodes: list[dict[str, str]],
    operator,
) -> None:
    api = custom(api_client)
    pods = JobPodCounter(core, namespace, f"{c.LABEL_TASK_PARENT}=fan")
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
