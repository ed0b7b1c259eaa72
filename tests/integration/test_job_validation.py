"""Bad input caught before any pod runs (apiserver + operator only): a clear status message,
or a rejection at apply time by the CRD schema and its CEL rules."""

from __future__ import annotations

import base64
import datetime
import json
import time

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from qiskit_serverless_operator import constants as c
from tests.kube import wait_until
from tests.serverless import (
    custom,
    get_job,
    make_function,
    make_job,
    wait_error,
    wait_function_phase,
    wait_job,
)

OK_PROGRAM = {"main.py": "print('ok')"}


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _rejected(call) -> str:
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status == 422, info.value.body
    return json.loads(info.value.body)["message"]


def test_unknown_function(api_client: client.ApiClient, namespace: str, operator) -> None:
    """QUEUED while it may still come (QSO_FUNCTION_WAIT_SECONDS, 10 s), then ERROR."""
    api = custom(api_client)
    make_job(api, namespace, "orphan", "no_such_function")
    waiting = wait_until(
        lambda: (get_job(api, namespace, "orphan").get("status") or {}).get("reason"),
        timeout=60,
        what="the orphan's first status",
    )
    assert waiting == "FunctionNotFound"
    status = wait_error(api, namespace, "orphan")
    assert status["reason"] == "FunctionNotFound"
    assert (
        f"no QiskitFunction titled 'no_such_function' in namespace {namespace}"
        in (status["message"])
    )
    created = get_job(api, namespace, "orphan")["metadata"]["creationTimestamp"]
    waited = _seconds_between(created, status["completionTime"])
    assert 9 <= waited <= 40, (created, status["completionTime"])


def _seconds_between(start: str, end: str) -> float:
    def parse(value: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds()


def test_a_job_applied_just_before_its_function_waits_for_it(
    api_client: client.ApiClient, namespace: str, operator
) -> None:
    """Argo CD applies a commit's objects in no promised order: a job seen before its
    function waits for it (QUEUED, FunctionNotFound) and goes on when it comes."""
    api = custom(api_client)
    make_job(api, namespace, "early", "late")
    queued = wait_job(api, namespace, "early", {"QUEUED", "ERROR"}, timeout=60)["status"]
    assert (queued["phase"], queued["reason"]) == ("QUEUED", "FunctionNotFound"), queued
    assert "waiting for it until" in queued["message"]
    make_function(api, namespace, "late", OK_PROGRAM)

    def past_the_function() -> dict | None:
        status = get_job(api, namespace, "early").get("status") or {}
        return status if status.get("reason") != "FunctionNotFound" else None

    moved = wait_until(past_the_function, timeout=60, what="the job to find its function")
    assert moved["phase"] != "ERROR", moved
    # Past its wait, it is still not ended for a function that was missing.
    created = get_job(api, namespace, "early")["metadata"]["creationTimestamp"]
    time.sleep(max(0.0, 12 - _seconds_between(created, now_utc())))
    status = get_job(api, namespace, "early")["status"]
    assert status.get("reason") != "FunctionNotFound" and status["phase"] != "ERROR", status


def test_function_not_ready_fails_the_job_with_the_function_message(
    api_client: client.ApiClient, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "broken", {"helper.py": "x = 1"})
    wait_function_phase(api, namespace, "broken", "Failed")
    make_job(api, namespace, "broken-1", "broken")
    status = wait_error(api, namespace, "broken-1")
    assert status["reason"] == "FunctionFailed"
    assert "function 'broken' is Failed: entrypoint 'main.py'" in status["message"]


def test_entrypoint_missing_from_source(
    api_client: client.ApiClient, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "typo", {"mian.py": "print(1)"})
    fn = wait_function_phase(api, namespace, "typo", "Failed")
    assert (
        "entrypoint 'main.py' is not among the source files (mian.py)" in (fn["status"]["message"])
    )
    make_job(api, namespace, "typo-1", "typo")
    assert "entrypoint 'main.py'" in wait_error(api, namespace, "typo-1")["message"]


def test_malformed_arguments_in_a_secret(
    api_client: client.ApiClient, core: client.CoreV1Api, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "fn", OK_PROGRAM)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="bad-args"),
            data={"arguments.json": base64.b64encode(b"{not json").decode()},
        ),
    )
    make_job(api, namespace, "bad-args-1", "fn", arguments={"secretRef": {"name": "bad-args"}})
    status = wait_error(api, namespace, "bad-args-1")
    assert status["reason"] == "InvalidArguments"
    assert "arguments in Secret 'bad-args' are not valid JSON" in status["message"]

    make_job(api, namespace, "no-args-1", "fn", arguments={"secretRef": {"name": "missing"}})
    status = wait_error(api, namespace, "no-args-1")
    assert status["reason"] == "ArgumentsNotFound"
    assert "arguments Secret 'missing' not found" in status["message"]


