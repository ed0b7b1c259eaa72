"""The operator's copy of the functions jobs read (controller/catalog.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from qiskit_serverless_operator.controller import catalog

pytestmark = pytest.mark.unit


def qf(name: str, title: str, phase: str = "Ready", provider: str | None = None) -> dict:
    spec: dict[str, Any] = {"title": title, "source": {"files": {"main.py": "print(1)" * 1000}}}
    if provider:
        spec["provider"] = provider
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec, "status": {"phase": phase}}


def sj(title: str) -> dict:
    return {"metadata": {"name": "j", "namespace": "ns"}, "spec": {"function": title}}


class ListingKube:
    """The API server's answer to a list by title, counted."""

    def __init__(self, functions: list[dict]) -> None:
        self.functions = functions
        self.lists = 0

    async def list_cached(self, res: Any, namespace: str, fields: dict[str, str]) -> list:
        self.lists += 1
        return [f for f in self.functions if f["spec"]["title"] == fields["spec.title"]]


class Ctx:
    def __init__(self, kube: ListingKube) -> None:
        self.kube = kube


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    catalog._seen.clear()


def find(kube: ListingKube, title: str) -> dict | None:
    return asyncio.run(catalog.find_function(Ctx(kube), sj(title)))  # type: ignore[arg-type]


def test_a_function_seen_is_not_asked_for_again_and_keeps_only_its_file_names() -> None:
    kube = ListingKube([qf("f1", "tiny")])
    first, second = find(kube, "tiny"), find(kube, "tiny")
    assert kube.lists == 1
    assert first == second and first["spec"]["source"]["files"] == {"main.py": ""}
    assert first["status"]["phase"] == "Ready"


def test_events_and_the_operators_own_writes_replace_what_it_had() -> None:
    kube = ListingKube([])
    catalog.remember(qf("f1", "tiny", phase="Building"))
    assert find(kube, "tiny")["status"]["phase"] == "Building"
    catalog.remember(qf("f1", "tiny", phase="Ready"))
    assert find(kube, "tiny")["status"]["phase"] == "Ready"
    assert kube.lists == 0
    catalog.forget("ns", "f1")
    assert find(kube, "tiny") is None and kube.lists == 1


def test_a_copy_older_than_the_cache_time_is_checked_with_the_api_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = ListingKube([])  # deleted while its DELETED event never came
    catalog.remember(qf("f1", "tiny"))
    clock = [catalog.time.monotonic()]
    monkeypatch.setattr(catalog.time, "monotonic", lambda: clock[0])
    assert find(kube, "tiny") is not None and kube.lists == 0
    clock[0] += catalog.CACHE_SECONDS + 1
    assert find(kube, "tiny") is None and kube.lists == 1


def test_a_provider_catalog_function_matches_by_provider_too() -> None:
    kube = ListingKube([])
    other = qf("other", "tiny", provider="someone-else")
    mine = qf("mine", "tiny", provider="acme")
    for function in (other, mine):  # the catalog: the namespace named after the provider
        function["metadata"]["namespace"] = "acme"
        catalog.remember(function)
    job = {
        "metadata": {"name": "j", "namespace": "user-ns"},
        "spec": {"function": "tiny", "provider": "acme"},
    }
    found = asyncio.run(catalog.find_function(Ctx(kube), job))  # type: ignore[arg-type]
    assert found is not None and found["metadata"]["name"] == "mine" and kube.lists == 0
