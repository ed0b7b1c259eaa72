"""GitOps with the real Argo CD: a team's git folder of QiskitFunction and ServerlessJob YAML,
synced by manifests/argocd/application-functions.yaml, with our Lua health checks deciding
the Application's health. The test only pushes commits and reads what Argo CD and the
operator wrote; nothing here plays Argo CD's part."""

from __future__ import annotations

import json
from typing import Any

import yaml
from kubernetes import client

from qiskit_serverless_operator import constants as c
from tests.cluster import argocd as argocd_install
from tests.cluster.cluster import kubectl
from tests.cluster.config import Paths
from tests.e2e.gitops.conftest import GitRepo
from tests.kube import wait_until
from tests.serverless import BuildJobCounter, custom, get_job, read_object

PROGRAM = """
import tabulate
from qiskit_serverless import save_result
print(tabulate.tabulate([["marker", MARKER]]))
save_result({"marker": MARKER, "tabulate": tabulate.__version__})
"""


def _function(name: str, marker: str, dependency: str = "tabulate==0.9.0") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": c.API_VERSION,
            "kind": c.FUNCTION_KIND,
            "metadata": {"name": name},
            "spec": {
                "title": name,
                "entrypoint": "main.py",
                "dependencies": [dependency],
                "source": {"files": {"main.py": PROGRAM.replace("MARKER", repr(marker))}},
            },
        }
    )


def _job(name: str, function: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": c.API_VERSION,
            "kind": c.JOB_KIND,
            "metadata": {"name": name},
            "spec": {
                "function": function,
                "arguments": {"inline": {"n": 1}},
                "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}},
            },
        }
    )


def _refresh(paths: Paths, app: str) -> None:
    """What Argo CD's git webhook handler does on a push: ask for a refresh now instead of at
    the next reconciliation (every 10 s here, which also works, only slower)."""
    kubectl(
        paths,
        "-n",
        argocd_install.NAMESPACE,
        "annotate",
        "--overwrite",
        "application",
        app,
        "argocd.argoproj.io/refresh=normal",
    )


def _app_at(paths: Paths, app: str, revision: str, health: str) -> dict[str, Any] | None:
    """The Application once Argo CD synced ``revision`` and found it ``health``."""
    body = argocd_install.app_json(paths, app)
    status = (body or {}).get("status") or {}
    sync, got = status.get("sync") or {}, (status.get("health") or {}).get("status")
    if sync.get("revision") == revision and sync.get("status") == "Synced" and got == health:
        return status
    return None


def _resource_health(status: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    for resource in status.get("resources") or []:
        if resource["kind"] == kind and resource["name"] == name:
            return resource.get("health") or {}
    raise AssertionError(f"{kind}/{name} is not among the Application's resources: {status}")


def _function_or_none(api: client.CustomObjectsApi, namespace: str, name: str):
    try:
        return api.get_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.FUNCTION_PLURAL, name
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_argo_cd_syncs_functions_and_jobs_from_git(
    api_client: client.ApiClient,
    cluster: dict,
    namespace: str,
    operator,
    argocd: Paths,
    git_repo: GitRepo,
) -> None:
    api = custom(api_client)
    counter = BuildJobCounter(client.BatchV1Api(api_client), namespace)
    app = "functions-" + namespace.rsplit("-", 1)[1]  # the namespace ends in a unique suffix
    try:
        first = git_repo.commit(
            "a function and a job of it",
            {
                "functions/tabulated.yaml": _function("tabulated", "v1"),
                "functions/run-1.yaml": _job("run-1", "tabulated"),
            },
        )
        created = kubectl(
            argocd,
            "apply",
            "-f",
            "-",
            input=json.dumps(argocd_install.application(app, git_repo.name, namespace)),
            check=False,
        )
        assert created.returncode == 0, created.stderr

        # Synced, built, run: the job's DONE and the function's Ready make the app Healthy.
        status = wait_until(
            lambda: _app_at(argocd, app, first, "Healthy"),
            timeout=420,
            what="Argo CD reporting the first commit Synced and Healthy",
            interval=3,
        )
        job = get_job(api, namespace, "run-1")
        assert job["status"]["phase"] == "DONE", job["status"]
        assert json.loads(read_object(cluster, job["status"]["result"]))["marker"] == "v1"
        assert _resource_health(status, c.FUNCTION_KIND, "tabulated")["status"] == "Healthy"
        assert _resource_health(status, c.JOB_KIND, "run-1")["status"] == "Healthy"
        assert len(counter.names) == 1, counter.names
        image_v1 = _function_or_none(api, namespace, "tabulated")["status"]["image"]

        # A change of the function in git: exactly one new build, the app Healthy again.
        second = git_repo.commit(
            "v2 of the function", {"functions/tabulated.yaml": _function("tabulated", "v2")}
        )
        _refresh(argocd, app)
        wait_until(
            lambda: (
                _app_at(argocd, app, second, "Healthy")
                and _function_or_none(api, namespace, "tabulated")["status"]["image"] != image_v1
            ),
            timeout=300,
            what="the changed function rebuilt and the app Healthy",
            interval=3,
        )
        assert len(counter.names) == 2, counter.names
        # The job that ran on v1 is left as it was.
        assert get_job(api, namespace, "run-1")["status"]["phase"] == "DONE"

        # A function whose build fails: the app is Degraded, with the build's reason.
        third = git_repo.commit(
            "a function that cannot build",
            {"functions/broken.yaml": _function("broken", "x", "qso-no-such-package-4f1d==1.0")},
        )
        _refresh(argocd, app)
        status = wait_until(
            lambda: _app_at(argocd, app, third, "Degraded"),
            timeout=300,
            what="Argo CD reporting the app Degraded",
            interval=3,
        )
        broken = _resource_health(status, c.FUNCTION_KIND, "broken")
        assert broken["status"] == "Degraded", broken
        assert "qso-no-such-package-4f1d" in broken.get("message", ""), broken
        assert _resource_health(status, c.FUNCTION_KIND, "tabulated")["status"] == "Healthy"

        # Removed from git: pruned from the cluster. The job stays in git, so it stays, and
        # so does its stored result (a job's result goes only with the job itself).
        fourth = git_repo.commit(
            "retire both functions",
            {"functions/broken.yaml": None, "functions/tabulated.yaml": None},
        )
        _refresh(argocd, app)
        wait_until(
            lambda: (
                _app_at(argocd, app, fourth, "Healthy")
                and _function_or_none(api, namespace, "tabulated") is None
                and _function_or_none(api, namespace, "broken") is None
            ),
            timeout=180,
            what="both functions pruned and the app Healthy",
            interval=3,
        )
        job = get_job(api, namespace, "run-1")
        assert job["status"]["phase"] == "DONE"
        assert json.loads(read_object(cluster, job["status"]["result"]))["marker"] == "v1"
    finally:
        counter.stop()
        # The Application's finalizer removes what it synced before the namespace goes.
        kubectl(
            argocd,
            "-n",
            argocd_install.NAMESPACE,
            "delete",
            "application",
            app,
            "--ignore-not-found",
            "--timeout=120s",
            check=False,
        )
