"""A provider's catalog on the real cluster: a provider publishes functions in its own
namespace, grants runs with RBAC, and users of other namespaces run them (through the PyPI
client and the REST gateway, and through our SDK), their jobs in their namespaces and the
pods in the provider's; an image built for IBM's service (Runner().run) runs unchanged."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from qiskit import QuantumCircuit
from qiskit_serverless import QiskitFunction, ServerlessClient
from qiskit_serverless.exception import QiskitServerlessException

from qiskit_serverless_operator import KubernetesClient
from tests.in_cluster import service_account_token
from tests.kube import kubectl, wait_until
from tests.serverless import image_with_files

warnings.filterwarnings("ignore", category=DeprecationWarning, module="qiskit_serverless")
TERMINAL = ("DONE", "ERROR", "CANCELED")

PROGRAM = """
import os
from qiskit_serverless import get_arguments, save_result
args = get_arguments()
model = open('/function_data/model.txt').read().strip()
data = sorted(os.listdir('/data'))
print('[PUBLIC] scoring', args['x'], 'with the provider model')
print('the model is', model, 'and the user data', data)
print('[PRIVATE] margin 0.37')
save_result({'score': args['x'] * 2, 'model_seen': bool(model)})
"""

RUNNER = """
import os


class Runner:
    def run(self, arguments):
        circuit = arguments["circuit"]
        print("[PUBLIC] running for", arguments["who"])
        # (For the test: the image holds none of the operator's package.)
        ours = "/opt/venv/lib/python3.11/site-packages/qiskit_serverless_operator"
        return {
            "num_qubits": circuit.num_qubits,
            "who": arguments["who"],
            "answer": 42,
            "image_has_our_package": os.path.exists(ours),
        }
