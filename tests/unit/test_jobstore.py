"""The queue's job records: events keep them current, a listing fills and prunes them."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from qiskit_serverless_operator.controller.jobstore import JobRecord, JobStore, record_of


def rec(name: str, phase: str = "QUEUED", uid: str | None = None, rv: str = "1") -> JobRecord:
    body: dict[str, Any] = {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "uid": uid or f"uid-{name}",
            "resourceVersion": rv,
            "creationTimestamp": "2026-11-25T10:00:00Z",
        },
        "spec": {"function": "f"},
        "status": {"phase": phase},
    }
    return record_of(body)


def test_nothing_is_decided_before_a_full_listing() -> None:
    store = JobStore()
    store.seen(rec("a"))
    assert not store.primed
    store.merge_listing([rec("a"), rec("b")], time.monotonic())
    assert store.primed
    assert sorted(r.name for r in store.all()) == ["a", "b"]


def test_an_event_after_the_listing_began_wins_over_the_listing() -> None:
    store = JobStore()
    began = time.monotonic()
    store.seen(rec("a", phase="RUNNING", rv="7"))  # arrives while the listing is in flight
    store.merge_listing([rec("a", phase="QUEUED", rv="5")], began)
    assert store.records["ns/a"].phase == "RUNNING"


def test_the_listing_replaces_what_events_wrote_before_it_began() -> None:
    store = JobStore()
    store.seen(rec("a", phase="QUEUED", rv="5"))
    began = time.monotonic() + 1e-6
    store.merge_listing([rec("a", phase="DONE", rv="9")], began)
    assert store.records["ns/a"].phase == "DONE"


def test_a_job_missing_from_the_listing_is_dropped_unless_an_event_came_since() -> None:
    store = JobStore()
    store.seen(rec("lost-deletion"))
    began = time.monotonic() + 1e-6
    time.sleep(0.001)
    store.seen(rec("created-during-listing"))
    store.merge_listing([], began)
    assert [r.name for r in store.all()] == ["created-during-listing"]


def test_a_job_deleted_while_the_listing_was_in_flight_does_not_come_back() -> None:
    store = JobStore()
    began = time.monotonic()
    store.gone("ns/a", "uid-a")
    store.merge_listing([rec("a")], began)
    assert store.all() == []
    # nor does a late event of it; a new job of the same name (new UID) is a new job
    store.seen(rec("a"))
    assert store.all() == []
    store.seen(rec("a", uid="uid-a-2"))
    assert [r.uid for r in store.all()] == ["uid-a-2"]


def test_a_deletion_event_of_an_older_job_of_the_same_name_keeps_the_new_one() -> None:
    store = JobStore()
    store.seen(rec("a", uid="new"))
    store.gone("ns/a", "old")
    assert [r.uid for r in store.all()] == ["new"]


def test_a_metadata_listing_names_the_jobs_whose_events_were_missed() -> None:
    store = JobStore()
    store.seen(rec("current", rv="5"))
    store.seen(rec("stale", rv="5"))
    store.seen(rec("replaced", rv="5"))  # deleted and made again under the same name
    store.seen(rec("lost-deletion", rv="5"))
    began = time.monotonic() + 1e-6
    time.sleep(0.001)
    store.seen(rec("moved-during-listing", rv="8"))
    listed = [
        ("ns/current", "uid-current", "5"),
        ("ns/stale", "uid-stale", "6"),
        ("ns/replaced", "uid-replaced-2", "7"),
        ("ns/never-seen", "uid-never-seen", "3"),
        ("ns/moved-during-listing", "uid-moved-during-listing", "7"),
    ]
    assert store.missed(listed, began) == ["ns/stale", "ns/replaced", "ns/never-seen"]
    assert "ns/lost-deletion" not in store.records
    assert store.written_since("ns/moved-during-listing", began)
    assert not store.written_since("ns/stale", began)


def test_only_events_tell_that_the_watch_is_alive() -> None:
    store = JobStore()
    store.seen(rec("read-by-the-safety-net"), event=False)
    store.gone("ns/found-gone-by-a-listing", "uid-x", event=False)
    assert store.last_event == float("-inf")
    store.seen(rec("an-event"))
    assert store.last_event > 0


def test_the_tasks_of_a_job_are_known_until_they_are_gone() -> None:
    store = JobStore()
    t1 = dataclasses.replace(rec("t1"), task_parent="parent")
    t2 = dataclasses.replace(rec("t2"), task_parent="parent")
    store.seen(t1)
    store.seen(t2)
    assert store.has_tasks("ns", "parent") and not store.has_tasks("ns", "t1")
    assert not store.has_tasks("other", "parent")
    store.gone("ns/t1", "uid-t1")
    assert store.has_tasks("ns", "parent")
    # A listing that no longer shows t2 (its deletion event lost) drops it from the index too.
    store.merge_listing([rec("a")], time.monotonic())
    assert not store.has_tasks("ns", "parent")
    # A record replaced by one of another parent moves with it.
    store.seen(dataclasses.replace(rec("t3"), task_parent="parent"))
    store.seen(dataclasses.replace(rec("t3"), task_parent="next"))
    assert not store.has_tasks("ns", "parent") and store.has_tasks("ns", "next")
