"""Crash safety: SIGKILL the operator twice during 20 jobs; nothing lost, nothing doubled.
A new operator process with hundreds of jobs already present handles them all."""

from __future__ import annotations

import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, watch

from qiskit_serverless_operator import constants as c
from tests.kube import operator_with, wait_until
from tests.serverless import custom, get_job, make_function, make_job, wait_job

PROGRAM = """
import json, os, time
time.sleep(4)
os.makedirs(os.path.dirname(os.environ["RESULTS_PATH"]), exist_ok=True)
with open(os.environ["RESULTS_PATH"], "w") as f:
    json.dump({"job": os.environ["ENV_JOB_ID_GATEWAY"]}, f)
print("finished")
"""

JOBS = 20


def _record_pods(
    core: client.CoreV1Api, namespace: str, seen: set[str], stop: threading.Event
) -> None:
    while not stop.is_set():
        stream = watch.Watch()
        for event in stream.stream(
            core.list_namespaced_pod, namespace, label_selector=c.LABEL_JOB, timeout_seconds=5
        ):
            seen.add(event["object"].metadata.uid)
            if stop.is_set():
                stream.stop()
                break


def test_sigkill_in_the_middle_of_20_jobs(
    api_client: client.ApiClient, core: client.CoreV1Api, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "crashy", {"main.py": PROGRAM})
    pods: set[str] = set()
    stop = threading.Event()
    recorder = threading.Thread(
        target=_record_pods, args=(core, namespace, pods, stop), daemon=True
    )
    recorder.start()
    try:
        for i in range(JOBS):
            make_job(
                api,
                namespace,
                f"job-{i:02d}",
                "crashy",
                resources={"requests": {"cpu": "10m", "memory": "64Mi"}},
            )
            if i == JOBS // 2:
                operator.kill()  # mid-submission: some jobs started, some not even seen
        time.sleep(2)
        operator.start()
        # And again while jobs are running and finishing.
        wait_job(api, namespace, f"job-{JOBS - 1:02d}", {"RUNNING", "DONE"}, timeout=300)
        operator.kill()
        time.sleep(5)  # pods finish while nobody watches
        operator.start()
        statuses = [
            wait_job(api, namespace, f"job-{i:02d}", {"DONE", "ERROR", "CANCELED"}, timeout=420)[
                "status"
            ]
            for i in range(JOBS)
        ]
        time.sleep(3)  # let the recorder see any late (duplicate) pod
    finally:
        stop.set()
        recorder.join(timeout=15)
        if operator.proc is None or operator.proc.poll() is not None:
            operator.start()
    assert [s["phase"] for s in statuses] == ["DONE"] * JOBS, [s.get("message") for s in statuses]
    assert all("result" in s for s in statuses)
    assert len(pods) == JOBS, f"{len(pods)} pods were created for {JOBS} jobs"
    batch = client.BatchV1Api(core.api_client).list_namespaced_job(namespace).items
    assert len(batch) <= JOBS and all((j.status.failed or 0) == 0 for j in batch)
    # Each job's status points at its own UID's result.
    assert (
        len(
            {
                get_job(api, namespace, f"job-{i:02d}")["status"]["result"]["key"]
                for i in range(JOBS)
            }
        )
        == JOBS
    )


def test_metrics_report_jobs_by_phase_and_latencies(
    api_client: client.ApiClient, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "m", {"main.py": "print('m')"})
    make_job(api, namespace, "m-1", "m")
    wait_job(api, namespace, "m-1", {"DONE"})
    text = urllib.request.urlopen("http://127.0.0.1:9090/metrics", timeout=5).read().decode()
    done = [line for line in text.splitlines() if line.startswith('qso_jobs{phase="DONE"}')]
    assert done and float(done[0].split()[-1]) >= 1
    assert 'qso_job_transitions_total{phase="DONE"}' in text
    assert 'qso_job_phase_latency_seconds_count{phase="RUNNING"}' in text


# More jobs than any worker limit kopf was ever given here (200): with its index, kopf
# deadlocked at start-up whenever more objects than that were present (nolar/kopf#1243).
PRESENT = 300


def test_a_new_operator_with_hundreds_of_jobs_present_handles_every_one(
    api_client: client.ApiClient, cluster: dict[str, Any], namespace: str
) -> None:
    api = custom(api_client)
    with operator_with(cluster, "many-present") as operator:
        operator.stop()  # the jobs arrive while no operator runs (a rollout, a crash)
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda i: make_job(api, namespace, f"j-{i:03d}", "nowhere"), range(PRESENT)
                )
            )
        operator.start()

        def handled() -> list[dict[str, Any]] | None:
            items = api.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL)
            statuses = [item.get("status") or {} for item in items["items"]]
            ended = all(s.get("phase") in ("DONE", "ERROR", "CANCELED") for s in statuses)
            return statuses if ended else None

        statuses = wait_until(handled, timeout=300, what=f"all {PRESENT} jobs handled", interval=3)
    # Each one was looked at, and refused for what it is (no such function, after waiting
    # QSO_FUNCTION_WAIT_SECONDS from its creation for it to come).
    assert len(statuses) == PRESENT
    assert {(s["phase"], s.get("reason")) for s in statuses} == {("ERROR", "FunctionNotFound")}


def test_a_job_whose_batch_job_expired_while_no_operator_watched_ends_done(
    api_client: client.ApiClient, cluster: dict[str, Any], namespace: str
) -> None:
    """A finished batch Job is removed after QSO_FINISHED_POD_TTL_SECONDS; an operator that
    was down (or far behind) then finds no Job, but the saved result says how it ended."""
    api = custom(api_client)
    batch = client.BatchV1Api(api_client)
    program = "from qiskit_serverless import save_result\nsave_result({'ok': True})\n"
    with operator_with(cluster, "ttl", QSO_FINISHED_POD_TTL_SECONDS="1") as operator:
        make_function(api, namespace, "quick", {"main.py": program})
        make_job(api, namespace, "expired", "quick")
        wait_job(api, namespace, "expired", {"INITIALIZING", "RUNNING"}, timeout=120)
        operator.kill()

        def job_removed() -> bool:
            return not batch.list_namespaced_job(namespace).items

        wait_until(job_removed, timeout=180, what="the finished batch Job removed by its TTL")
        operator.start()
        status = wait_job(api, namespace, "expired", {"DONE", "ERROR"}, timeout=120)["status"]
    assert status["phase"] == "DONE", status
    assert "removed before the operator saw it end" in status["message"]
    assert status["result"]["size"] > 0
