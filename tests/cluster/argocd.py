"""Real Argo CD beside the local cluster, for the GitOps tests (tests/e2e/gitops).

Argo CD's application controller and repo server (built from github.com/argoproj/argo-cd/v2,
``gobuild/argocd``) run as host processes, the way Argo CD's own ``make start-local`` runs
them: against the cluster through the admin kubeconfig (``ARGOCD_FAKE_IN_CLUSTER`` makes
``https://kubernetes.default.svc`` mean that kubeconfig's cluster), with a Redis of their own
(Debian's redis-server) and git repositories served by ``git daemon`` on loopback. Its CRDs
come from the module's ``manifests/crds``; its settings are ``argocd-cm`` with our health
checks (rendered from manifests/argocd, the way users install them), the ``default``
AppProject (which Argo CD's API server would create; it is not run here), and a
reconciliation period of 10 s instead of 180 s, so that a test need not wait minutes for a
poll. No API server, UI, Dex or ApplicationSet controller: nothing here uses them.

Why v2.14 and not v3: the v3 module needs a newer Go than this machine's, and both v3 lines
(and the v2 ones before 2.14) depend on pseudo-versions of gitops-engine that the module proxy
does not serve (docs/install.md, "GitOps").
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from . import config, gobuild, procs
from .cluster import apply_docs, ensure_packages, kubectl
from .config import Paths
from .progress import say

VERSION = "v2.14.21"
NAMESPACE = "argocd"
PACKAGES = ("redis-server", "git")
PROCESSES = ("argocd-redis", "argocd-git-daemon", "argocd-repo-server", "argocd-controller")
RECONCILIATION = "10s"


def git_root(paths: Paths) -> Path:
    """Where the served bare repositories live: ``git://127.0.0.1:PORT/NAME.git``."""
    return paths.state / "git"


def git_url(name: str) -> str:
    return f"git://127.0.0.1:{config.GIT_DAEMON_PORT}/{name}.git"


def _check(out: subprocess.CompletedProcess[str], what: str) -> str:
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def settings(rendered_argocd: str) -> list[dict[str, Any]]:
    """Argo CD's settings objects: our ``argocd-cm`` (manifests/argocd's, with its health
    checks) plus what Argo CD's own install would hold and its API server would create."""
    ours = [d for d in yaml.safe_load_all(rendered_argocd) if d and d["kind"] == "ConfigMap"]
    (cm,) = [d for d in ours if d["metadata"]["name"] == "argocd-cm"]
    cm["data"]["timeout.reconciliation"] = RECONCILIATION
    cm["data"]["timeout.reconciliation.jitter"] = "0s"
    meta = {"namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "argocd"}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        cm,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-rbac-cm", **meta},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-secret", **meta},
            "stringData": {"server.secretkey": secrets.token_urlsafe(32)},
        },
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AppProject",
            "metadata": {"name": "default", "namespace": NAMESPACE},
            "spec": {
                "sourceRepos": ["*"],
                "destinations": [{"namespace": "*", "server": "*"}],
                "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
            },
        },
    ]


def _wait_established(paths: Paths, name: str, timeout: float = 60) -> None:
    # Not `kubectl wait --for=condition=Established`: on a CRD just created it fails at
    # once, before the apiserver has written any condition.
    deadline = time.monotonic() + timeout
    while True:
        out = kubectl(paths, "get", "crd", name, "-o", "json", check=False)
        body = json.loads(out.stdout) if out.returncode == 0 else {}
        conditions = (body.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"CRD {name} not Established after {timeout:.0f} s")
        time.sleep(0.5)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_port(paths: Paths, name: str, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not _listening(port):
        dead = procs.exited_early(paths, name)
        if dead:
            raise RuntimeError(dead)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} is not listening on port {port} after {timeout:.0f} s")
        time.sleep(0.5)


