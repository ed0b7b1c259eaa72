"""The admission queue on the real cluster: fair share between two authenticated users, the
limits, the reasons shown while jobs wait, and an operator restart in the middle.
The real Kueue admits jobs in tests/e2e/kueue."""

from __future__ import annotations

import datetime
import json
import threading
import time
from typing import Any

from kubernetes import client

from qiskit_serverless_operator import KubernetesClient
from qiskit_serverless_operator import constants as c
from qiskit_serverless_operator.controller import usage
from tests.kube import kubectl, new_service_account_client, operator_with, wait_until
from tests.serverless import custom, get_job, make_function, make_job, wait_function_phase

SLEEPY = """
import time
from qiskit_serverless import get_arguments, save_result
args = get_arguments()
time.sleep(args.get("seconds", 5))
print("slept", args.get("seconds", 5))
save_result({"n": args.get("n")})
"""


def _grant(api_client: client.ApiClient, namespace: str, *users: str) -> None:
    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="qiskit-user"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[c.GROUP],
                    resources=[c.JOB_PLURAL, c.FUNCTION_PLURAL],
                    verbs=["get", "list", "watch", "create", "patch", "delete"],
                ),
                client.V1PolicyRule(
                    api_groups=[""], resources=["secrets"], verbs=["get", "create", "patch"]
                ),
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="qiskit-user"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="qiskit-user"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name=user, namespace=namespace)
                for user in users
            ],
        ),
    )


def _jobs(api: client.CustomObjectsApi, namespace: str) -> dict[str, dict[str, Any]]:
    items = api.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL)
    return {item["metadata"]["name"]: item for item in items["items"]}


