"""A pod whose container the runtime cannot start: the program never ran, so the operator
makes the job's batch Job again (at most MAX_START_RETRIES times), then ends the job in ERROR
with the runtime's own words. The chaos test covers the transient case (the kubelet restarted
while it started a container); this one is the lasting case, made real by an image the
runtime cannot mount the job's volumes into."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from qiskit_serverless_operator import constants as c
from tests.serverless import (
    JobPodCounter,
    custom,
    image_with_files,
    make_function,
    make_job,
    wait_error,
    wait_function_phase,
)


def _image_with_data_as_a_file(cluster: dict[str, Any]) -> str:
    """The runtime image with an entrypoint and a regular file where the job's /data volume
    goes: the image check (which mounts nothing there) passes, the job's pod cannot start."""
    return image_with_files(
        cluster,
        f"{cluster['registry']}/qso/data-is-a-file:1",
        {"data": b"", "function/main.py": b"print('never runs')\n"},
    )


def test_a_pod_the_runtime_cannot_start_is_replaced_then_the_job_fails_clearly(
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    cluster: dict[str, Any],
    namespace: str,
    operator,
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "data-is-a-file", None, image=_image_with_data_as_a_file(cluster))
    wait_function_phase(api, namespace, "data-is-a-file", "Ready", timeout=180)
    counter = JobPodCounter(core, namespace)
    counter.start()
    try:
        make_job(api, namespace, "start-1", "data-is-a-file")
        status = wait_error(api, namespace, "start-1", timeout=180)
    finally:
        counter.stop.set()
    assert status["reason"] == "PodStartFailed", status
    message = status["message"]
    assert "could not start the job's container 'main', so the program never ran" in message
    assert "/data" in message and "not a directory" in message, message  # runc's words
    assert f"(after {c.MAX_START_RETRIES} new pods)" in message
    assert status["startRetries"] == c.MAX_START_RETRIES
    # One pod per attempt, never more: the first and one per retry.
    assert len(counter.pods["start-1"]) == 1 + c.MAX_START_RETRIES
