"""ServerlessJobs on the real cluster: apply, run, fail, stop, time out, delete."""

from __future__ import annotations

import json

from kubernetes import client

from qiskit_serverless_operator import constants as c
from qiskit_serverless_operator import files
from qiskit_serverless_operator.controller import jobspec
from tests.kube import REPO_ROOT, kubectl, wait_until
from tests.serverless import (
    custom,
    get_job,
    make_function,
    make_job,
    read_object,
    s3_client,
    wait_function_phase,
    wait_job,
)

HELLO = REPO_ROOT / "examples" / "hello.yaml"

SLEEPER = """
import time
print("started", flush=True)
time.sleep(600)
"""

FAILING = """
print("about to fail")
def compute():
    raise ValueError("the answer is not 42")
compute()
"""


def test_kubectl_apply_hello_reaches_done_and_result_and_logs_are_stored(
    api_client: client.ApiClient, cluster: dict, namespace: str, operator
) -> None:
    api = custom(api_client)
    applied = kubectl(cluster, "-n", namespace, "apply", "-f", str(HELLO))
    assert "serverlessjob.serverless.qiskit.org/hello created" in applied.stdout
    seen: list[str] = []
    job = wait_job(api, namespace, "hello", {"DONE", "ERROR"}, seen=seen)
    status = job["status"]
    assert status["phase"] == "DONE", status.get("message")
    assert seen[-1] == "DONE" and seen == sorted(seen, key=lambda p: c.PHASE_ORDER[p])

    result = json.loads(read_object(cluster, status["result"]))
    assert result == {"greeting": "hello, qiskit!", "count": 3}
    assert read_object(cluster, status["logs"]).decode().strip() == "hello, qiskit!"
    conditions = {cond["type"]: cond["status"] for cond in status["conditions"]}
    assert conditions["Succeeded"] == "True" and conditions["Reconciling"] == "False"

    table = kubectl(cluster, "-n", namespace, "get", "sj").stdout.splitlines()
    assert table[0].split() == ["NAME", "FUNCTION", "STATUS", "SUB-STATUS", "AGE", "DURATION"]
    assert table[1].split()[:3] == ["hello", "hello", "DONE"]

    # The pod is gone (removed here at once instead of after the TTL): reads still work.
    kubectl(cluster, "-n", namespace, "delete", "job.batch", "sj-hello", "--wait=true")
    assert json.loads(read_object(cluster, status["result"]))["count"] == 3
    assert get_job(api, namespace, "hello")["status"]["phase"] == "DONE"


def test_failing_program_ends_in_error_with_its_traceback_line(
    api_client: client.ApiClient, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "fails", {"main.py": FAILING})
    make_job(api, namespace, "fails-1", "fails")
    status = wait_job(api, namespace, "fails-1", {"DONE", "ERROR"})["status"]
    assert status["phase"] == "ERROR"
    assert status["reason"] == "ProgramFailed"
    assert "exited with code 1" in status["message"]
    assert "ValueError: the answer is not 42" in status["message"]
    assert "result" not in status


def test_stop_while_running_cancels_and_removes_the_pod(
    api_client: client.ApiClient, core: client.CoreV1Api, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "sleeper", {"main.py": SLEEPER})
    make_job(api, namespace, "long", "sleeper")
    wait_job(api, namespace, "long", {"RUNNING"}, timeout=180)
    api.patch_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, "long", {"spec": {"stop": True}}
    )
    status = wait_job(api, namespace, "long", {"CANCELED", "DONE", "ERROR"}, timeout=60)
    assert status["status"]["phase"] == "CANCELED"
    wait_until(
        lambda: not core.list_namespaced_pod(namespace, label_selector=f"{c.LABEL_JOB}=long").items,
        timeout=60,
        what="the stopped job's pod to be gone",
    )


def test_timeout_ends_in_error_saying_so(
    api_client: client.ApiClient, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "slow", {"main.py": SLEEPER})
    make_job(api, namespace, "slow-1", "slow", timeoutSeconds=20)
    status = wait_job(api, namespace, "slow-1", {"DONE", "ERROR", "CANCELED"}, timeout=180)[
        "status"
    ]
    assert status["phase"] == "ERROR"
    assert status["reason"] == "Timeout"
    assert "timeout of 20 s" in status["message"]


