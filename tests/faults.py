"""Faults for the local cluster, for the chaos test and benchmark: a SIGKILL of the active
operator replica's process (not a pod deletion: kubelet's SIGTERM would let kopf leave the
peering politely), restarts of the harness's own components (kube-apiserver, kubelet,
SeaweedFS, PostgreSQL) with the command line and user they run with, and an object store or
archive database that is down."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.cluster import postgres, procs
from tests.cluster.config import Paths
from tests.cluster.install import NAMESPACE
from tests.in_cluster import active_replica, operator_pods
from tests.kube import kubectl


def _crictl_env(paths: Paths) -> dict[str, str]:
    return {
        **os.environ,
        "CRI_CONFIG_FILE": str(paths.state / "crictl.yaml"),
        "PATH": f"{paths.state / 'path'}:{os.environ.get('PATH', '')}",
    }


def _crictl(paths: Paths, *args: str) -> Any:
    out = subprocess.run(
        ["crictl", *args], capture_output=True, text=True, check=True, env=_crictl_env(paths)
    ).stdout
    return json.loads(out)


def container_pid(paths: Paths, pod: str, container: str) -> int:
    (sandbox, *_) = _crictl(paths, "pods", "--name", pod, "--state", "ready", "-o", "json")["items"]
    (found, *_) = _crictl(
        paths, "ps", "--pod", sandbox["id"], "--name", container, "--state", "running", "-o", "json"
    )["containers"]
    return int(_crictl(paths, "inspect", found["id"])["info"]["pid"])


def sigkill_active_operator(cluster: dict[str, Any], paths: Paths | None = None) -> str:
    """SIGKILL the process of the replica that acts now (its container restarts, as after a
    crash); returns the pod's name."""
    paths = paths or Paths.from_env()
    deadline = time.monotonic() + 60
    while (pod := active_replica(cluster)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError("no active operator replica to kill")
        time.sleep(0.5)
    os.kill(container_pid(paths, pod, "operator"), signal.SIGKILL)
    return pod


def _relaunch(paths: Paths, name: str) -> tuple[list[str], dict[str, Any]]:
    """How one of the harness's processes runs now: its argv, and its directory, environment
    and user (PostgreSQL's is not root) as procs.start's keyword arguments."""
    pid = procs.running_pid(paths, name)
    if pid is None:
        raise RuntimeError(f"{name} is not running")
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    environ = Path(f"/proc/{pid}/environ").read_bytes().rstrip(b"\0").split(b"\0")
    env = dict(e.decode().split("=", 1) for e in environ if b"=" in e)
    uid = os.stat(f"/proc/{pid}").st_uid
    return [a.decode() for a in argv], {
        "cwd": Path(os.readlink(f"/proc/{pid}/cwd")),
        "env": env,
        "user": pwd.getpwuid(uid).pw_name if uid != 0 else None,
    }


def restart(paths: Paths, name: str, down_seconds: float = 0.0, grace: float = 2.0) -> float:
    """Stop one of the harness's processes (SIGTERM, then SIGKILL) and start it again as it
    ran; returns how long it was down."""
    argv, launch = _relaunch(paths, name)
    started = time.monotonic()
    procs.stop(paths, name, grace=grace)  # a short grace: a crash more than a rollout
    time.sleep(down_seconds)
    procs.start(paths, name, argv, **launch)
    return time.monotonic() - started


def wait_apiserver(cluster: dict[str, Any], timeout: float = 120) -> float:
    """Until the API server answers /readyz again; returns the seconds waited."""
    import ssl

    context = ssl.create_default_context(cafile=cluster["ca"])
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(
                f"https://{cluster['node_ip']}:6443/readyz", timeout=3, context=context
            ) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("the API server did not come back")


def wait_s3(cluster: dict[str, Any], timeout: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(cluster["s3"]["endpoint"], timeout=3):
                return time.monotonic() - started
        except urllib.error.HTTPError:
            return time.monotonic() - started  # it answers (403 without a signature)
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("object storage did not come back")


def wait_postgres(cluster: dict[str, Any], timeout: float = 120) -> float:
    """Until the archive's PostgreSQL accepts TCP connections again; returns the seconds
    waited."""
    started = time.monotonic()
    address = (cluster["archive"]["host"], cluster["archive"]["port"])
    while time.monotonic() - started < timeout:
        try:
            with socket.create_connection(address, timeout=3):
                return time.monotonic() - started
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("the archive's PostgreSQL did not come back")


@contextlib.contextmanager
def s3_down(paths: Paths | None = None) -> Iterator[None]:
    """SeaweedFS stopped for the block's duration, then started again as it was."""
    paths = paths or Paths.from_env()
    argv, launch = _relaunch(paths, "seaweedfs")
    procs.stop(paths, "seaweedfs", grace=1.0)
    try:
        yield
    finally:
        procs.start(paths, "seaweedfs", argv, **launch)


@contextlib.contextmanager
def postgres_down(paths: Paths | None = None) -> Iterator[None]:
    """The archive's PostgreSQL stopped (a fast shutdown: its clients are cut off) for the
    block's duration, then started again as ``up`` starts it, waiting until it accepts
    connections (its data stays)."""
    paths = paths or Paths.from_env()
    if procs.running_pid(paths, postgres.COMPONENT) is None:
        raise RuntimeError(f"{postgres.COMPONENT} is not running")
    postgres.stop(paths, grace=5.0)
    try:
        yield
    finally:
        postgres.start(paths)


def kill_active_operator_pod(cluster: dict[str, Any], paths: Paths | None = None) -> str:
    """The active replica dies for good: its process SIGKILLed (no goodbye to the peering)
    and its pod force-deleted, so that only another replica (the standby, or the pod the
    ReplicaSet makes anew) can act next; returns the killed pod's name."""
    pod = sigkill_active_operator(cluster, paths)
    kubectl(
        cluster,
        "-n",
        NAMESPACE,
        "delete",
        "pod",
        pod,
        "--grace-period=0",
        "--force",
        "--wait=false",
    )
    return pod


def admitted_by(
    cluster: dict[str, Any], namespace: str, job: str, wait: float = 15.0
) -> str | None:
    """Which live operator replica logged the admission of ``namespace/job``. Asked right
    after the admission shows in the job's status, the line may not be in the container's
    log file yet (the container runtime copies it there on its own time): asked again for
    ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        for pod in operator_pods(cluster):
            name = pod["metadata"]["name"]
            logs = kubectl(cluster, "-n", NAMESPACE, "logs", name, check=False).stdout
            if f"admitted job {namespace}/{job} " in logs:
                return name
        if time.monotonic() > deadline:
            return None
        time.sleep(1)
