"""The tests of the in-cluster install share one install (it takes a minute to roll out and
to remove): the session's own operator is paused while they run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.in_cluster import installed


@pytest.fixture(scope="package")
def in_cluster(cluster: dict[str, Any], crds: None) -> Iterator[list[str]]:
    with installed(cluster) as namespaces:
        yield namespaces
