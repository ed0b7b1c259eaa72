"""An upgrade with jobs in flight: the previous release (RELEASES.md) installed from its own
commit, then the working tree's install applied over it.

The previous release is built from a `git worktree` of its commit by its own harness
(old_release.py), installed as it was released (0.1.0: kustomize, `manifests/overlays/local`),
with at most one running job per user so that a job waits in the queue. Then: a function built
by the old builder on the old runtime, a job finished, one running, one queued; the working
tree's `python -m tests.cluster install`; every job ends DONE once (each job's pods watched
from the start: one pod each), the running job finishes in the pod it started in, the
finished job is untouched, the old function stays Ready throughout (it rebuilds on the new
runtime image in the background) and runs a new job, and every result reads back through the
new gateway with PyPI's ServerlessClient.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from qiskit_serverless import ServerlessClient

from qiskit_serverless_operator import constants as c
from tests.in_cluster import service_account_token
from tests.kube import (
    REPO_ROOT,
    delete_jobs_and_functions,
    harness,
    kubectl,
    session_operator_paused,
    wait_until,
)
from tests.serverless import (
    custom,
    get_job,
    make_function,
    make_job,
    wait_function_phase,
    wait_job,
)

SLOW = """
import os, time
from qiskit_serverless import get_arguments, save_result
args = get_arguments()
time.sleep(args.get("seconds", 0))
save_result({"tag": args["tag"], "pod": os.environ.get("HOSTNAME")})
"""
TABLED = """
import tabulate
from qiskit_serverless import get_arguments, save_result
print(tabulate.tabulate([[1, 2]], headers=["a", "b"]))
save_result({"tag": get_arguments()["tag"], "tabulate": tabulate.__version__})
"""


def previous_release() -> tuple[str, str]:
    """The newest released version in RELEASES.md and its commit."""
    rows = re.findall(
        r"^\|\s*([0-9][^|]*?)\s*\|\s*([0-9a-f]{7,40})\s*\|",
        (REPO_ROOT / "RELEASES.md").read_text(),
        re.M,
    )
    assert rows, "RELEASES.md names no released commit"
    return rows[0]


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)


@pytest.fixture
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    version, commit = previous_release()
    if _git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        shallow = _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        if shallow:
            pytest.skip(f"a shallow clone lacks release {version}'s commit {commit}")
        pytest.fail(f"release {version}'s commit {commit} (RELEASES.md) is not in this repository")
    tree = tmp_path_factory.mktemp("release") / version
    added = _git("worktree", "add", "--detach", str(tree), commit)
    assert added.returncode == 0, added.stderr
    try:
        yield version, tree
    finally:
        _git("worktree", "remove", "--force", str(tree))


def _install_release(tree: Path, **settings: str) -> dict[str, str]:
    script = Path(__file__).with_name("old_release.py")
    done = subprocess.run(
        [sys.executable, str(script), *(f"{k}={v}" for k, v in settings.items())],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": f"{tree}:{tree / 'operator'}"},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


class Watcher:
    """Every pod of every job in the namespace, and the function's status at every change,
    from before the upgrade to the end. Polled (a finished job's pod stays for minutes, so
    none is missed), which survives what a watch stream may not: the API server's own
    timeouts and restarts of the connection."""

    def __init__(self, api_client: client.ApiClient, namespace: str, function: str) -> None:
        self.pods: dict[str, set[str]] = {}
        self.function: list[tuple[str, str, str]] = []
        self.errors: list[str] = []
        self._core, self._api = client.CoreV1Api(api_client), custom(api_client)
        self._namespace, self._name = namespace, function
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        pods = self._core.list_namespaced_pod(self._namespace, label_selector=c.LABEL_JOB)
        for pod in pods.items:
            job = pod.metadata.labels[c.LABEL_JOB]
            self.pods.setdefault(job, set()).add(pod.metadata.name)
        body = self._api.get_namespaced_custom_object(
            c.GROUP, c.VERSION, self._namespace, c.FUNCTION_PLURAL, self._name
        )
        status = body.get("status") or {}
        seen = (status.get("phase", ""), status.get("reason", ""), status.get("image", ""))
        if not self.function or self.function[-1] != seen:
            self.function.append(seen)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except Exception as exc:
                self.errors.append(repr(exc))
            self._stop.wait(0.3)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_an_upgrade_with_jobs_in_flight_runs_each_once_and_keeps_every_result(
    cluster: dict[str, Any],
    crds: None,
    api_client: client.ApiClient,
    namespace: str,
    release: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, tree = release
    api = custom(api_client)
    with session_operator_paused():
        try:
            old = _install_release(tree, QSO_MAX_RUNNING_PER_USER="1")
            # A function built by the old builder on the old runtime image.
            make_function(
                api, namespace, "tabled", {"main.py": TABLED}, dependencies=["tabulate==0.9.0"]
            )
            make_function(api, namespace, "slow", {"main.py": SLOW})
            built = wait_function_phase(api, namespace, "tabled", "Ready", timeout=900)
            old_image = built["status"]["image"]
            watcher = Watcher(api_client, namespace, "tabled")
            try:
                make_job(
                    api, namespace, "tabled-old", "tabled", arguments={"inline": {"tag": "t1"}}
                )
                wait_job(api, namespace, "tabled-old", {"DONE"}, timeout=300)
                make_job(api, namespace, "finished", "slow", arguments={"inline": {"tag": "f"}})
                finished = wait_job(api, namespace, "finished", {"DONE"}, timeout=300)["status"]
                make_job(
                    api,
                    namespace,
                    "running",
                    "slow",
                    arguments={"inline": {"tag": "r", "seconds": 150}},
                )
                wait_job(api, namespace, "running", {"RUNNING"}, timeout=300)
                make_job(api, namespace, "queued", "slow", arguments={"inline": {"tag": "q"}})
                wait_job(api, namespace, "queued", {"QUEUED"}, timeout=120)
                (running_pod,) = watcher.pods["running"]

                upgraded = harness("install")
                assert upgraded.returncode == 0, upgraded.stderr + upgraded.stdout
                images = json.loads(
                    kubectl(
                        cluster,
                        "-n",
                        "qiskit-serverless",
                        "get",
                        "deploy",
                        "qiskit-serverless-operator",
                        "-o",
                        "json",
                    ).stdout
                )
                (container,) = images["spec"]["template"]["spec"]["containers"]
                assert container["image"] != old["operator"], "the install did not upgrade"

                # The function keeps its old image while it rebuilds, and runs a new job.
                make_job(
                    api, namespace, "tabled-new", "tabled", arguments={"inline": {"tag": "t2"}}
                )
                for name in ("running", "queued", "tabled-new"):
                    status = wait_job(
                        api, namespace, name, {"DONE", "ERROR", "CANCELED"}, timeout=600
                    )["status"]
                    assert status["phase"] == "DONE", (name, status)
                # The local cluster tags images by content: a new runtime tag is new content,
                # and only new content rebuilds.
                new_runtime = old["runtime"] != cluster["images"]["runtime"]
                if new_runtime:
                    wait_until(
                        lambda: (
                            watcher.function[-1][1:] != ("Built", old_image)
                            and watcher.function[-1][1] == "Built"
                        ),
                        timeout=600,
                        what="the function rebuilt on the new runtime image",
                    )
            finally:
                watcher.stop()
            assert all(phase == "Ready" for phase, _, _ in watcher.function), watcher.function
            rebuilt = any(reason == "Rebuilding" for _, reason, _ in watcher.function)
            assert rebuilt == new_runtime, (new_runtime, watcher.function)

            # Each job ran once: one pod each, the running job's the pod it started in.
            for name in ("tabled-old", "finished", "running", "queued", "tabled-new"):
                assert len(watcher.pods.get(name, ())) == 1, (name, watcher.pods)
            assert watcher.pods["running"] == {running_pod}
            after = wait_job(api, namespace, "finished", {"DONE"})["status"]
            for key in ("phase", "result", "logs"):
                assert after.get(key) == finished.get(key), key

            # Every result through the new gateway, as a Qiskit user reads it.
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", cluster["ca"])  # the gateway's CA
            token = service_account_token(api_client, namespace, "alice")
            rest = ServerlessClient(host=cluster["gateway"], token=token, instance=namespace)
            results = {}
            for name in ("tabled-old", "finished", "running", "queued", "tabled-new"):
                # kubectl's jobs, not alice's own (jobs() lists the caller's): read by id,
                # as anyone in the namespace may.
                job_id = get_job(api, namespace, name)["metadata"]["uid"]
                result = rest.job(job_id).result()
                results[result["tag"]] = result
            assert set(results) == {"t1", "f", "r", "q", "t2"}, results
            assert results["r"]["pod"] == running_pod
            assert results["t1"]["tabulate"] == results["t2"]["tabulate"] == "0.9.0"
        finally:
            delete_jobs_and_functions(cluster, namespace)
            harness("uninstall")