def test_arguments_over_the_secret_size_limit(
    api_client: client.ApiClient, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "fn", OK_PROGRAM)
    big = {"data": "x" * (1024 * 1024 + 10)}
    make_job(api, namespace, "big-1", "fn", arguments={"inline": big})
    status = wait_error(api, namespace, "big-1")
    assert status["reason"] == "ArgumentsTooLarge"
    assert "over the 1 MiB a Kubernetes Secret holds" in status["message"]
    assert "object storage" in status["message"]


def test_missing_credentials_secret(api_client: client.ApiClient, namespace: str, operator) -> None:
    api = custom(api_client)
    make_function(api, namespace, "fn", OK_PROGRAM)
    make_job(api, namespace, "creds-1", "fn", credentials={"secretRef": {"name": "ibm-quantum"}})
    status = wait_error(api, namespace, "creds-1")
    assert status["reason"] == "CredentialsNotFound"
    assert "credentials Secret 'ibm-quantum' not found" in status["message"]


# --------------------------------------------------------------------- rejected at apply time


def test_schema_and_cel_rules_reject_bad_specs(
    api_client: client.ApiClient, namespace: str
) -> None:
    api = custom(api_client)
    assert "spec.timeoutSeconds" in _rejected(
        lambda: make_job(api, namespace, "t0", "fn", timeoutSeconds=0)
    )
    assert "spec.function" in _rejected(lambda: make_job(api, namespace, "t1", "has spaces"))
    assert "spec.title" in _rejected(
        lambda: make_function(api, namespace, "bad-title", OK_PROGRAM, title="no/slashes")
    )
    assert "exactly one of image (prebuilt) or source" in _rejected(
        lambda: make_function(api, namespace, "both", OK_PROGRAM, image="x:1")
    )
    assert "either inline or as secretRef" in _rejected(
        lambda: make_job(
            api, namespace, "t2", "fn", arguments={"inline": {"a": 1}, "secretRef": {"name": "s"}}
        )
    )

    make_job(api, namespace, "stopped", "nothing-here", stop=True)

    def unstop() -> None:
        api.patch_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, "stopped", {"spec": {"stop": False}}
        )

    assert "stop cannot be undone" in _rejected(unstop)

    def refunction() -> None:
        api.patch_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, "stopped", {"spec": {"function": "other"}}
        )

    assert "function cannot change" in _rejected(refunction)


def test_source_over_the_configmap_limit(
    api_client: client.ApiClient, namespace: str, operator
) -> None:
    api = custom(api_client)
    files = {"main.py": "print(1)\n", "data.py": "x = '" + "y" * (950 * 1024) + "'\n"}
    make_function(api, namespace, "huge", files)
    fn = wait_function_phase(api, namespace, "huge", "Failed")
    assert fn["status"]["reason"] == "SourceTooLarge"
    assert "upload it as an archive" in fn["status"]["message"]
