"""The latest copies the watches brought of each job in flight: its body, batch Job and pods.

A job's reconcile after one of its pod's or batch Job's events used to read the job, its
batch Job and its pods afresh: three requests, about six times per job (benchmarks/
queue_burst.py counted 6.4 reads of each per job in a burst), each one API server work a
bare pod does not cause. The events bring those objects anyway, so the reconcile reads
them here instead, the way controller-runtime's informer caches serve a reconciler.

Why that is safe: every status write is conditional on the job's resourceVersion, so a
stale job body costs a conflict and one fresh read (jobs.reconcile_job), never a wrong
write; a child seen late brings its own event, and so its own reconcile, when it arrives;
only a copy that exists is trusted (no copy: the API server is asked, so a batch Job just
made and not yet seen is never taken for a missing one); and the safety net reads
everything afresh (``fresh=True``).

Only jobs in flight are kept (admitted, Kueue's, or started, and not finished), so the
memory follows the running jobs, not the thousands waiting: a finished job's copies go
with its terminal status. Pods are kept without their spec (nothing reads it here).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import constants as c

_TERMINAL = {p.value for p in c.TERMINAL_JOB_PHASES}
# How long a finished job's last version is remembered: an event of an older version still
# on its way (kopf's queue, another handler of the same event) must not bring it back.
ENDED_SECONDS = 120.0


def in_flight(body: Mapping[str, Any]) -> bool:
    """Admitted (or Kueue's), or started, and not finished: a job whose children exist."""
    status = body.get("status") or {}
    phase = status.get("phase")
    if phase in _TERMINAL or not phase:
        return False
    return bool(
        status.get("admittedAt")
        or status.get("reason") == c.QueueReason.KUEUE
        or phase in (c.JobPhase.INITIALIZING, c.JobPhase.RUNNING)
    )


def _slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """A child as the reconcile reads it: metadata and status, and a batch Job's suspend."""
    slim = {key: body[key] for key in ("apiVersion", "kind", "status") if key in body}
    slim["metadata"] = _meta(body)
    if body.get("kind") == "Job":
        slim["spec"] = {"suspend": (body.get("spec") or {}).get("suspend")}
    return slim


def _meta(body: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata without managedFields: a write's answer carries them (events come
    without), and nothing here reads them."""
    return {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}


def _version(body: Mapping[str, Any]) -> int:
    try:
        return int(body.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass
class _Family:
    job: dict[str, Any] | None = None  # the ServerlessJob
    batch_job: dict[str, Any] | None = None
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # by the pod's UID


class Watched:
    """Copies by the job's key ("namespace/name"), from events and from our own writes."""

    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}
        self.ended: dict[str, tuple[int, float]] = {}  # key: (version it ended at, when)

    def job_seen(self, key: str, body: Mapping[str, Any]) -> None:
        """A ServerlessJob from an event or a write's answer; kept while it is in flight.
        An older copy than the one kept (events arrive after the write's answer) is not,
        nor one older than the version a finished job ended at."""
        version = _version(body)
        ended = self.ended.get(key)
        if ended is not None and version <= ended[0]:
            return
        if not in_flight(body):
            self.families.pop(key, None)
            if (body.get("status") or {}).get("phase") in _TERMINAL:
                now = time.monotonic()
                self.ended = {k: v for k, v in self.ended.items() if now - v[1] < ENDED_SECONDS}
                self.ended[key] = (version, now)
            return
        family = self.families.setdefault(key, _Family())
        if family.job is None or version >= _version(family.job):
            family.job = {**body, "metadata": _meta(body)}

    def job_gone(self, key: str) -> None:
        self.families.pop(key, None)
        self.ended.pop(key, None)

    def child_seen(self, key: str, body: Mapping[str, Any], deleted: bool) -> None:
        """A pod or batch Job of the job ``key`` (kept only while the job is in flight)."""
        family = self.families.get(key)
        if family is None:
            return
        uid = body.get("metadata", {}).get("uid", "")
        if body.get("kind") == "Pod":
            if deleted:
                family.pods.pop(uid, None)
            else:
                family.pods[uid] = _slim(body)
        elif deleted:
            if family.batch_job is not None and family.batch_job["metadata"].get("uid") == uid:
                family.batch_job = None
        elif (
            family.batch_job is None
            or family.batch_job["metadata"].get("uid") != uid
            or _version(body) >= _version(family.batch_job)
        ):
            # Not an older copy of the same one: the create's answer may come back after
            # the batch Job's first events.
            family.batch_job = _slim(body)

    def job(self, key: str) -> dict[str, Any] | None:
        family = self.families.get(key)
        return family.job if family is not None else None

    def batch_job(self, key: str) -> dict[str, Any] | None:
        family = self.families.get(key)
        return family.batch_job if family is not None else None

    def pods(self, key: str) -> list[dict[str, Any]] | None:
        """The job's pods seen, or None when none was (ask the API server then)."""
        family = self.families.get(key)
        if family is None or not family.pods:
            return None
        return list(family.pods.values())


watched = Watched()
