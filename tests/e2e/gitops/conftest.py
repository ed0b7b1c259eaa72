"""The GitOps tier: real Argo CD (tests/cluster/argocd.py), started for these tests and
stopped after them, and git repositories it reads from the node's git daemon."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import argocd as argocd_install
from tests.cluster.config import Paths


class GitRepo:
    """A bare repository served by the git daemon, and a clone of it that commits and pushes
    (as a user's laptop would)."""

    def __init__(self, paths: Paths, name: str, work: Path) -> None:
        self.name = name
        self.url = argocd_install.git_url(name)
        self.bare = argocd_install.git_root(paths) / f"{name}.git"
        self.work = work
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
        self._git("config", "user.name", "Quantum Team")
        self._git("config", "user.email", "team@example.org")
        self._git("remote", "add", "origin", str(self.bare))

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.work, check=True, capture_output=True, text=True
        ).stdout

    def commit(self, message: str, files: dict[str, str | None]) -> str:
        """Write (or, for None, delete) ``files``, commit, push; return the commit's SHA."""
        for name, text in files.items():
            path = self.work / name
            if text is None:
                self._git("rm", "-q", name)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            self._git("add", name)
        self._git("commit", "-q", "-m", message)
        self._git("push", "-q", "origin", "main")
        return self._git("rev-parse", "HEAD").strip()


@pytest.fixture(scope="package")
def argocd(cluster: dict[str, Any]) -> Iterator[Paths]:
    paths = Paths.from_env()
    argocd_install.start(paths)
    try:
        yield paths
    finally:
        argocd_install.stop(paths)


@pytest.fixture
def git_repo(argocd: Paths, namespace: str, tmp_path: Path) -> Iterator[GitRepo]:
    repo = GitRepo(argocd, namespace, tmp_path / "work")
    try:
        yield repo
    finally:
        subprocess.run(["rm", "-rf", str(repo.bare)], check=False)
