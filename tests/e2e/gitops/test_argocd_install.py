"""The operator installed by Argo CD on a cluster that never had our CRDs: the Application of
manifests/argocd/application-operator.yaml, pointed at a git repository holding this tree's
manifests/overlays/local rendered (with the site values `up` wrote). Argo CD applies the
CRDs in their sync wave, then the rest; the operator makes its own peering object; a job
runs. Deleting the Application removes the install and leaves the CRDs and every job (their
`Delete=false` sync option), as `helm uninstall` does."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import argocd as argocd_install
from tests.cluster.cluster import kubectl as cluster_kubectl
from tests.cluster.config import Paths
from tests.cluster.install import NAMESPACE
from tests.cluster.operator_local import apply_api
from tests.e2e.gitops.conftest import GitRepo
from tests.in_cluster import write_local_overlay
from tests.kube import (
    OUR_CRDS,
    REPO_ROOT,
    delete_jobs_and_functions,
    harness,
    kubectl,
    run_examples,
    served_crds,
    session_operator_paused,
    wait_until,
)

APP = "qiskit-serverless-operator"


def _tree(cluster: dict[str, Any]) -> dict[str, str]:
    """What the git repository holds: the local overlay rendered (`kubectl kustomize`, with
    the site values `up` wrote), one file, as the rendered-manifests pattern keeps it. The
    harness's Argo CD repo server has no kustomize binary of its own."""
    write_local_overlay(cluster)
    overlay = REPO_ROOT / "manifests" / "overlays" / "local"
    rendered = kubectl(cluster, "kustomize", str(overlay)).stdout
    return {"install/qiskit-serverless.yaml": rendered}


def _application(repo: str) -> dict[str, Any]:
    path = REPO_ROOT / "manifests" / "argocd" / "application-operator.yaml"
    app = yaml.safe_load(path.read_text())
    app["metadata"]["namespace"] = argocd_install.NAMESPACE
    app["spec"]["source"]["repoURL"] = argocd_install.git_url(repo)
    app["spec"]["source"]["path"] = "install"
    return app


def _delete_application(paths: Paths, *flags: str) -> subprocess.CompletedProcess[str]:
    """Delete the Application, waiting for its finalizer to remove what it synced."""
    return cluster_kubectl(
        paths,
        "-n",
        argocd_install.NAMESPACE,
        "delete",
        "application",
        APP,
        *flags,
        "--timeout=300s",
        check=False,
    )


def _synced_healthy(paths: Paths) -> dict[str, Any] | None:
    status = (argocd_install.app_json(paths, APP) or {}).get("status") or {}
    sync, health = status.get("sync") or {}, (status.get("health") or {}).get("status")
    return status if sync.get("status") == "Synced" and health == "Healthy" else None


def test_argo_cd_installs_the_operator_on_a_cluster_without_our_crds(
    cluster: dict[str, Any], crds: None, namespace: str, argocd: Paths, tmp_path: Path
) -> None:
    repo = GitRepo(argocd, f"install-{namespace.rsplit('-', 1)[1]}", tmp_path / "work")
    with session_operator_paused():
        try:
            removed = harness("uninstall", "--api")
            assert removed.returncode == 0, removed.stderr
            assert not served_crds(cluster) & set(OUR_CRDS)
            repo.commit("the operator's install", _tree(cluster))
            created = cluster_kubectl(
                argocd, "apply", "-f", "-", input=json.dumps(_application(repo.name)), check=False
            )
            assert created.returncode == 0, created.stderr
            status = wait_until(
                lambda: _synced_healthy(argocd),
                timeout=420,
                what="Argo CD reporting the operator's Application Synced and Healthy",
                interval=3,
            )
            kinds = {(r["kind"], r["name"]) for r in status["resources"]}
            assert ("CustomResourceDefinition", "serverlessjobs.serverless.qiskit.org") in kinds
            assert ("Deployment", "qiskit-serverless-operator") in kinds
            assert set(OUR_CRDS) <= served_crds(cluster)

            run_examples(cluster, namespace)

            # The Application deleted: the install goes, the CRDs and the job stay.
            deleted = _delete_application(argocd)
            assert deleted.returncode == 0, deleted.stderr
            wait_until(
                lambda: (
                    kubectl(cluster, "get", "namespace", NAMESPACE, check=False).returncode != 0
                ),
                timeout=300,
                what=f"namespace {NAMESPACE} removed with the Application",
            )
            assert set(OUR_CRDS) <= served_crds(cluster)
            out = kubectl(cluster, "-n", namespace, "get", "sj/hello", "-o", "json").stdout
            job = json.loads(out)
            assert job["status"]["phase"] == "DONE"
        finally:
            _delete_application(argocd, "--ignore-not-found")
            shutil.rmtree(repo.bare, ignore_errors=True)
            # The API as the session had it (the Application took the admission policy).
            apply_api(Paths.from_env())
    # The session's operator, running again, releases the job's finalizer.
    delete_jobs_and_functions(cluster, namespace)
