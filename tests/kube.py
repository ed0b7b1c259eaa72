"""Fixtures and helpers for tests that talk to the local cluster (integration and e2e).

The cluster is the one `python -m tests.cluster up` started; its description is
read from the state folder.  A missing cluster is an error, never a skip: CI
must not pass because nothing ran.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config

from tests.cluster.config import Paths


def cluster_info() -> dict[str, Any]:
    info = Paths.from_env().info
    if not info.exists():
        pytest.fail(f"no local cluster ({info} missing): run `python -m tests.cluster up`")
    return json.loads(info.read_text())


@pytest.fixture(scope="session")
def cluster() -> dict[str, Any]:
    return cluster_info()


@pytest.fixture(scope="session")
def api_client(cluster: dict[str, Any]) -> client.ApiClient:
    return config.new_client_from_config(config_file=cluster["kubeconfig"])


@pytest.fixture(scope="session")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def namespace(core: client.CoreV1Api, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (so the suite can run again)."""
    stem = request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"t-{stem}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"qso.test": "true"}))
    )
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


def wait_until(
    check: Callable[[], Any], *, timeout: float, what: str, interval: float = 1.0
) -> Any:
    """Poll until ``check`` returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def restricted_container_security() -> client.V1SecurityContext:
    """The Pod Security 'restricted' profile, which the job pods will use too."""
    return client.V1SecurityContext(
        allow_privilege_escalation=False,
        run_as_non_root=True,
        read_only_root_filesystem=True,
        capabilities=client.V1Capabilities(drop=["ALL"]),
        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
    )


def python_pod(name: str, image: str, code: str, **env: str) -> client.V1Pod:
    """A one-shot pod that runs ``python3 -c code`` in the runtime image.

    The root filesystem is read-only, as for job pods: /tmp is an emptyDir.
    """
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1PodSpec(
            restart_policy="Never",
            automount_service_account_token=False,
            containers=[
                client.V1Container(
                    name="main",
                    image=image,
                    command=["python3", "-c", code],
                    env=[client.V1EnvVar(name=k, value=v) for k, v in env.items()],
                    security_context=restricted_container_security(),
                    volume_mounts=[client.V1VolumeMount(name="tmp", mount_path="/tmp")],
                )
            ],
            volumes=[client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource())],
        ),
    )


def wait_pod_finished(
    core: client.CoreV1Api, namespace: str, name: str, timeout: float = 300
) -> client.V1Pod:
    def finished() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    return wait_until(finished, timeout=timeout, what=f"pod {namespace}/{name} to finish")
