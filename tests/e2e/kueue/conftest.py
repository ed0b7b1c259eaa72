"""The Kueue tier: real Kueue (tests/cluster/kueue.py), installed once for these tests and
left running (its webhooks only see namespaces these tests label, so it is in nobody's way)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cluster import kueue as kueue_install
from tests.cluster.config import Paths


@pytest.fixture(scope="package")
def kueue(cluster: dict[str, Any]) -> None:
    kueue_install.install(Paths.from_env())
