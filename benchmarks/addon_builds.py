"""Build times of the test tiers' Go components (Kueue, Argo CD), printed as one table.

    .venv/bin/python benchmarks/addon_builds.py

For each add-on module of tests/cluster/gobuild.py: a cold build (an empty Go build cache
and an empty output folder; the module cache is the machine's, so downloads are not
counted), a rebuild with the Go build cache warm (what a changed pin of another module
costs), and the lookup a warm run does (the binary found in the cache: nothing is built).
Nothing else should run meanwhile: a Go build takes both cores.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# The repository's tests package, not the one a dependency puts in site-packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cluster import gobuild
from tests.cluster.config import Paths


def _timed(paths: Paths, module: gobuild.GoModule) -> float:
    start = time.monotonic()
    gobuild.build(paths, module)
    return time.monotonic() - start


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="qso-addon-builds-") as scratch:
        os.environ["GOCACHE"] = str(Path(scratch) / "go-build")
        for module in gobuild.ADDONS:
            paths = Paths(cache=Path(scratch) / module.name, state=Path(scratch) / "state")
            shutil.rmtree(os.environ["GOCACHE"], ignore_errors=True)
            cold = _timed(paths, module)
            shutil.rmtree(paths.bin)
            rebuilt = _timed(paths, module)
            found = _timed(paths, module)
            size = sum(f.stat().st_size for f in paths.bin.glob(f"{module.name}-*/*"))
            rows.append((module.name, cold, rebuilt, found, size / 2**20))
    print(f"\n{'add-on':<10}{'cold (s)':>10}{'Go cache warm (s)':>19}{'cached (s)':>12}{'MiB':>8}")
    print("-" * 59)
    for name, cold, rebuilt, found, mib in rows:
        print(f"{name:<10}{cold:>10.1f}{rebuilt:>19.1f}{found:>12.2f}{mib:>8.1f}")


if __name__ == "__main__":
    main()