def _when(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_fair_share_limits_reasons_and_a_restart(
    api_client: client.ApiClient, cluster: dict, namespace: str, crds: None
) -> None:
    api = custom(api_client)
    _grant(api_client, namespace, "alice", "bob")
    alice = KubernetesClient(
        namespace, api_client=new_service_account_client(api_client, namespace, "alice")
    )
    bob = KubernetesClient(
        namespace, api_client=new_service_account_client(api_client, namespace, "bob")
    )
    alice.progress = bob.progress = False
    alice_user = f"system:serviceaccount:{namespace}:alice"
    assert alice.user == alice_user

    # A user limit of 2, and room for 2 jobs of 500m in all: the third job to start must be
    # chosen by fair share.
    with operator_with(
        cluster, "fair-share", QSO_MAX_RUNNING_PER_USER="2", QSO_CAPACITY_CPU="1000m"
    ) as operator:
        make_function(api, namespace, "sleepy", {"main.py": SLEEPY})
        wait_function_phase(api, namespace, "sleepy", "Ready")
        messages: dict[str, set[str]] = {}
        positions: dict[str, set[int]] = {}
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                for name, job in _jobs(api, namespace).items():
                    status = job.get("status") or {}
                    if status.get("phase") == "QUEUED" and status.get("message"):
                        messages.setdefault(name, set()).add(status["message"])
                    if status.get("queuePosition"):
                        positions.setdefault(name, set()).add(status["queuePosition"])
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            a_jobs = [alice.run("sleepy", {"seconds": 6, "n": i}) for i in range(6)]
            by_id = {item["metadata"]["uid"]: name for name, item in _jobs(api, namespace).items()}
            a_names = [by_id[job.job_id] for job in a_jobs]
            wait_until(
                lambda: (
                    sum(
                        bool((_jobs(api, namespace)[n].get("status") or {}).get("admittedAt"))
                        for n in a_names
                    )
                    == 2
                ),
                timeout=60,
                what="alice's first two jobs admitted",
            )
            b_job = bob.run("sleepy", {"seconds": 6, "n": 99})
            b_name = {item["metadata"]["uid"]: n for n, item in _jobs(api, namespace).items()}[
                b_job.job_id
            ]
            wait_until(
                lambda: "cluster capacity" in str(messages.get(b_name)),
                timeout=30,
                what="bob's job waiting for capacity",
            )
            # The operator dies (SIGKILL) and comes back while jobs run and wait.
            operator.kill()
            time.sleep(2)
            operator.start()
            for name in [*a_names, b_name]:
                wait_until(
                    lambda name=name: (
                        (get_job(api, namespace, name).get("status") or {}).get("phase")
                        in c.TERMINAL_JOB_PHASES
                    ),
                    timeout=240,
                    what=f"job {name} to finish",
                )
        finally:
            stop.set()
            watcher.join(5)

    # Every finished job's run reaches the ledger (a few jobs per write, every few seconds).
    wait_until(
        lambda: all(
            (job.get("status") or {}).get("accounted") for job in _jobs(api, namespace).values()
        ),
        timeout=60,
        what="every job counted in the usage ledger",
    )
    jobs = _jobs(api, namespace)
    assert {jobs[n]["status"]["phase"] for n in [*a_names, b_name]} == {"DONE"}, {
        n: jobs[n]["status"].get("message") for n in jobs
    }
    for name in [*a_names, b_name]:
        assert jobs[name]["status"]["user"] == (alice_user if name in a_names else bob.user)
    admitted = {n: _when(jobs[n]["status"]["admittedAt"]) for n in [*a_names, b_name]}
    # Bob's one job went before alice's third, although she asked first.
    assert admitted[b_name] < admitted[a_names[2]], admitted
    assert admitted[a_names[0]] < admitted[b_name] and admitted[a_names[1]] < admitted[b_name]
    # Limits held all along (restart included): never more than 2 at once, 2 of alice's.
    for name, start in admitted.items():
        overlapping = [
            other
            for other, other_start in admitted.items()
            if other != name
            and other_start <= start < _when(jobs[other]["status"]["completionTime"])
        ]
        assert len(overlapping) <= 1, (name, overlapping)
    # Each waiting job said why.
    for name in a_names[2:]:
        assert any("user limit 2/2 running" in m for m in messages[name]), messages[name]
        assert positions.get(name), name
    assert any(
        m.startswith("waiting: cluster capacity: cpu 1/1") or "cluster capacity" in m
        for m in messages[b_name]
    ), messages[b_name]
    # No job admitted twice: one pod per job, even across the restart.
    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace).items
    per_job: dict[str, int] = {}
    for pod in pods:
        job_label = (pod.metadata.labels or {}).get(c.LABEL_JOB)
        if job_label:
            per_job[job_label] = per_job.get(job_label, 0) + 1
    assert all(count == 1 for count in per_job.values()), per_job
    assert set(per_job) == {*a_names, b_name}

    queue = json.loads(kubectl(cluster, "get", "sq", "default", "-o", "json").stdout)["status"]
    # From the ledger: the summary's users are the 100 least-used, and a cluster that ran
    # many tests within the usage half-life has more users than that (one run here: 154).
    half_life = queue["limits"]["usageHalfLifeSeconds"]
    used = usage.decayed_usage(queue["ledger"], time.time(), half_life)
    assert used[alice_user] > used[bob.user] > 0
    shown = {u["user"]: u for u in queue["users"]}
    assert len(shown) == 100 or {alice_user, bob.user} <= set(shown), shown
    table = kubectl(cluster, "get", "sq").stdout
    assert table.split()[:6] == ["NAME", "RUNNING", "WAITING", "CPU", "MEMORY", "USERS"]


def test_a_job_naming_someone_else_as_submitter_is_refused(
    api_client: client.ApiClient, namespace: str, crds: None
) -> None:
    api = custom(api_client)
    try:
        api.create_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            namespace,
            c.JOB_PLURAL,
            {
                "apiVersion": c.API_VERSION,
                "kind": c.JOB_KIND,
                "metadata": {
                    "name": "forged",
                    "annotations": {c.ANNOTATION_SUBMITTER: "somebody-else"},
                },
                "spec": {"function": "x"},
            },
        )
    except client.ApiException as exc:
        assert exc.status == 403, exc
        assert "must be your own user name" in exc.body
    else:
        raise AssertionError("a forged submitter was accepted")
    # Without the annotation the job is accepted and counts as the namespace's user; the
    # annotation cannot be added afterwards.
    make_job(api, namespace, "plain", "x")
    try:
        api.patch_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            namespace,
            c.JOB_PLURAL,
            "plain",
            {"metadata": {"annotations": {c.ANNOTATION_SUBMITTER: "admin"}}},
        )
    except client.ApiException as exc:
        assert exc.status == 403 and "cannot be added, changed or removed" in exc.body
    else:
        raise AssertionError("the submitter annotation was added after creation")


