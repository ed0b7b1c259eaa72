"""A function whose program fans out tasks with qiskit-serverless' distribute_task API
(written for its 0.36 signatures, unchanged). One program for every task test, so the suite
builds its image once: ``mode`` in the arguments picks what it does."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from qiskit_serverless_operator import constants as c
from tests.serverless import (
    TERMINAL,
    make_function,
    make_job,
    read_object,
    wait_function_phase,
    wait_job,
)

PROGRAM = """
import time
from qiskit_serverless import distribute_task, get, get_arguments, put, save_result

@distribute_task(target={"cpu": 0.1, "env_vars": {"GREETING": "hi"}})
def square(x, offset):
    import os, socket
    return {"value": x * x + offset, "host": socket.gethostname(), "env": os.environ["GREETING"]}

@distribute_task(target={"cpu": 0.1})
def boom(x):
    raise ValueError(f"bad input {x}")

@distribute_task(target={"cpu": 0.1})
def nap(seconds):
    time.sleep(seconds)
    return seconds

args = get_arguments()
mode = args["mode"]
if mode == "fan":
    offset = put(args["offset"])
    values = get([square(i, offset) for i in range(args["tasks"])])
    save_result({
        "values": [v["value"] for v in values],
        "hosts": [v["host"] for v in values],
        "env": sorted({v["env"] for v in values}),
    })
elif mode == "fail":
    get(boom(7))
elif mode == "slow":
    get([nap(600) for _ in range(2)])
elif mode == "pip":
    distribute_task(target={"pip": ["requests"]})
"""
FUNCTION = "fan-out"


def make_fan_out_function(api: client.CustomObjectsApi, namespace: str) -> None:
    make_function(api, namespace, FUNCTION, {"main.py": PROGRAM})
    wait_function_phase(api, namespace, FUNCTION, "Ready", timeout=300)


def start(api: client.CustomObjectsApi, namespace: str, name: str, **arguments: Any) -> None:
    make_job(
        api,
        namespace,
        name,
        FUNCTION,
        arguments={"inline": arguments},
        resources={"requests": {"cpu": "100m", "memory": "256Mi"}},
    )


def run_fan_out(
    api: client.CustomObjectsApi,
    cluster: dict[str, Any],
    namespace: str,
    tasks: int,
    timeout: float = 600,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Job ``fan``: ``tasks`` tasks mapped and gathered; its status and result."""
    make_fan_out_function(api, namespace)
    start(api, namespace, "fan", mode="fan", tasks=tasks, offset=100)
    status = wait_job(api, namespace, "fan", TERMINAL, timeout=timeout)["status"]
    assert status["phase"] == "DONE", status
    return status, json.loads(read_object(cluster, status["result"]))


def tasks_of(api: client.CustomObjectsApi, namespace: str, parent: str) -> list[dict[str, Any]]:
    """The ServerlessJobs of a job's tasks."""
    selector = f"{c.LABEL_TASK_PARENT}={parent}"
    return api.list_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, label_selector=selector
    )["items"]
