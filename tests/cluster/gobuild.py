"""Compile the cluster's Go components from the pinned build-only modules, with a cache.

Each module under ``gobuild/`` pins its versions in go.mod/go.sum.  The output
folder is keyed by a hash of those files, the Go toolchain and the link flags,
so a warm run finds every binary and compiles nothing.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import config
from .progress import run_with_heartbeat

_K8S = config.KUBERNETES_VERSION
_K8S_MINOR = _K8S.lstrip("v").split(".")[1]
_VERSION_LDFLAGS = " ".join(
    f"-X {pkg}.{key}={value}"
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    for key, value in (
        ("gitVersion", _K8S),
        ("gitMajor", "1"),
        ("gitMinor", _K8S_MINOR),
        ("gitTreeState", "clean"),
    )
)


@dataclass(frozen=True)
class GoModule:
    name: str
    binaries: tuple[str, ...]
    # What `go build` is asked for: the module's tools, or the module's own main package.
    target: str = "tool"
    ldflags: str = "-s -w"
    rename: tuple[tuple[str, str], ...] = ()

    @property
    def dir(self) -> Path:
        return config.GOBUILD_DIR / self.name


MODULES = (
    GoModule(
        "kubernetes",
        (
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "kube-proxy",
            "kubectl",
        ),
        ldflags=f"-s -w {_VERSION_LDFLAGS}",
    ),
    # etcd's main package is go.etcd.io/etcd/server/v3; go drops the /v3 and names it "server".
    GoModule("etcd", ("etcd",), rename=(("server", "etcd"),)),
    GoModule("coredns", ("coredns",)),
    GoModule("critools", ("crictl",)),
    GoModule("crane", ("crane",)),
    GoModule("pause", ("pause",), target="."),
)

# Add-ons: built only for the test tiers that run them (tests/cluster/kueue.py, argocd.py);
# scripts/test builds them in the background while the other tiers run.
KUEUE = GoModule("kueue", ("kueue",))
ARGOCD = GoModule("argocd", ("argocd",), target=".")
# Helm for the chart's tests (tests/e2e/helm); `helm version` says the version it was built as.
HELM_VERSION = "v4.3.2"
HELM = GoModule(
    "helm", ("helm",), ldflags=f"-s -w -X helm.sh/helm/v4/internal/version.version={HELM_VERSION}"
)
ADDONS = (KUEUE, ARGOCD, HELM)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the Go toolchain is required to build the cluster (go not on PATH)")
    return go


def cache_key(module: GoModule, go_version: str) -> str:
    digest = hashlib.sha256()
    digest.update(go_version.encode())
    digest.update(module.ldflags.encode())
    digest.update(module.target.encode())
    for path in sorted(module.dir.iterdir()):
        if path.is_file() and (path.suffix in {".go", ".mod", ".sum"}):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Static binaries: they run in scratch images (pause, CoreDNS) and need no libc.
    env["CGO_ENABLED"] = "0"
    # The build modules only pin versions; go.sum is complete, so a tidy never runs here.
    env.setdefault("GOFLAGS", "-mod=mod")
    # The toolchain on the machine builds everything; never fetch another one.
    env["GOTOOLCHAIN"] = "local"
    return env


@functools.cache
def _go_version(go: str) -> str:
    return subprocess.run(
        [go, "env", "GOVERSION"], check=True, capture_output=True, text=True
    ).stdout.strip()


def build(paths: config.Paths, module: GoModule, go: str | None = None) -> Path:
    """Build ``module`` (or find it in the cache); return the folder holding its binaries."""
    go = go or _go()
    go_version = _go_version(go)
    out = paths.bin / f"{module.name}-{cache_key(module, go_version)}"
    if (out / ".complete").exists():
        return out
    paths.bin.mkdir(parents=True, exist_ok=True)
    # One build at a time per module: a test waits for the build scripts/test started
    # in the background instead of starting a second one.
    with (paths.bin / f".{module.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / ".complete").exists():
            _build(paths, module, go, go_version, out)
    return out


def _build(paths: config.Paths, module: GoModule, go: str, go_version: str, out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    run_with_heartbeat(
        [go, "build", "-trimpath", "-ldflags", module.ldflags, "-o", f"{tmp}/", module.target],
        cwd=module.dir,
        env=_go_env(),
        what=f"go build {module.name} ({', '.join(module.binaries)})",
        log=paths.cache / "logs" / f"gobuild-{module.name}.log",
    )
    for old, new in module.rename:
        (tmp / old).rename(tmp / new)
    missing = [b for b in module.binaries if not (tmp / b).exists()]
    if missing:
        raise RuntimeError(f"go build {module.name} did not produce {missing}")
    (tmp / ".complete").write_text(go_version + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def module_source(module: GoModule, path: str) -> Path:
    """Where the Go module cache holds ``path`` (a module ``module`` pins), after a build."""
    out = subprocess.run(
        [_go(), "list", "-m", "-f", "{{.Dir}}", path],
        cwd=module.dir,
        env=_go_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def build_all(paths: config.Paths) -> dict[str, Path]:
    """Build (or find in the cache) every binary the cluster itself needs; return name → path."""
    go = _go()
    found: dict[str, Path] = {}
    for module in MODULES:
        out = build(paths, module, go)
        for binary in module.binaries:
            found[binary] = out / binary
    return found