def start(paths: Paths) -> None:
    """Build (cached) and start Argo CD; return once its components listen."""
    ensure_packages(paths, PACKAGES)
    binary = gobuild.build(paths, gobuild.ARGOCD) / "argocd"
    source = gobuild.module_source(gobuild.ARGOCD, "github.com/argoproj/argo-cd/v2")
    say(f"installing Argo CD {VERSION}'s CRDs and settings")
    crds = [
        d
        for name in ("application-crd.yaml", "appproject-crd.yaml")
        for d in yaml.safe_load_all((source / "manifests" / "crds" / name).read_text())
        if d
    ]
    apply_docs(paths, crds, "applying Argo CD's CRDs")
    for crd in crds:
        _wait_established(paths, crd["metadata"]["name"])
    rendered = _check(
        kubectl(paths, "kustomize", str(config.REPO_ROOT / "manifests" / "argocd"), check=False),
        "kubectl kustomize manifests/argocd",
    )
    apply_docs(paths, settings(rendered), "applying Argo CD's settings")

    root = git_root(paths)
    root.mkdir(parents=True, exist_ok=True)
    data = paths.state / "argocd"
    for folder in ("tls", "ssh", "gnupg"):
        (data / folder).mkdir(parents=True, exist_ok=True)
    env = {
        "KUBECONFIG": str(paths.kubeconfig),
        "ARGOCD_FAKE_IN_CLUSTER": "true",
        # Its container image's /app/config, here under the cluster's state; no commit
        # signature checks (GnuPG), which the Applications do not ask for.
        "ARGOCD_TLS_DATA_PATH": str(data / "tls"),
        "ARGOCD_SSH_DATA_PATH": str(data / "ssh"),
        "ARGOCD_GNUPGHOME": str(data / "gnupg"),
        "ARGOCD_GPG_ENABLED": "false",
    }
    procs.start(
        paths,
        "argocd-redis",
        [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port",
            str(config.ARGOCD_REDIS_PORT),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    )
    procs.start(
        paths,
        "argocd-git-daemon",
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            f"--base-path={root}",
            "--listen=127.0.0.1",
            f"--port={config.GIT_DAEMON_PORT}",
            str(root),
        ],
    )
    redis = f"127.0.0.1:{config.ARGOCD_REDIS_PORT}"
    procs.start(
        paths,
        "argocd-repo-server",
        [
            binary,
            "--port",
            str(config.ARGOCD_REPO_SERVER_PORT),
            "--metrics-port",
            str(config.ARGOCD_REPO_SERVER_METRICS_PORT),
            "--redis",
            redis,
            "--disable-tls",
            # Resolve `main` again on every comparison: a test pushes and expects the change.
            "--revision-cache-expiration",
            "1s",
        ],
        env={**env, "ARGOCD_BINARY_NAME": "argocd-repo-server"},
        cwd=paths.state,
    )
    procs.start(
        paths,
        "argocd-controller",
        [
            binary,
            "--namespace",
            NAMESPACE,
            "--kubeconfig",
            str(paths.kubeconfig),
            "--redis",
            redis,
            "--repo-server",
            f"127.0.0.1:{config.ARGOCD_REPO_SERVER_PORT}",
            "--repo-server-plaintext",
            "--metrics-port",
            str(config.ARGOCD_CONTROLLER_METRICS_PORT),
            "--app-resync",
            RECONCILIATION.rstrip("s"),
        ],
        env={**env, "ARGOCD_BINARY_NAME": "argocd-application-controller"},
        cwd=paths.state,
    )
    for name, port in (
        ("argocd-redis", config.ARGOCD_REDIS_PORT),
        ("argocd-git-daemon", config.GIT_DAEMON_PORT),
        ("argocd-repo-server", config.ARGOCD_REPO_SERVER_PORT),
        ("argocd-controller", config.ARGOCD_CONTROLLER_METRICS_PORT),
    ):
        _wait_port(paths, name, port)
    say("Argo CD's application controller and repo server are running")


def stop(paths: Paths) -> None:
    for name in reversed(PROCESSES):
        procs.stop(paths, name)


def application(name: str, repo: str, namespace: str) -> dict[str, Any]:
    """manifests/argocd/application-functions.yaml, pointed at ``repo`` and ``namespace``."""
    path = config.REPO_ROOT / "manifests" / "argocd" / "application-functions.yaml"
    app = yaml.safe_load(path.read_text())
    app["metadata"]["name"] = name
    app["metadata"]["namespace"] = NAMESPACE
    app["spec"]["source"]["repoURL"] = git_url(repo)
    app["spec"]["destination"]["namespace"] = namespace
    return app


def app_json(paths: Paths, name: str) -> dict[str, Any] | None:
    out = kubectl(paths, "-n", NAMESPACE, "get", "application", name, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None
