"""The Kueue tier: real Kueue (tests/cluster/kueue.py), installed once for these tests and
paused after them (its webhooks only ever see namespaces these tests label)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import kueue as kueue_install
from tests.cluster.config import Paths


@pytest.fixture(scope="package")
def kueue(cluster: dict[str, Any]) -> Iterator[None]:
    paths = Paths.from_env()
    kueue_install.install(paths)
    try:
        yield
    finally:
        kueue_install.pause(paths)
