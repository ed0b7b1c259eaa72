"""Standby takeover, measured: the active operator replica dies for good (SIGKILL, pod
force-deleted) and a job made at that moment must be admitted by another replica. Used by
tests/e2e/in_cluster/test_failover.py (three kills) and benchmarks/failover.py (ten)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from qiskit_serverless_operator import constants as c
from tests import faults
from tests.in_cluster import active_replica, ready_replicas
from tests.kube import wait_until

PROGRAM = "from qiskit_serverless import save_result\nsave_result({'ok': True})\n"


@dataclass(frozen=True)
class Takeover:
    killed: str
    admitted_by: str | None
    seconds: float


def both_replicas_ready(cluster: dict[str, Any]) -> None:
    """Two Ready replicas, one of them active, and a moment for the standby to see it (so
    that each kill starts from the same state)."""
    wait_until(
        lambda: ready_replicas(cluster) == 2 and active_replica(cluster),
        timeout=180,
        what="two Ready operator replicas, one active",
    )
    time.sleep(3)


def takeover(
    cluster: dict[str, Any], api: client.CustomObjectsApi, namespace: str, function: str
) -> Takeover:
    both_replicas_ready(cluster)
    killed = faults.kill_active_operator_pod(cluster)
    started = time.monotonic()
    name = f"after-{uuid.uuid4().hex[:6]}"
    api.create_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        namespace,
        c.JOB_PLURAL,
        {
            "apiVersion": c.API_VERSION,
            "kind": c.JOB_KIND,
            "metadata": {"name": name},
            "spec": {
                "function": function,
                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
            },
        },
    )
    seconds = float("inf")
    while time.monotonic() - started < 180:
        body = api.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, name)
        if (body.get("status") or {}).get("admittedAt"):
            seconds = time.monotonic() - started
            break
        time.sleep(0.2)
    return Takeover(killed, faults.admitted_by(cluster, namespace, name), seconds)
