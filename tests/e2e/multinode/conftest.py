"""The multi-node tier: two worker nodes (tests/cluster/nodes.py) joined for these tests and
removed after them, so the rest of the suite (and its next run) sees the one node it expects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import cluster as local_cluster
from tests.cluster import nodes
from tests.cluster.config import Paths

NODE_COUNT = 3


@pytest.fixture(scope="package")
def cluster_nodes(cluster: dict[str, Any]) -> Iterator[list[dict[str, str]]]:
    """The nodes (name, ip, pod_subnet), node 0 first."""
    paths = Paths.from_env()
    had = {w.name for w in nodes.workers(paths)}
    try:
        yield local_cluster.up(paths, NODE_COUNT)["nodes"]
    finally:
        for worker in nodes.workers(paths):
            if worker.name not in had:
                nodes.stop(paths, worker)
