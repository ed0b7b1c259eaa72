"""Jobs on three nodes: each job's pod on a different node (placed by cordoning the others,
as an administrator would), talking to each other pod to pod and saving results to S3."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Iterator
from typing import Any

from kubernetes import client

from qiskit_serverless_operator import constants as c
from tests.kube import wait_until
from tests.serverless import (
    TERMINAL,
    custom,
    make_function,
    make_job,
    read_object,
    wait_function_phase,
    wait_job,
)

PROGRAM = """
import socket
from qiskit_serverless import get_arguments, save_result

args = get_arguments()
if args["role"] == "server":
    server = socket.create_server(("0.0.0.0", args["port"]))
    server.settimeout(300)
    seen = []
    while len(seen) < args["clients"]:
        conn, (peer, _) = server.accept()
        with conn:
            name = conn.recv(256).decode()
            conn.sendall(f"hello {name}, this is {socket.gethostname()}".encode())
        seen.append({"name": name, "peer": peer})
    save_result({"seen": seen, "host": socket.gethostname()})
else:
    with socket.create_connection((args["peer"], args["port"]), timeout=60) as conn:
        conn.sendall(args["name"].encode())
        reply = conn.recv(256).decode()
    save_result({"reply": reply, "host": socket.gethostname()})
"""
PORT = 7070


@contextlib.contextmanager
def only_schedulable(core: client.CoreV1Api, nodes: list[str], keep: str) -> Iterator[None]:
    """Cordon every node but ``keep`` (the scheduler then has one choice), then uncordon."""
    others = [n for n in nodes if n != keep]
    for name in others:
        core.patch_node(name, {"spec": {"unschedulable": True}})
    try:
        yield
    finally:
        for name in others:
            core.patch_node(name, {"spec": {"unschedulable": False}})


def _pod(core: client.CoreV1Api, namespace: str, job: str) -> client.V1Pod:
    def placed() -> client.V1Pod | None:
        pods = core.list_namespaced_pod(namespace, label_selector=f"{c.LABEL_JOB}={job}").items
        return next((p for p in pods if p.spec.node_name and p.status.pod_ip), None)

    return wait_until(placed, timeout=240, what=f"job {job}'s pod placed with an address")


def _run_on(
    api: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
    nodes: list[str],
    node: str,
    name: str,
    arguments: dict[str, Any],
) -> client.V1Pod:
    with only_schedulable(core, nodes, node):
        make_job(api, namespace, name, "peers", arguments={"inline": arguments})
        pod = _pod(core, namespace, name)
    assert pod.spec.node_name == node, (name, pod.spec.node_name)
    return pod


def test_jobs_on_three_nodes_talk_pod_to_pod_and_save_to_s3(
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    cluster: dict[str, Any],
    namespace: str,
    cluster_nodes: list[dict[str, str]],
    operator,
) -> None:
    node_names = [n["name"] for n in cluster_nodes]
    assert len(node_names) == 3, node_names
    api = custom(api_client)
    ready = {n.metadata.name for n in core.list_node().items if _ready(n)}
    assert set(node_names) <= ready, (node_names, ready)
    make_function(api, namespace, "peers", {"main.py": PROGRAM})
    wait_function_phase(api, namespace, "peers", "Ready", timeout=300)

    node0, node1, node2 = node_names
    server = _run_on(
        api,
        core,
        namespace,
        node_names,
        node1,
        "server",
        {"role": "server", "port": PORT, "clients": 2},
    )
    wait_job(api, namespace, "server", {"RUNNING"}, timeout=240)
    clients = {
        name: _run_on(
            api,
            core,
            namespace,
            node_names,
            node,
            name,
            {"role": "client", "peer": server.status.pod_ip, "port": PORT, "name": name},
        )
        for name, node in (("from-node-2", node2), ("from-node-0", node0))
    }

    results = {}
    for name in ("server", *clients):
        status = wait_job(api, namespace, name, TERMINAL, timeout=300)["status"]
        assert status["phase"] == "DONE", (name, status)
        results[name] = json.loads(read_object(cluster, status["result"]))

    # Each client reached the server's pod on another node and got its answer back.
    for name, pod in clients.items():
        assert results[name]["reply"] == f"hello {name}, this is {server.metadata.name}"
        assert results[name]["host"] == pod.metadata.name
    # The server saw each client by its own pod address: no NAT between nodes.
    seen = {entry["name"]: entry["peer"] for entry in results["server"]["seen"]}
    assert seen == {name: pod.status.pod_ip for name, pod in clients.items()}
    # Three pods, three nodes, three pod ranges.
    subnets = {n["name"]: ipaddress.ip_network(n["pod_subnet"]) for n in cluster_nodes}
    for pod in (server, *clients.values()):
        address = ipaddress.ip_address(pod.status.pod_ip)
        assert address in subnets[pod.spec.node_name], (pod.spec.node_name, address)


def _ready(node: client.V1Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
