"""distribute_task / get / put in a job's program: each task a ServerlessJob of its own
(runtime/tasks.py), owned by the job, stopped with it, counted in its user's queue."""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes import client

from qiskit_serverless_operator import constants as c
from tests.fan_out import FUNCTION, make_fan_out_function, run_fan_out, start, tasks_of
from tests.kube import operator_with, wait_until
from tests.serverless import (
    TERMINAL,
    custom,
    get_job,
    make_job,
    wait_job,
)


def test_a_program_maps_tasks_and_gathers_them(
    api_client: client.ApiClient, cluster: dict[str, Any], namespace: str, operator
) -> None:
    api = custom(api_client)
    _, result = run_fan_out(api, cluster, namespace, tasks=4)
    assert result["values"] == [i * i + 100 for i in range(4)]
    assert len(set(result["hosts"])) == 4  # a pod each
    assert result["env"] == ["hi"]  # the Target's env_vars
    parent = get_job(api, namespace, "fan")
    tasks = tasks_of(api, namespace, "fan")
    assert sorted(t["spec"]["task"]["index"] for t in tasks) == [0, 1, 2, 3]
    for task in tasks:
        assert task["status"]["phase"] == "DONE", task["status"]
        (owner,) = task["metadata"]["ownerReferences"]
        assert owner["uid"] == parent["metadata"]["uid"] and owner["kind"] == c.JOB_KIND
        assert task["spec"]["resources"]["requests"]["cpu"] == "100m"
        assert task["status"]["user"] == parent["status"]["user"]
    # Deleting the job deletes its tasks (owner references: the garbage collector).
    api.delete_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, "fan")
    wait_until(lambda: not tasks_of(api, namespace, "fan"), timeout=120, what="tasks collected")


def test_a_failing_task_fails_its_job_with_the_task_s_reason(
    api_client: client.ApiClient, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_fan_out_function(api, namespace)
    start(api, namespace, "fails", mode="fail")
    status = wait_job(api, namespace, "fails", TERMINAL, timeout=300)["status"]
    assert status["phase"] == "ERROR" and status["reason"] == "ProgramFailed", status
    assert "TaskError" in status["message"] and "task 0 (fails-t0) ended ERROR" in status["message"]
    assert "bad input 7" in status["message"]  # the task's own traceback, passed on
    (task,) = tasks_of(api, namespace, "fails")
    assert task["status"]["reason"] == "ProgramFailed"


def test_stopping_a_job_stops_its_tasks(
    api_client: client.ApiClient, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_fan_out_function(api, namespace)
    start(api, namespace, "slow-1", mode="slow")
    wait_until(
        lambda: (
            len(
                [
                    t
                    for t in tasks_of(api, namespace, "slow-1")
                    if t.get("status", {}).get("phase") == "RUNNING"
                ]
            )
            == 2
        ),
        timeout=300,
        what="both tasks running",
    )
    api.patch_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, "slow-1", {"spec": {"stop": True}}
    )
    assert wait_job(api, namespace, "slow-1", TERMINAL)["status"]["phase"] == "CANCELED"
    for task in wait_until(
        lambda: (
            (ts := tasks_of(api, namespace, "slow-1"))
            and all(t.get("status", {}).get("phase") in TERMINAL for t in ts)
            and ts
        ),
        timeout=120,
        what="tasks ended",
    ):
        assert task["status"]["phase"] == "CANCELED", task["status"]
        assert task["status"]["reason"] == c.REASON_PARENT_ENDED
        assert "its job slow-1 ended (CANCELED)" in task["status"]["message"]


def test_bad_task_requests_and_hand_made_tasks_get_clear_errors(
    api_client: client.ApiClient, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_fan_out_function(api, namespace)
    start(api, namespace, "pip-1", mode="pip")
    status = wait_job(api, namespace, "pip-1", TERMINAL, timeout=300)["status"]
    assert status["phase"] == "ERROR", status
    assert "list its packages in the function's dependencies" in status["message"]
    # A task no job owns (made by hand, naming another job) never runs.
    make_job(api, namespace, "forged", FUNCTION, task={"parent": "pip-1", "index": 0})
    forged = wait_job(api, namespace, "forged", TERMINAL, timeout=120)["status"]
    assert forged["phase"] == "ERROR" and forged["reason"] == "InvalidTask", forged
    assert "must be owned by that job" in forged["message"]


def test_tasks_count_in_the_user_limit_without_deadlock(
    api_client: client.ApiClient, cluster: dict[str, Any], namespace: str
) -> None:
    """With one running job per user, the job's slot goes to its tasks while it waits on
    them: they run one at a time, and the job finishes."""
    api = custom(api_client)
    running_at_once: list[int] = []
    stop = threading.Event()

    def watch_running() -> None:
        while not stop.is_set():
            tasks = tasks_of(api, namespace, "fan")
            running_at_once.append(
                sum(1 for t in tasks if t.get("status", {}).get("phase") == "RUNNING")
            )
            time.sleep(0.5)

    with operator_with(cluster, "tasks-limit", QSO_MAX_RUNNING_PER_USER="1"):
        watcher = threading.Thread(target=watch_running, daemon=True)
        watcher.start()
        try:
            _, result = run_fan_out(api, cluster, namespace, tasks=3)
        finally:
            stop.set()
            watcher.join(timeout=5)
    assert result["values"] == [100, 101, 104]
    assert max(running_at_once) == 1, running_at_once
