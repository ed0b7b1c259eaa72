"""The SDK's bad-input paths: each one a clear QiskitServerlessException (or None)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from qiskit_serverless import QiskitFunction
from qiskit_serverless.exception import QiskitServerlessException

from qiskit_serverless_operator import KubernetesClient
from qiskit_serverless_operator.client.kubernetes_client import object_name
from tests.kube import new_service_account_client, wait_until
from tests.serverless import custom, make_function, wait_function_phase


@pytest.fixture
def sdk(api_client: client.ApiClient, namespace: str, crds: None) -> KubernetesClient:
    return KubernetesClient(namespace=namespace, api_client=api_client)


def test_unknown_function_is_none_and_run_says_what_to_do(sdk: KubernetesClient) -> None:
    assert sdk.function("nope") is None
    with pytest.raises(QiskitServerlessException, match="function 'nope' not found in namespace"):
        sdk.run("nope", {})


def test_arguments_that_cannot_be_serialized(
    api_client, sdk: KubernetesClient, namespace: str, operator
) -> None:
    make_function(custom(api_client), namespace, "fn", {"main.py": "print(1)"})
    wait_function_phase(custom(api_client), namespace, "fn", "Ready")
    with pytest.raises(QiskitServerlessException, match="arguments cannot be sent to the job"):
        sdk.run("fn", {"handle": object()})


def test_upload_reports_a_missing_entrypoint(sdk: KubernetesClient, tmp_path, operator) -> None:
    (tmp_path / "main.py").write_text("print('x')\n")
    with pytest.raises(
        QiskitServerlessException, match=re.escape("entrypoint 'other.py' is not in")
    ):
        sdk.upload(QiskitFunction(title="x", entrypoint="other.py", working_dir=str(tmp_path)))
    fn = sdk.upload(QiskitFunction(title="ok_fn", entrypoint="main.py", working_dir=str(tmp_path)))
    assert str(fn) == "QiskitFunction(ok_fn)" and object_name("ok_fn") != "ok_fn"
    assert [str(f) for f in sdk.functions()] == ["QiskitFunction(ok_fn)"]


def test_a_namespace_without_rights_gives_a_readable_error(
    api_client: client.ApiClient, core: client.CoreV1Api, namespace: str
) -> None:
    sdk = KubernetesClient(
        namespace=namespace, api_client=new_service_account_client(api_client, namespace, "nobody")
    )
    with pytest.raises(QiskitServerlessException) as info:
        sdk.functions()
    message = str(info.value)
    assert f"not allowed to list qiskitfunctions in namespace '{namespace}'" in message
    assert "Ask for a Role" in message


def test_no_cluster_reachable(tmp_path, cluster: dict) -> None:
    kubeconfig = yaml.safe_load(Path(cluster["kubeconfig"]).read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    sdk = KubernetesClient(kubeconfig=str(path))
    with pytest.raises(
        QiskitServerlessException, match=re.escape("no cluster reachable at https://127.0.0.1:1")
    ):
        sdk.functions()
    with pytest.raises(QiskitServerlessException, match="no cluster configured"):
        KubernetesClient(kubeconfig=str(tmp_path / "missing"))


def test_credentials_secret_reaches_the_job_and_a_missing_one_is_reported(
    api_client: client.ApiClient, namespace: str, operator, crds: None
) -> None:
    make_function(custom(api_client), namespace, "fn", {"main.py": "print(1)"})
    wait_function_phase(custom(api_client), namespace, "fn", "Ready")
    sdk = KubernetesClient(
        namespace=namespace, api_client=api_client, credentials_secret="ibm-quantum"
    )
    job = sdk.run("fn", {})
    body = sdk._require_job(job.job_id)
    assert body["spec"]["credentials"] == {"secretRef": {"name": "ibm-quantum"}}
    wait_until(lambda: job.status() == "ERROR", timeout=60, what="the job to fail")
    assert "credentials Secret 'ibm-quantum' not found" in job.error_message()
