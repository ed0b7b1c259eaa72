"""Fixtures and helpers for tests that talk to the local cluster (integration and e2e).

The cluster is the one `python -m tests.cluster up` started; its description is
read from the state folder.  A missing cluster is an error, never a skip: CI
must not pass because nothing ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.cluster.config import Paths
from tests.cluster.operator_local import apply_api, operator_env


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
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
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


REPO_ROOT = Path(__file__).resolve().parents[1]


OUR_CRDS = (
    "qiskitfunctions.serverless.qiskit.org",
    "serverlessjobs.serverless.qiskit.org",
    "serverlessqueues.serverless.qiskit.org",
    "clusterkopfpeerings.kopf.dev",
    "kopfpeerings.kopf.dev",
)


def served_crds(cluster: dict[str, Any]) -> set[str]:
    out = kubectl(cluster, "get", "crd", "-o", "name").stdout.split()
    return {name.split("/", 1)[1] for name in out}


def run_examples(cluster: dict[str, Any], namespace: str) -> dict[str, Any]:
    """`kubectl apply -f examples/` as the README has it; the `hello` job once DONE."""
    applied = kubectl(cluster, "-n", namespace, "apply", "-f", str(REPO_ROOT / "examples"))
    assert "qiskitfunction.serverless.qiskit.org/hello created" in applied.stdout
    assert "serverlessjob.serverless.qiskit.org/hello created" in applied.stdout
    kubectl(
        cluster,
        "-n",
        namespace,
        "wait",
        "--for=jsonpath={.status.phase}=DONE",
        "sj/hello",
        "--timeout=300s",
    )
    return json.loads(kubectl(cluster, "-n", namespace, "get", "sj/hello", "-o", "json").stdout)


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m tests.cluster ARGS` as a user runs it (install, uninstall, ...)."""
    return subprocess.run(
        [sys.executable, "-m", "tests.cluster", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


def delete_jobs_and_functions(cluster: dict[str, Any], namespace: str) -> None:
    """Every ServerlessJob and QiskitFunction of ``namespace``, waiting for them to go (an
    operator must be running to release their finalizers)."""
    kubectl(
        cluster,
        "-n",
        namespace,
        "delete",
        "sj,qf",
        "--all",
        "--wait",
        "--timeout=180s",
        check=False,
    )


def kubectl(
    cluster: dict[str, Any], *args: str, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [f"{cluster['tools']}/kubectl", f"--kubeconfig={cluster['kubeconfig']}", *args],
        input=input,
        capture_output=True,
        text=True,
        check=check,
    )


@pytest.fixture(scope="session")
def crds(cluster: dict[str, Any]) -> None:
    """The project's API (CRDs, peering object, admission policy), applied and Established."""
    apply_api(Paths.from_env())


class OperatorProcess:
    """The operator as a local process against the test cluster (restartable, killable)."""

    def __init__(
        self,
        cluster: dict[str, Any],
        log_path: Path,
        priority: int = 1000,
        ports: tuple[int, int, int] = (8000, 8080, 9090),
        extra_env: dict[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.cluster = cluster
        self.python = python
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            **operator_env(cluster, job_endpoint_port=ports[0], metrics_port=ports[2]),
            "QSO_FINISHED_POD_TTL_SECONDS": "120",
            "QSO_PEERING_PRIORITY": str(priority),
            "QSO_PEERING_LIFETIME_SECONDS": "10",
            **(extra_env or {}),
        }
        self.liveness = f"http://127.0.0.1:{ports[1]}/healthz"
        # Served by the operator's startup handler: kopf's liveness endpoint answers before
        # startup has finished (and while a failed startup waits to be retried).
        self.job_endpoint = f"http://{cluster['node_ip']}:{ports[0]}/healthz"
        self.addresses = [
            ("127.0.0.1", ports[1]),
            (cluster["node_ip"], ports[0]),
            ("127.0.0.1", ports[2]),
        ]

    def start(self) -> None:
        # Another process on these ports would answer the health checks in its place.
        for host, port in self.addresses:
            with socket.socket() as probe:
                if probe.connect_ex((host, port)) == 0:
                    pytest.fail(f"{host}:{port} is taken: another operator still runs?")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                self.python,
                "-m",
                "qiskit_serverless_operator",
                "--liveness",
                self.liveness,
                *(["--verbose"] if os.environ.get("QSO_TEST_OPERATOR_VERBOSE") else []),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"operator exited with {self.proc.returncode}; see {self.log_path}")
            try:
                for url in (self.liveness, self.job_endpoint):
                    with urllib.request.urlopen(url, timeout=2) as r:
                        if r.status != 200:
                            return False
                return True
            except OSError:
                return False

        try:
            wait_until(
                healthy, timeout=60, what="the operator's liveness and job endpoints", interval=0.5
            )
        except BaseException:
            # Never leave a half-started operator behind: it would hold the ports and act on
            # the cluster through every later test (and benchmark).
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL: no cleanup, no finalizers, exactly like a crashed pod."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# The session's operator, once a test has asked for it: tests of the in-cluster install
# stop it for their duration (with its higher peering priority it would do their work).
SESSION_OPERATOR: list[OperatorProcess] = []


@pytest.fixture(scope="session")
def operator(
    cluster: dict[str, Any], crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log_dir = Path(cluster["logs"])
    proc = OperatorProcess(cluster, log_dir / "operator-tests.log")
    proc.start()
    SESSION_OPERATOR.append(proc)
    try:
        yield proc
    finally:
        SESSION_OPERATOR.remove(proc)
        proc.stop()


def new_service_account_client(
    api_client: client.ApiClient, namespace: str, name: str
) -> client.ApiClient:
    """An API client authenticated as a fresh ServiceAccount (no rights until granted)."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    token = core.create_namespaced_service_account_token(
        name,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    ).status.token
    cfg = client.Configuration()
    cfg.host = api_client.configuration.host
    cfg.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


@contextlib.contextmanager
def session_operator_paused() -> Iterator[None]:
    """No session operator acting meanwhile (if one runs, it is stopped and started again)."""
    paused = [proc for proc in SESSION_OPERATOR if proc.running]
    for proc in paused:
        proc.stop()
    try:
        yield
    finally:
        for proc in paused:
            proc.start()


@contextlib.contextmanager
def operator_with(cluster: dict[str, Any], name: str, **env: str) -> Iterator[OperatorProcess]:
    """An operator with its own settings (e.g. queue limits) in place of the session's one,
    which is paused meanwhile and started again afterwards."""
    with session_operator_paused():
        proc = OperatorProcess(
            cluster, Path(cluster["logs"]) / f"operator-{name}.log", extra_env=env
        )
        proc.start()
        try:
            yield proc
        finally:
            proc.stop()
