"""The safety net's catch-up against a real API server: jobs whose watch events the
operator never got (a watch resumed after an API server restart can stay silent for
minutes) are found by a metadata-only listing, recorded and handed to their reconcile.

The watch itself cannot be made to miss on cue, so the test plays the part of the store
that missed them: a store primed before the jobs existed, or holding an old copy."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from kubernetes import client

from qiskit_serverless_operator import constants as c
from qiskit_serverless_operator.controller import scheduler
from qiskit_serverless_operator.controller.context import Context, set_context
from qiskit_serverless_operator.controller.jobstore import JobStore, record_of
from qiskit_serverless_operator.kube import Kube
from tests.kube import session_operator_paused, wait_until
from tests.serverless import custom, get_job, make_job


@pytest.fixture
def no_operator() -> Any:
    with session_operator_paused():
        yield


def _stable(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    """The job once nothing writes it any more (a stopping operator's last patch landed)."""
    seen: list[str] = []

    def settled() -> dict[str, Any] | None:
        body = get_job(api, namespace, name)
        seen.append(body["metadata"]["resourceVersion"])
        return body if len(seen) > 1 and seen[-1] == seen[-2] else None

    return wait_until(settled, timeout=30, what=f"{name} to stop changing", interval=2)


def test_jobs_the_watch_missed_are_found_recorded_and_reconciled(
    api_client: client.ApiClient,
    cluster: dict,
    crds: None,
    namespace: str,
    no_operator: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = custom(api_client)
    make_job(api, namespace, "current", "f")
    make_job(api, namespace, "stale", "f")
    make_job(api, namespace, "deleted", "f")
    known = {name: _stable(api, namespace, name) for name in ("current", "stale", "deleted")}

    store = JobStore()
    began = time.monotonic()
    store.merge_listing([record_of(body) for body in known.values()], began)
    # What the watch then failed to deliver: a new job, a change, a deletion.
    make_job(api, namespace, "unseen", "f")
    api.patch_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, "stale", {"spec": {"priority": 7}}
    )
    api.delete_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, "deleted")
    wait_until(
        lambda: (
            "deleted"
            not in [
                j["metadata"]["name"]
                for j in api.list_namespaced_custom_object(
                    c.GROUP, c.VERSION, namespace, c.JOB_PLURAL
                )["items"]
            ]
        ),
        timeout=30,
        what="the deleted job to be gone",
    )
    time.sleep(0.01)  # the records above were written before the catch-up's listing

    monkeypatch.setenv("KUBECONFIG", cluster["kubeconfig"])
    monkeypatch.setattr(scheduler, "store", store)
    monkeypatch.setattr(scheduler, "watched_namespaces", (namespace,))
    monkeypatch.setattr(scheduler, "CATCH_UP_GRACE_SECONDS", 0.1)
    looked: list[tuple[str, str]] = []

    async def look_again(ns: str, name: str) -> None:
        looked.append((ns, name))

    async def run() -> None:
        # Only its API access is used by the safety net.
        set_context(Context(config=None, kube=Kube(), store=None))  # type: ignore[arg-type]
        await scheduler.safety_net(look_again=look_again)

    # While events arrive the watch is alive: what the store lacks is kopf's backlog,
    # not a miss, and the safety net leaves it to the events.
    store.last_event = time.monotonic()
    asyncio.run(run())
    assert looked == [] and f"{namespace}/unseen" not in store.records
    # Quiet for longer than that: the watch is stuck, and the listing tells what it missed.
    store.last_event -= scheduler.WATCH_QUIET_SECONDS + 1
    asyncio.run(run())

    assert sorted(looked) == [(namespace, "stale"), (namespace, "unseen")]
    unseen = get_job(api, namespace, "unseen")
    assert store.records[f"{namespace}/unseen"].uid == unseen["metadata"]["uid"]
    assert store.records[f"{namespace}/stale"].priority == 7
    assert f"{namespace}/deleted" not in store.records
    assert store.records[f"{namespace}/current"] == record_of(known["current"])

    # Level again: a second look finds nothing missed, and asks for no reconcile of jobs
    # that wait in the queue.
    looked.clear()
    asyncio.run(run())
    assert looked == []
