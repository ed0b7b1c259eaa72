"""Shared pytest set-up: each test gets the marker of its tier from its folder.

The cluster fixtures are declared here, once for the whole run: declared in both
tests/integration/conftest.py and tests/e2e/conftest.py, a session-scoped fixture is two
fixtures, so a run of both tiers started two session operators on the same ports (the second
one's startup failed to bind and retried while the first did its work, so a test that
stopped "the" operator stopped the wrong one). They are lazy: unit tests never start them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kube import api_client, cluster, core, crds, namespace, operator  # noqa: F401

# A folder of that name puts its tests in the tier (e2e/kueue is both e2e and kueue).
_TIERS = ("unit", "integration", "e2e", "kueue", "gitops", "helm", "upgrade", "multinode")


# Tiers that run a component built for them (Kueue, Argo CD, Helm) go last: scripts/test builds
# those in the background while the other tiers run. The multi-node tier is the very last:
# every other test expects the one node.
_LAST = ("kueue", "gitops", "helm", "multinode")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
    items.sort(
        key=lambda item: (
            bool(item.get_closest_marker("multinode")),
            any(item.get_closest_marker(tier) for tier in _LAST),
        )
    )