"""


def _wait(job, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = job.status()
        if status in TERMINAL:
            return status
        time.sleep(0.5)
    pytest.fail(f"job {job.job_id} did not finish in {timeout:.0f} s (last: {status})")


@pytest.fixture
def provider(
    cluster: dict[str, Any],
    core: client.CoreV1Api,
    in_cluster: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """A provider: a namespace named after it (its catalog lives there)."""
    name = f"prov-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"qso.test": "true"}))
    )
    in_cluster.append(name)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cluster["ca"])
    monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


def _grant(api_client: client.ApiClient, provider: str, user_namespace: str, user: str) -> None:
    """What a provider does to let a user run its catalog: a Role with the run right (and
    reading the functions), bound to that user."""
    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(
        provider,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="catalog-runners"),
            rules=[
                client.V1PolicyRule(
                    api_groups=["serverless.qiskit.org"],
                    resources=["qiskitfunctions"],
                    verbs=["get", "list"],
                ),
                client.V1PolicyRule(
                    api_groups=["serverless.qiskit.org"],
                    resources=["qiskitfunctions/run"],
                    verbs=["create"],
                ),
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        provider,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="catalog-runners"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="catalog-runners"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name=user, namespace=user_namespace)
            ],
        ),
    )


def _ibm_style_image(cluster: dict[str, Any]) -> str:
    """An image as built for IBM's service: Python with qiskit-serverless and
    /runner/runner.py, and none of our package (the runtime base image, ours removed with
    an OCI whiteout), pushed with crane."""
    tag = hashlib.sha256(RUNNER.encode() + cluster["images"]["runtime"].encode()).hexdigest()[:12]
    return image_with_files(
        cluster,
        f"{cluster['registry']}/qso-test/ibm-style:{tag}",
        {
            "opt/venv/lib/python3.11/site-packages/.wh.qiskit_serverless_operator": b"",
            "runner/runner.py": RUNNER.encode(),
        },
    )


def test_a_granted_user_runs_a_providers_function_and_others_are_refused(
    cluster: dict[str, Any],
    api_client: client.ApiClient,
    namespace: str,
    provider: str,
    in_cluster: list[str],
    tmp_path: Path,
) -> None:
    in_cluster.append(namespace)
    host = cluster["gateway"]
    # The provider publishes its function and puts its model in its own folder.
    publisher_token = service_account_token(api_client, provider, "publisher")
    publisher = ServerlessClient(host=host, token=publisher_token, instance=provider)
    folder = tmp_path / "catalog-fn"
    folder.mkdir()
    (folder / "main.py").write_text(PROGRAM)
    published = publisher.upload(
        QiskitFunction(
            title="catalog-fn", entrypoint="main.py", working_dir=str(folder), provider=provider
        )
    )
    model = tmp_path / "model.txt"
    model.write_text("weights-v7\n")
    publisher.provider_file_upload(str(model), published)

    # alice (another namespace) is granted; `kubectl auth can-i` says so, for her alone.
    alice_token = service_account_token(api_client, namespace, "alice")
    _grant(api_client, provider, namespace, "alice")
    other = f"{namespace}-b"
    client.CoreV1Api(api_client).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=other, labels={"qso.test": "true"}))
    )
    in_cluster.append(other)
    try:
        bob_token = service_account_token(api_client, other, "bob")
        for who, expected in ((f"{namespace}:alice", "yes"), (f"{other}:bob", "no")):
            can = kubectl(
                cluster,
                "auth",
                "can-i",
                "create",
                "qiskitfunctions",
                "--subresource=run",
                "-n",
                provider,
                f"--as=system:serviceaccount:{who}",
                check=False,
            )
            assert can.stdout.strip() == expected, (who, can.stdout, can.stderr)

        alice = ServerlessClient(host=host, token=alice_token, instance=namespace)
        assert f"QiskitFunction({provider}/catalog-fn)" in [str(f) for f in alice.functions()]
        fn = alice.function(f"{provider}/catalog-fn")
        data = tmp_path / "input.txt"
        data.write_text("mine\n")
        alice.file_upload(str(data), fn)
        job = fn.run(x=21)
        assert _wait(job) == "DONE", job.logs()
        assert job.result() == {"score": 42, "model_seen": True}
        # Her logs: the [PUBLIC] lines alone; the provider's: everything else.
        assert job.logs() == "scoring 21 with the provider model\n"
        with pytest.raises(QiskitServerlessException, match="403"):
            job.provider_logs()
        with pytest.raises(QiskitServerlessException, match="403"):
            alice.provider_files(fn)  # the provider's folder is the job's, not hers
        provider_view = publisher.job(job.job_id)
        assert provider_view is not None and provider_view.status() == "DONE"
        private = provider_view.provider_logs()
        assert "the model is weights-v7 and the user data ['input.txt']" in private
        assert "margin 0.37" in private and "scoring" not in private
        assert [j.job_id for j in publisher.provider_jobs(published)] == [job.job_id]

        # Her job is hers (her namespace); its pod ran at the provider's.
        sj = json.loads(
            kubectl(
                cluster,
                "-n",
                namespace,
                "get",
                "sj",
                "--field-selector",
                f"status.jobId={job.job_id}",
                "-o",
                "json",
            ).stdout
        )["items"][0]
        assert sj["spec"]["provider"] == provider
        ran = json.loads(
            kubectl(
                cluster,
                "-n",
                provider,
                "get",
                "jobs",
                "-l",
                f"serverless.qiskit.org/job-namespace={namespace}",
                "-o",
                "json",
            ).stdout
        )["items"]
        assert len(ran) == 1
        assert "No resources found" in kubectl(cluster, "-n", namespace, "get", "jobs").stderr

        # Our SDK, as alice, the same way (what it needs: reading the catalog, the grant).
        sdk = KubernetesClient(
            namespace, api_client=new_service_account_client_for(api_client, alice_token)
        )
        sdk.progress = False
        sdk_job = sdk.function(f"{provider}/catalog-fn").run(x=5)
        assert _wait(sdk_job) == "DONE"
        assert sdk_job.result() == {"score": 10, "model_seen": True}

        # bob has no grant: refused, with the reason, before any job exists.
        bob = ServerlessClient(host=host, token=bob_token, instance=other)
        with pytest.raises(QiskitServerlessException) as refused:
            bob.function(f"{provider}/catalog-fn")
        assert "Code: 403" in str(refused.value)
        assert f"may not run {provider}/catalog-fn: no grant to create qiskitfunctions/run" in str(
            refused.value
        )
        with pytest.raises(QiskitServerlessException, match="403"):
            bob.run("catalog-fn", {"x": 1}, provider=provider)
        assert bob.jobs() == []
        # And made by hand (kubectl-style, as bob), the operator refuses it: ERROR, no pod.
        as_bob = client.CustomObjectsApi(new_service_account_client_for(api_client, bob_token))
        bob_user = f"system:serviceaccount:{other}:bob"
        as_bob.create_namespaced_custom_object(
            "serverless.qiskit.org",
            "v1alpha1",
            other,
            "serverlessjobs",
            {
                "apiVersion": "serverless.qiskit.org/v1alpha1",
                "kind": "ServerlessJob",
                "metadata": {
                    "name": "by-hand",
                    "annotations": {"serverless.qiskit.org/submitter": bob_user},
                },
                "spec": {
                    "function": "catalog-fn",
                    "provider": provider,
                    "arguments": {"inline": {"x": 1}},
                },
            },
        )
        status = wait_until(
            lambda: (
                (
                    as_bob.get_namespaced_custom_object(
                        "serverless.qiskit.org", "v1alpha1", other, "serverlessjobs", "by-hand"
                    ).get("status")
                    or {}
                ).get("phase")
                == "ERROR"
                and as_bob.get_namespaced_custom_object(
                    "serverless.qiskit.org", "v1alpha1", other, "serverlessjobs", "by-hand"
                )["status"]
            ),
            timeout=60,
            what="bob's job refused",
        )
        assert status["reason"] == "Forbidden"
        assert f"{bob_user} may not run {provider}/catalog-fn" in status["message"]
    finally:
        client.CoreV1Api(api_client).delete_namespace(other, propagation_policy="Background")


def new_service_account_client_for(api_client: client.ApiClient, token: str) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = api_client.configuration.host
    cfg.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


def test_an_image_built_for_ibms_service_runs_unchanged(
    cluster: dict[str, Any],
    api_client: client.ApiClient,
    namespace: str,
    provider: str,
    in_cluster: list[str],
    tmp_path: Path,
) -> None:
    in_cluster.append(namespace)
    host = cluster["gateway"]
    image = _ibm_style_image(cluster)
    publisher = ServerlessClient(
        host=host, token=service_account_token(api_client, provider, "publisher"), instance=provider
    )
    publisher.upload(QiskitFunction(title="ibm-style", image=image, provider=provider))
    alice_token = service_account_token(api_client, namespace, "alice")
    _grant(api_client, provider, namespace, "alice")
    alice = ServerlessClient(host=host, token=alice_token, instance=namespace)
    fn = alice.function(f"{provider}/ibm-style")
    circuit = QuantumCircuit(3)
    circuit.h(0)
    job = fn.run(circuit=circuit, who="alice")
    assert _wait(job) == "DONE", job.logs()
    assert job.result() == {
        "num_qubits": 3,
        "who": "alice",
        "answer": 42,
        "image_has_our_package": False,
    }
    assert job.logs() == "running for alice\n"
    qf = json.loads(kubectl(cluster, "-n", provider, "get", "qf", "-o", "json").stdout)["items"][0]
    assert qf["status"]["phase"] == "Ready" and qf["status"]["image"] == image
