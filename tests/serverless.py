"""Helpers for tests of QiskitFunctions and ServerlessJobs on the real cluster."""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from kubernetes import client, watch

from qiskit_serverless_operator import constants as c
from tests.kube import wait_until


def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def make_function(
    api: client.CustomObjectsApi,
    namespace: str,
    name: str,
    files: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": c.API_VERSION,
        "kind": c.FUNCTION_KIND,
        "metadata": {"name": name},
        "spec": {"title": name, "entrypoint": "main.py", **spec},
    }
    if files is not None:
        body["spec"]["source"] = {"files": files}
    return api.create_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.FUNCTION_PLURAL, body
    )


def make_job(
    api: client.CustomObjectsApi,
    namespace: str,
    name: str,
    function: str,
    *,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    spec.setdefault("resources", {"requests": {"cpu": "50m", "memory": "256Mi"}})
    body = {
        "apiVersion": c.API_VERSION,
        "kind": c.JOB_KIND,
        "metadata": {"name": name, **({"labels": labels} if labels else {})},
        "spec": {"function": function, **spec},
    }
    return api.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, body)


def get_job(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return api.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, name)


def wait_function_phase(
    api: client.CustomObjectsApi, namespace: str, name: str, phase: str, timeout: float = 60
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        body = api.get_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.FUNCTION_PLURAL, name
        )
        return body if (body.get("status") or {}).get("phase") == phase else None

    return wait_until(reached, timeout=timeout, what=f"function {name} {phase}")


def wait_job(
    api: client.CustomObjectsApi,
    namespace: str,
    name: str,
    phases: set[str],
    timeout: float = 300,
    seen: list[str] | None = None,
) -> dict[str, Any]:
    """Poll until the job's phase is one of ``phases``; record each phase seen in order."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = get_job(api, namespace, name)
        phase = (last.get("status") or {}).get("phase")
        if seen is not None and phase and (not seen or seen[-1] != phase):
            seen.append(phase)
        if phase in phases:
            return last
        time.sleep(0.3)
    pytest.fail(
        f"job {name} did not reach {phases} in {timeout:.0f} s; status: {last.get('status')}"
    )


def s3_client(cluster: dict[str, Any]):
    s3 = cluster["s3"]
    return boto3.client(
        "s3",
        endpoint_url=s3["endpoint"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )


def read_object(cluster: dict[str, Any], location: dict[str, Any]) -> bytes:
    body = s3_client(cluster).get_object(Bucket=location["bucket"], Key=location["key"])
    return body["Body"].read()


TERMINAL = {"DONE", "ERROR", "CANCELED"}


def wait_error(
    api: client.CustomObjectsApi, namespace: str, name: str, timeout: float = 120
) -> dict[str, Any]:
    """Wait for a terminal phase and require it to be ERROR; return the status."""
    status = wait_job(api, namespace, name, TERMINAL, timeout=timeout)["status"]
    assert status["phase"] == "ERROR", status
    return status


class BuildJobCounter:
    """Counts build Jobs created in a namespace, even ones deleted right after success."""

    def __init__(self, batch: client.BatchV1Api, namespace: str) -> None:
        self.names: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(batch, namespace), daemon=True)
        self._thread.start()
        time.sleep(1)

    def _run(self, batch: client.BatchV1Api, namespace: str) -> None:
        while not self._stop.is_set():
            for event in watch.Watch().stream(
                batch.list_namespaced_job,
                namespace,
                label_selector=c.LABEL_BUILD,
                timeout_seconds=3,
            ):
                self.names.add(event["object"].metadata.name)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class JobPodCounter(threading.Thread):
    """Every pod of every job in the namespace, by UID, and the node of each pod by name,
    from a watch (a job's pods are gone by the end: the TTL removes them); ``selector``
    narrows it (e.g. to one job's tasks)."""

    def __init__(self, core: client.CoreV1Api, namespace: str, selector: str = c.LABEL_JOB) -> None:
        super().__init__(daemon=True)
        self.core, self.namespace, self.selector = core, namespace, selector
        self.pods: dict[str, set[str]] = defaultdict(set)
        self.nodes: dict[str, str] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                for event in watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=self.selector,
                    timeout_seconds=30,
                ):
                    pod = event["object"]
                    job = (pod.metadata.labels or {}).get(c.LABEL_JOB)
                    if job:
                        self.pods[job].add(pod.metadata.uid)
                    if pod.spec.node_name:
                        self.nodes[pod.metadata.name] = pod.spec.node_name
                    if self.stop.is_set():
                        return
            except Exception:  # the API server restarting under the watch: watch again
                time.sleep(1)


def image_with_files(cluster: dict[str, Any], ref: str, files: dict[str, bytes]) -> str:
    """Push ``ref``: the runtime base image plus one layer of ``files`` (path in the image
    -> content; an OCI whiteout name removes a path), appended with crane like the
    harness's own images."""
    with tempfile.TemporaryDirectory() as tmp:
        layer = Path(tmp) / "layer.tar"
        with tarfile.open(layer, "w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        subprocess.run(
            [
                str(Path(cluster["tools"]) / "crane"),
                "append",
                "--base",
                cluster["images"]["runtime"],
                "--new_layer",
                str(layer),
                "--new_tag",
                ref,
                "--insecure",
            ],
            check=True,
            capture_output=True,
        )
    return ref
