"""Bad input that only shows once a pod tries to run: a clear ERROR, never a hang."""

from __future__ import annotations

from kubernetes import client

from tests.serverless import (
    custom,
    make_function,
    make_job,
    wait_error,
    wait_function_phase,
)

OK_PROGRAM = {"main.py": "print('ok')"}


def test_entrypoint_missing_from_a_prebuilt_image(
    api_client: client.ApiClient, cluster: dict, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_function(
        api,
        namespace,
        "prebuilt",
        None,
        image=cluster["images"]["runtime"],
        entrypoint="app/run.py",
    )
    # The image is checked before the function is Ready: neither the entrypoint nor Qiskit
    # Serverless' /runner/runner.py is in it.
    fn = wait_function_phase(api, namespace, "prebuilt", "Failed", timeout=180)
    assert (
        "neither the entrypoint /function/app/run.py nor /runner/runner.py"
        in (fn["status"]["message"])
    )
    make_job(api, namespace, "prebuilt-1", "prebuilt")
    status = wait_error(api, namespace, "prebuilt-1", timeout=60)
    assert status["reason"] == "FunctionFailed"


def test_image_that_cannot_be_pulled(
    api_client: client.ApiClient, cluster: dict, namespace: str, operator
) -> None:
    api = custom(api_client)
    image = f"{cluster['registry']}/qso/does-not-exist:1"
    make_function(api, namespace, "ghost", None, image=image)
    fn = wait_function_phase(api, namespace, "ghost", "Failed", timeout=180)
    assert f"image {image} cannot be pulled" in fn["status"]["message"]
    make_job(api, namespace, "ghost-1", "ghost")
    status = wait_error(api, namespace, "ghost-1")
    assert status["reason"] == "FunctionFailed"
    assert "cannot be pulled" in status["message"]


def test_image_without_the_runtime_wrapper(
    api_client: client.ApiClient, cluster: dict, namespace: str, operator
) -> None:
    api = custom(api_client)
    # A real, pullable image with no Python in it at all.
    make_function(api, namespace, "not-ours", None, image=cluster["images"]["coredns"])
    fn = wait_function_phase(api, namespace, "not-ours", "Failed", timeout=180)
    assert "build it FROM the runtime base image" in fn["status"]["message"]