def test_a_job_bigger_than_the_capacity_fails_fast_with_the_reason(
    api_client: client.ApiClient, cluster: dict, namespace: str, crds: None
) -> None:
    api = custom(api_client)
    with operator_with(cluster, "capacity", QSO_CAPACITY_CPU="1000m"):
        make_function(api, namespace, "sleepy", {"main.py": SLEEPY})
        wait_function_phase(api, namespace, "sleepy", "Ready")
        make_job(api, namespace, "huge", "sleepy", resources={"requests": {"cpu": "4"}})
        status = wait_until(
            lambda: (
                (s := get_job(api, namespace, "huge").get("status") or {}).get("phase") == "ERROR"
                and s
            ),
            timeout=60,
            what="the oversized job to end in ERROR",
        )
    assert status["reason"] == "Unschedulable"
    assert "requests cpu 4, more than the cluster's capacity for jobs (1)" in status["message"]
    assert not client.CoreV1Api(api_client).list_namespaced_pod(namespace).items


def test_strict_fifo_holds_the_capacity_for_a_large_job(
    api_client: client.ApiClient, cluster: dict, namespace: str, crds: None
) -> None:
    """StrictFIFO: a job the cluster has no room for yet is not passed by a smaller, later
    one that would fit; the later one says what it waits for, and starts after it."""
    api = custom(api_client)
    with operator_with(
        cluster, "strict-fifo", QSO_CAPACITY_CPU="1000m", QSO_QUEUEING_STRATEGY="StrictFIFO"
    ):
        make_function(api, namespace, "sleepy", {"main.py": SLEEPY})
        wait_function_phase(api, namespace, "sleepy", "Ready")
        cpu = {"requests": {"cpu": "500m", "memory": "256Mi"}}
        make_job(
            api, namespace, "first", "sleepy", resources=cpu, arguments={"inline": {"seconds": 15}}
        )
        wait_until(
            lambda: (get_job(api, namespace, "first").get("status") or {}).get("admittedAt"),
            timeout=60,
            what="the first job admitted",
        )
        whole = {"requests": {"cpu": "1", "memory": "256Mi"}}
        make_job(
            api, namespace, "big", "sleepy", resources=whole, arguments={"inline": {"seconds": 1}}
        )
        time.sleep(1.5)  # a tick apart: "big" is ahead in the order by submission time
        make_job(
            api, namespace, "small", "sleepy", resources=cpu, arguments={"inline": {"seconds": 1}}
        )
        held = wait_until(
            lambda: (
                "held for"
                in (s := get_job(api, namespace, "small").get("status") or {}).get("message", "")
                and s
            ),
            timeout=30,
            what="the small job to say the capacity is held for the big one",
        )
        assert held["message"] == (
            f"waiting: cluster capacity: held for {namespace}/big, ahead in the queue; position 2"
        )
        assert not held.get("admittedAt")
        big = get_job(api, namespace, "big")["status"]
        assert big["message"].startswith("waiting: cluster capacity: cpu 500m/1 in use")
        queue = api.get_cluster_custom_object(c.GROUP, c.VERSION, c.QUEUE_PLURAL, c.QUEUE_NAME)
        assert queue["status"]["limits"]["queueingStrategy"] == "StrictFIFO"

        finished = wait_until(
            lambda: (
                all((j.get("status") or {}).get("phase") == "DONE" for j in jobs.values()) and jobs
                if len(jobs := _jobs(api, namespace)) == 3
                else None
            ),
            timeout=240,
            what="all three jobs DONE",
        )
    admitted = {name: _when(job["status"]["admittedAt"]) for name, job in finished.items()}
    assert admitted["first"] < admitted["big"] < admitted["small"]