def test_deleting_a_job_removes_its_pod_secrets_and_stored_objects(
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    cluster: dict,
    namespace: str,
    operator,
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "sleeper", {"main.py": SLEEPER})
    make_job(api, namespace, "doomed", "sleeper", arguments={"inline": {"x": 1}})
    job = wait_job(api, namespace, "doomed", {"RUNNING"}, timeout=180)
    uid = job["metadata"]["uid"]
    # Put on by its start, before its batch Job (a job that never started has none).
    assert c.FINALIZER in job["metadata"]["finalizers"], job["metadata"]
    # The wrapper has streamed logs by now ("started" is printed first).
    s3 = s3_client(cluster)
    logs_key = f"jobs/{namespace}/{uid}/logs.txt"
    wait_until(
        lambda: s3.list_objects_v2(Bucket=cluster["s3"]["bucket"], Prefix=logs_key).get("KeyCount"),
        timeout=30,
        what="streamed logs in S3",
    )
    api.delete_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, "doomed")

    def all_gone() -> bool:
        pods = core.list_namespaced_pod(namespace, label_selector=f"{c.LABEL_JOB}=doomed")
        secrets = core.list_namespaced_secret(namespace, label_selector=f"{c.LABEL_JOB}=doomed")
        stored = s3.list_objects_v2(
            Bucket=cluster["s3"]["bucket"], Prefix=f"jobs/{namespace}/{uid}/"
        ).get("KeyCount", 0)
        return not pods.items and not secrets.items and stored == 0

    wait_until(all_gone, timeout=90, what="pod, Secrets and stored objects to be removed")


def test_phases_and_events_are_visible_to_kubectl(
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    cluster: dict,
    namespace: str,
    operator,
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "quick", {"main.py": "print('hi')"})
    make_job(api, namespace, "quick-1", "quick")
    wait_job(api, namespace, "quick-1", {"DONE"})
    wait_function_phase(api, namespace, "quick", "Ready")

    def reasons() -> set[str]:
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=quick-1"
        ).items
        return {e.reason for e in events}

    wait_until(
        lambda: {"Initializing", "Done"} <= reasons(),
        timeout=30,
        what="Events for the job's transitions",
    )
    listed = kubectl(cluster, "-n", namespace, "get", "qiskit").stdout
    assert "qiskitfunction.serverless.qiskit.org/quick" in listed
    assert "serverlessjob.serverless.qiskit.org/quick-1" in listed
    explained = kubectl(cluster, "explain", "sj.spec.timeoutSeconds").stdout
    assert "Wall-clock limit for the run" in explained


ARGUMENT_SIZE = """
from qiskit_serverless import get_arguments, save_result
save_result({"size": len(get_arguments()["blob"])})
"""


def test_a_pod_mounts_one_secret_unless_its_arguments_need_their_own(
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    cluster: dict,
    namespace: str,
    operator,
) -> None:
    """A job's arguments ride in its runtime Secret (the kubelet syncs one new Secret per
    pod, not two); arguments that no longer fit in it beside the rest (here with a files
    listing of 30 links) get a Secret of their own, and the program reads the same."""
    api = custom(api_client)
    make_function(api, namespace, "sizer", {"main.py": ARGUMENT_SIZE})
    wait_function_phase(api, namespace, "sizer", "Ready", timeout=240)
    # 30 files in the namespace user's folder: their download links go in the runtime Secret.
    folder = files.job_folders(namespace, c.namespace_user(namespace), "sizer", None)
    s3 = s3_client(cluster)
    for i in range(30):
        key = f"{folder[files.USER_MOUNT]}file-{i:02d}.txt"
        s3.put_object(Bucket=cluster["s3"]["bucket"], Key=key, Body=b"x")
    # As large as arguments may be (a Secret's 1 MiB less the 4 KiB kept free).
    big = "x" * (c.SECRET_MAX_BYTES - 4096 - len('{"blob":""}'))
    arguments = client.V1Secret(
        metadata=client.V1ObjectMeta(name="big-args"),
        string_data={c.ARGUMENTS_FILE: json.dumps({"blob": big}, separators=(",", ":"))},
    )
    core.create_namespaced_secret(namespace, arguments)
    make_job(api, namespace, "small", "sizer", arguments={"inline": {"blob": "abc"}})
    make_job(api, namespace, "large", "sizer", arguments={"secretRef": {"name": "big-args"}})
    for name in ("small", "large"):
        status = wait_job(api, namespace, name, {"DONE", "ERROR"}, timeout=240)["status"]
        assert status["phase"] == "DONE", status.get("message")

    def mounted_secrets(job: str) -> set[str]:
        (pod,) = core.list_namespaced_pod(namespace, label_selector=f"{c.LABEL_JOB}={job}").items
        return {v.secret.secret_name for v in pod.spec.volumes if v.secret}

    assert mounted_secrets("small") == {jobspec.runtime_secret_name("small")}
    assert mounted_secrets("large") == {
        jobspec.runtime_secret_name("large"),
        jobspec.arguments_secret_name("large"),
    }
    for name, size in (("small", 3), ("large", len(big))):
        status = get_job(api, namespace, name)["status"]
        assert json.loads(read_object(cluster, status["result"])) == {"size": size}
