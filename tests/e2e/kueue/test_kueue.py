"""ServerlessJobs admitted by the real Kueue: a LocalQueue over a ClusterQueue whose quota holds
one job at a time. Nothing here decides admission but Kueue: the test only reads what Kueue
wrote (its Workloads' conditions) and what the operator made of it."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from qiskit_serverless_operator import constants as c
from tests.cluster import kueue as kueue_install
from tests.kube import wait_until
from tests.serverless import custom, get_job, make_function, make_job, wait_function_phase

KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta2"
FLAVOR = "qso-default"

SLEEPY = """
import time
from qiskit_serverless import get_arguments, save_result
args = get_arguments()
time.sleep(args["seconds"])
save_result({"slept": args["seconds"]})
"""


def _create_if_missing(api: client.CustomObjectsApi, plural: str, body: dict[str, Any]) -> None:
    try:
        api.create_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, plural, body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise


@pytest.fixture
def local_queue(
    api_client: client.ApiClient, namespace: str, kueue: None
) -> Iterator[tuple[str, str]]:
    """A LocalQueue ``team`` in the test's namespace, over a ClusterQueue of its own whose
    quota (100m CPU) admits one job of 100m at a time; yields (local queue, cluster queue)."""
    api = custom(api_client)
    key, value = kueue_install.NAMESPACE_LABEL
    client.CoreV1Api(api_client).patch_namespace(namespace, {"metadata": {"labels": {key: value}}})
    _create_if_missing(
        api,
        "resourceflavors",
        {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}",
            "kind": "ResourceFlavor",
            "metadata": {"name": FLAVOR},
        },
    )
    cluster_queue = f"cq-{uuid.uuid4().hex[:8]}"
    api.create_cluster_custom_object(
        KUEUE_GROUP,
        KUEUE_VERSION,
        "clusterqueues",
        {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}",
            "kind": "ClusterQueue",
            "metadata": {"name": cluster_queue},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                # A job of a higher WorkloadPriorityClass evicts one of a lower.
                "preemption": {"withinClusterQueue": "LowerPriority"},
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu", "memory"],
                        "flavors": [
                            {
                                "name": FLAVOR,
                                "resources": [
                                    {"name": "cpu", "nominalQuota": "100m"},
                                    {"name": "memory", "nominalQuota": "1Gi"},
                                ],
                            }
                        ],
                    }
                ],
            },
        },
    )
    api.create_namespaced_custom_object(
        KUEUE_GROUP,
        KUEUE_VERSION,
        namespace,
        "localqueues",
        {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}",
            "kind": "LocalQueue",
            "metadata": {"name": "team"},
            "spec": {"clusterQueue": cluster_queue},
        },
    )
    try:
        yield "team", cluster_queue
    finally:
        # Kueue's finalizer holds the ClusterQueue until no admitted workload remains: wait,
        # while Kueue still runs to remove it.
        api.delete_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", cluster_queue)
        wait_until(
            lambda: not _exists(api, "clusterqueues", cluster_queue),
            timeout=60,
            what=f"ClusterQueue {cluster_queue} deleted",
        )


def _exists(api: client.CustomObjectsApi, plural: str, name: str) -> bool:
    try:
        api.get_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, plural, name)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _submit(
    api: client.CustomObjectsApi,
    namespace: str,
    name: str,
    queue: str,
    seconds: int = 8,
    priority_class: str | None = None,
) -> None:
    labels = {c.LABEL_KUEUE_QUEUE: queue}
    if priority_class:
        labels[c.LABEL_KUEUE_PRIORITY_CLASS] = priority_class
    make_job(
        api,
        namespace,
        name,
        "sleepy",
        labels=labels,
        arguments={"inline": {"seconds": seconds}},
        resources={"requests": {"cpu": "100m", "memory": "256Mi"}},
    )


def _workload(api: client.CustomObjectsApi, namespace: str, job: str) -> dict[str, Any] | None:
    """Kueue's Workload for the ServerlessJob's batch Job (Kueue names it; find it by owner)."""
    items = api.list_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, namespace, "workloads")
    for item in items["items"]:
        owners = item["metadata"].get("ownerReferences") or []
        if any(o["kind"] == "Job" and o["name"] == f"sj-{job}" for o in owners):
            return item
    return None


def _condition(workload: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for condition in ((workload or {}).get("status") or {}).get("conditions") or []:
        if condition["type"] == kind:
            return condition
    return None


def _when(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_real_kueue_admits_jobs_within_its_quota_one_at_a_time(
    api_client: client.ApiClient, namespace: str, operator, local_queue: tuple[str, str]
) -> None:
    api = custom(api_client)
    batch = client.BatchV1Api(api_client)
    queue, cluster_queue = local_queue
    make_function(api, namespace, "sleepy", {"main.py": SLEEPY})
    wait_function_phase(api, namespace, "sleepy", "Ready", timeout=120)

    _submit(api, namespace, "first", queue)
    wait_until(
        lambda: _condition(_workload(api, namespace, "first"), "Admitted"),
        timeout=90,
        what="Kueue admitting the first job's Workload",
    )
    _submit(api, namespace, "second", queue)

    # The quota is taken: Kueue holds the second one, and the job says so.
    def held() -> dict[str, Any] | None:
        reserved = _condition(_workload(api, namespace, "second"), "QuotaReserved")
        status = get_job(api, namespace, "second").get("status") or {}
        if reserved and reserved["status"] == "False" and status.get("reason"):
            return {"reserved": reserved, "status": status}
        return None

    seen = wait_until(held, timeout=60, what="Kueue holding the second job")
    assert "insufficient" in seen["reserved"]["message"], seen["reserved"]
    assert seen["status"]["phase"] == "QUEUED", seen["status"]
    assert seen["status"]["reason"] == "AdmissionByKueue", seen["status"]
    assert f"LocalQueue {queue}" in seen["status"]["message"]
    assert batch.read_namespaced_job("sj-second", namespace).spec.suspend is True
    assert get_job(api, namespace, "first")["status"]["phase"] in ("INITIALIZING", "RUNNING")

    for name in ("first", "second"):
        wait_until(
            lambda name=name: get_job(api, namespace, name)["status"]["phase"] == "DONE",
            timeout=240,
            what=f"the {name} job DONE",
        )
    first = _workload(api, namespace, "first")
    second = _workload(api, namespace, "second")
    finished = _condition(first, "Finished")
    admitted = _condition(second, "Admitted")
    assert finished and admitted and admitted["status"] == "True", (first, second)
    # Kueue admitted the second only once the first had given its quota back.
    assert _when(admitted["lastTransitionTime"]) >= _when(finished["lastTransitionTime"])
    assert second["status"]["admission"]["clusterQueue"] == cluster_queue
    pods = client.CoreV1Api(api_client).list_namespaced_pod(
        namespace, label_selector=f"{c.LABEL_JOB}=second"
    )
    assert len(pods.items) == 1, [p.metadata.name for p in pods.items]


def _priority_class(api: client.CustomObjectsApi, name: str, value: int) -> None:
    _create_if_missing(
        api,
        "workloadpriorityclasses",
        {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}",
            "kind": "WorkloadPriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": "qiskit-serverless-operator tests",
        },
    )


def _phase(api: client.CustomObjectsApi, namespace: str, name: str) -> str | None:
    return (get_job(api, namespace, name).get("status") or {}).get("phase")


def test_real_kueue_preempts_a_lower_priority_job_which_runs_again_later(
    api_client: client.ApiClient, namespace: str, operator, local_queue: tuple[str, str]
) -> None:
    api = custom(api_client)
    core = client.CoreV1Api(api_client)
    queue, _ = local_queue
    _priority_class(api, "qso-low", 100)
    _priority_class(api, "qso-high", 1000)
    make_function(api, namespace, "sleepy", {"main.py": SLEEPY})
    wait_function_phase(api, namespace, "sleepy", "Ready", timeout=120)

    _submit(api, namespace, "low", queue, seconds=20, priority_class="qso-low")
    wait_until(
        lambda: _phase(api, namespace, "low") == "RUNNING",
        timeout=120,
        what="the low-priority job RUNNING",
    )
    _submit(api, namespace, "high", queue, seconds=2, priority_class="qso-high")

    evicted = wait_until(
        lambda: _condition(_workload(api, namespace, "low"), "Evicted"),
        timeout=60,
        what="Kueue evicting the low-priority job's Workload",
    )
    assert evicted["reason"] == "Preempted", evicted
    status = wait_until(
        lambda: (
            (s := get_job(api, namespace, "low")["status"]).get("reason") == "EvictedByKueue" and s
        ),
        timeout=60,
        what="the low-priority job saying Kueue evicted it",
    )
    assert status["phase"] == "RUNNING", status  # phases never move backwards
    assert "runs again from the start" in status["message"]

    wait_until(
        lambda: _phase(api, namespace, "high") == "DONE", timeout=180, what="the high job DONE"
    )
    wait_until(
        lambda: _phase(api, namespace, "low") == "DONE",
        timeout=240,
        what="the low-priority job readmitted and DONE",
    )
    low = get_job(api, namespace, "low")["status"]
    assert low.get("reason") != "EvictedByKueue", low
    # Evicted once, so run twice: the first pod was removed by the Job controller.
    pods = core.list_namespaced_pod(namespace, label_selector=f"{c.LABEL_JOB}=low")
    assert len(pods.items) == 1, [p.metadata.name for p in pods.items]
    # The job is DONE on its program's exit code; Kueue finishes the Workload once the Job
    # controller has written the Job's verdict, a moment later.
    wait_until(
        lambda: (
            (_condition(_workload(api, namespace, "low"), "Finished") or {}).get("status") == "True"
        ),
        timeout=60,
        what="Kueue's Workload of the low job Finished",
    )
