"""A registry that needs credentials (tests/cluster/registry_auth.py: htpasswd): a function's
image is built and pushed with the push Secret, its job's pod pulls it with the pull Secret,
and the registry refuses both without them."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.cluster import registry_auth
from tests.cluster.config import Paths
from tests.kube import operator_with
from tests.serverless import (
    custom,
    make_function,
    make_job,
    read_object,
    wait_function_phase,
    wait_job,
)

PROGRAM = """
import tabulate
from qiskit_serverless import save_result
print(tabulate.tabulate([[1, 2]], headers=["a", "b"]))
save_result({"tabulate": tabulate.__version__})
"""


@pytest.fixture
def credentials(cluster: dict[str, Any]) -> Iterator[registry_auth.Credentials]:
    paths = Paths.from_env()
    creds = registry_auth.start(paths)
    try:
        yield creds
    finally:
        registry_auth.stop(paths)


def _docker_secret(core: client.CoreV1Api, namespace: str, name: str, config: str) -> None:
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=name),
            type="kubernetes.io/dockerconfigjson",
            data={".dockerconfigjson": base64.b64encode(config.encode()).decode()},
        ),
    )


def test_builds_push_and_jobs_pull_with_the_registry_s_credentials(
    api_client: client.ApiClient,
    cluster: dict[str, Any],
    crds: None,
    namespace: str,
    credentials: registry_auth.Credentials,
) -> None:
    core = client.CoreV1Api(api_client)
    # The site's two Secrets, where the operator reads them (here: the test's namespace).
    _docker_secret(core, namespace, "push", credentials.docker_config())
    _docker_secret(core, namespace, "pull", credentials.docker_config())
    assert registry_auth.anonymous_status() == 401  # nobody without them

    with operator_with(
        cluster,
        "registry-auth",
        QSO_REGISTRY=credentials.registry,
        QSO_REGISTRY_INSECURE="true",
        QSO_REGISTRY_PUSH_SECRET=f"{namespace}/push",
        QSO_REGISTRY_PULL_SECRET=f"{namespace}/pull",
    ):
        api = custom(api_client)
        make_function(
            api, namespace, "tabled", {"main.py": PROGRAM}, dependencies=["tabulate==0.9.0"]
        )
        qf = wait_function_phase(api, namespace, "tabled", "Ready", timeout=900)
        image = qf["status"]["image"]
        assert image.startswith(f"{credentials.registry}/qso-functions/{namespace}/tabled")
        assert "@sha256:" in image  # pinned by digest
        make_job(api, namespace, "tabled-1", "tabled")
        job = wait_job(api, namespace, "tabled-1", {"DONE", "ERROR"}, timeout=600)
        assert job["status"]["phase"] == "DONE", job["status"].get("message")
        assert json.loads(read_object(cluster, job["status"]["result"])) == {"tabulate": "0.9.0"}

    # The job's pod named the pull Secret's copy; the build's push copy went with its Job.
    copy = core.read_namespaced_secret("qso-registry-pull", namespace)
    assert copy.type == "kubernetes.io/dockerconfigjson"
    pushes = [
        s.metadata.name
        for s in core.list_namespaced_secret(namespace).items
        if s.metadata.name.endswith("-push")
    ]
    for name in pushes:
        owners = core.read_namespaced_secret(name, namespace).metadata.owner_references or []
        assert owners and owners[0].kind == "Job"
    # Without credentials the registry refuses the image it holds.
    repository = image.split("@")[0].split("/", 1)[1]
    assert registry_auth.anonymous_status(f"/v2/{repository}/tags/list") == 401
