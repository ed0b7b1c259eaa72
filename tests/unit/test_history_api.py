"""The history API's pieces without a cluster (gateway/history_api.py): discovery, listings
paged with continue tokens, field selectors, kubectl's Table, the front proxy's identity,
and errors in the Kubernetes Status shape. The real API server proxies to it in
tests/e2e/in_cluster/test_job_history.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from qiskit_serverless_operator.archive.query import JobKey
from qiskit_serverless_operator.gateway import history_api
from qiskit_serverless_operator.gateway.history import JobHistory
from qiskit_serverless_operator.gateway.live import LiveJobs
from qiskit_serverless_operator.gateway.state import GATEWAY

pytestmark = pytest.mark.unit

PROXY = history_api.FrontProxy(allowed_names=frozenset({"front-proxy-client"}))


def body(n: int, namespace: str = "ns", phase: str = "DONE", user: str = "alice") -> dict:
    uid = f"00000000-0000-4000-8000-{n:012d}"
    return {
        "metadata": {
            "name": f"job-{n}",
            "namespace": namespace,
            "uid": uid,
            "creationTimestamp": "2026-12-07T10:00:00Z",
            "annotations": {
                "serverless.qiskit.org/submitted-at": f"{1000.0 + n:.6f}",
                "serverless.qiskit.org/submitter": user,
            },
        },
        "spec": {"function": "f" if n % 2 else "g"},
        "status": {"phase": phase},
    }


class Authority:
    """Allows what ``allowed`` lists, as (verb, namespace, subresource)."""

    def __init__(self, allowed: set[tuple[str, str, str | None]]) -> None:
        self.allowed_set = allowed
        self.asked: list[tuple[str, str, str | None]] = []

    async def allowed(self, caller: Any, verb: str, resource: str, **kw: Any) -> tuple[bool, str]:
        ask = (verb, kw.get("namespace") or "", kw.get("subresource"))
        self.asked.append(ask)
        return ask in self.allowed_set, ""


def app(allowed: set[tuple[str, str, str | None]], count: int = 7) -> web.Application:
    live = LiveJobs()
    for n in range(1, count + 1):
        live.put(body(n))
    live.put(body(100, namespace="other"))
    gateway = SimpleNamespace(history=JobHistory(live), authority=Authority(allowed))
    return history_api.app(gateway, PROXY)  # type: ignore[arg-type]


def call(
    application: web.Application,
    path: str,
    *,
    cert: dict | None = None,
    user: str | None = "alice",
    accept: str = "application/json",
    method: str = "GET",
) -> tuple[int, Any]:
    cert = {"subject": ((("commonName", "front-proxy-client"),),)} if cert is None else cert
    transport = SimpleNamespace(get_extra_info=lambda key, default=None: cert or None)
    headers = {"Accept": accept}
    if user:
        headers["X-Remote-User"] = user
        headers["X-Remote-Group"] = "system:authenticated"
    request = make_mocked_request(method, path, headers=headers, app=application)
    request._transport_peername = None  # type: ignore[attr-defined]
    object.__setattr__(request, "_protocol", SimpleNamespace(transport=transport))

    async def run() -> web.StreamResponse:
        match = await application.router.resolve(request)
        request._match_info = match  # type: ignore[attr-defined]
        match.add_app(application)
        handler = match.handler
        for middleware in reversed(application.middlewares):
            handler = _wrap(middleware, handler)
        return await handler(request)

    response = asyncio.run(run())
    import json

    return response.status, json.loads(response.body)  # type: ignore[attr-defined]


def _wrap(middleware: Any, handler: Any) -> Any:
    async def wrapped(request: web.Request) -> Any:
        return await middleware(request, handler)

    return wrapped


NS = "/apis/history.serverless.qiskit.org/v1alpha1/namespaces/ns/serverlessjobrecords"
ALLOWED = {("list", "ns", None), ("get", "ns", None), ("get", "ns", "logs")}


def test_discovery_names_the_resource_and_its_subresources() -> None:
    status, found = call(app(set()), "/apis/history.serverless.qiskit.org/v1alpha1")
    assert status == 200 and found["groupVersion"] == "history.serverless.qiskit.org/v1alpha1"
    names = {r["name"] for r in found["resources"]}
    assert names == {
        "serverlessjobrecords",
        "serverlessjobrecords/result",
        "serverlessjobrecords/logs",
        "serverlessjobrecords/providerlogs",
    }


def test_a_list_pages_newest_first_with_continue_tokens() -> None:
    application = app(ALLOWED)
    status, first = call(application, NS + "?limit=3")
    assert status == 200 and first["kind"] == "ServerlessJobRecordList"
    names = [i["metadata"]["annotations"]["serverless.qiskit.org/job-name"] for i in first["items"]]
    assert names == ["job-7", "job-6", "job-5"]
    token = first["metadata"]["continue"]
    _, second = call(application, NS + f"?limit=3&continue={token}")
    assert [i["metadata"]["name"][-1] for i in second["items"]] == ["4", "3", "2"]
    _, last = call(application, NS + "?limit=3&continue=" + second["metadata"]["continue"])
    assert len(last["items"]) == 1 and "continue" not in last["metadata"]
    # The namespace's own jobs only; the record is named by the job id.
    assert all(i["metadata"]["namespace"] == "ns" for i in first["items"] + second["items"])
    assert first["items"][0]["metadata"]["name"] == "00000000-0000-4000-8000-000000000007"


def test_field_selectors_and_offsets() -> None:
    application = app(ALLOWED)
    _, only_g = call(application, NS + "?fieldSelector=spec.function%3Dg")
    assert {i["spec"]["function"] for i in only_g["items"]} == {"g"} and len(only_g["items"]) == 3
    _, by_id = call(
        application, NS + "?fieldSelector=metadata.name%3D00000000-0000-4000-8000-000000000002"
    )
    assert [i["metadata"]["name"][-1] for i in by_id["items"]] == ["2"]
    _, skipped = call(application, NS + "?limit=2&offset=2")
    assert [i["metadata"]["name"][-1] for i in skipped["items"]] == ["5", "4"]
    status, bad = call(application, NS + "?fieldSelector=spec.image%3Dx")
    assert status == 400 and bad["kind"] == "Status" and "not supported" in bad["message"]
    status, bad = call(application, NS + "?labelSelector=a%3Db")
    assert status == 400
    status, bad = call(application, NS + "?fieldSelector=status.phase%3DWAITING")
    assert status == 400 and "not a job phase" in bad["message"]
    status, _ = call(application, NS + "?continue=garbage")
    assert status == 410  # an expired or foreign token, as the API server says it


def test_kubectl_gets_a_table() -> None:
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    _, table = call(app(ALLOWED), NS + "?limit=2", accept=accept)
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:4] == [
        "Name",
        "Job",
        "Function",
        "Status",
    ]
    assert table["rows"][0]["cells"][1:4] == ["job-7", "f", "DONE"]


def test_rbac_decides_and_refusals_are_kubernetes_statuses() -> None:
    application = app({("get", "ns", None)})
    status, refused = call(application, NS)
    assert status == 403 and refused["reason"] == "Forbidden"
    assert (
        'cannot list resource "serverlessjobrecords.history.serverless.qiskit.org"'
        in (refused["message"])
    )
    one = NS + "/00000000-0000-4000-8000-000000000003"
    status, found = call(application, one)
    assert status == 200 and found["status"]["phase"] == "DONE"
    status, _ = call(application, one + "/result")  # get on the result subresource: not granted
    assert status == 403
    status, missing = call(application, NS + "/00000000-0000-4000-8000-000000000999")
    assert status == 404 and missing["reason"] == "NotFound"
    # Another namespace's job is not found here, even by its id.
    status, _ = call(application, NS + "/00000000-0000-4000-8000-000000000100")
    assert status == 404


def test_only_the_front_proxy_may_call() -> None:
    application = app(ALLOWED)
    status, _ = call(application, NS, cert={})
    assert status == 401
    stranger = {"subject": ((("commonName", "someone-else"),),)}
    status, _ = call(application, NS, cert=stranger)
    assert status == 401
    status, _ = call(application, NS, user=None)
    assert status == 401


def test_a_record_is_the_job_under_its_id() -> None:
    key = JobKey.of(body(3), "alice")
    record = history_api.record(key)
    assert record["kind"] == "ServerlessJobRecord"
    assert record["metadata"]["name"] == key.job_id
    assert record["metadata"]["annotations"]["serverless.qiskit.org/job-name"] == "job-3"
    assert record["spec"] == {"function": "f"}


def test_gateway_key_is_shared() -> None:
    assert history_api.GATEWAY is GATEWAY
