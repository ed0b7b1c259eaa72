"""The queue's view of every ServerlessJob: one small record each, kept current by events.

Why not a kopf index: kopf holds every handler back until its index has seen every object,
and (kopf 1.45) each object indexed wakes every worker waiting for that, so 10,000 jobs
present at start-up kept a restarted operator at 100% CPU for minutes; with a worker limit
below the number of objects it deadlocks outright (nolar/kopf#1243). Here kopf's events
keep the records current with no such gate, and the admission tick decides nothing until a
full listing (paginated) has been merged in since the operator started: it never admits
from a partial view (a running job it has not seen yet would let too many start). The
listing is repeated now and then, which also drops a record whose deletion event was lost.

Merging: a record written by an event after the listing began is newer than the listing's
copy (or will be corrected by the next event) and is kept; a job deleted while the listing
was in flight is remembered by UID for a minute so the listing cannot bring it back.
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import constants as c
from . import jobspec, queueing

TOMBSTONE_SECONDS = 60.0


def epoch(value: str | None) -> float | None:
    """An RFC 3339 timestamp of the API as seconds since the epoch."""
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True, slots=True)
class JobRecord:
    """What the queue needs of one ServerlessJob (kept small: 10,000 of them live in memory)."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    user: str
    phase: str | None
    reason: str | None
    admitted: bool
    priority: int
    submitted: float
    cpu: int
    memory: int
    start: float | None
    end: float | None
    accounted: bool
    position: int | None
    message: str | None
    # A task's job (runtime/tasks.py): a job waiting on tasks yields its queue slot to them.
    task_parent: str | None = None
    # Retention (retention.py): the job's own TTL after it finished, and whether its
    # summary is in the archive already.
    ttl: int | None = None
    archived: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def record_of(body: dict[str, Any]) -> JobRecord:
    meta, spec = body["metadata"], body.get("spec") or {}
    status = body.get("status") or {}
    requests = status.get("requests") or {}
    try:
        cpu = queueing.cpu_millis(requests.get("cpu", 0))
        memory = queueing.memory_bytes(requests.get("memory", 0))
    except ValueError:
        cpu = memory = 0
    submitted = (meta.get("annotations") or {}).get(c.ANNOTATION_SUBMITTED_AT)
    try:
        submitted_at = float(submitted) if submitted else None
    except ValueError:
        submitted_at = None
    # Strings most jobs share (namespace, user, phase, reason, message) are interned: one
    # copy for 10,000 records, not one scattered between the event bodies that carried them
    # (what is left over of those is what keeps the heap from shrinking afterwards).
    return JobRecord(
        namespace=_shared(meta["namespace"]),
        name=meta["name"],
        uid=meta.get("uid", ""),
        resource_version=meta.get("resourceVersion", ""),
        user=_shared(status.get("user") or jobspec.job_user(body)),
        phase=_shared(status.get("phase")),
        reason=_shared(status.get("reason")),
        admitted=bool(status.get("admittedAt")),
        priority=int(spec.get("priority") or 0),
        submitted=submitted_at or epoch(meta.get("creationTimestamp")) or 0.0,
        cpu=cpu,
        memory=memory,
        start=epoch(status.get("startTime")),
        end=epoch(status.get("completionTime")),
        accounted=bool(status.get("accounted")),
        position=status.get("queuePosition"),
        message=_shared(status.get("message")),
        task_parent=(spec.get("task") or {}).get("parent"),
        ttl=spec.get("ttlSecondsAfterFinished"),
        archived=bool(status.get("archivedAt")),
    )


def _shared(value: str | None) -> str | None:
    return sys.intern(value) if isinstance(value, str) else value


@dataclass
class JobStore:
    records: dict[str, JobRecord] = field(default_factory=dict)
    # When an event last wrote each record (monotonic), to tell it from an older listing.
    _written: dict[str, float] = field(default_factory=dict)
    _deleted: dict[str, float] = field(default_factory=dict)  # uid -> when deleted
    synced_at: float | None = None  # when the last merged listing began (monotonic)
    last_event: float = float("-inf")  # when an event last wrote the store (monotonic)
    # "namespace/parent" -> its tasks' keys: a finished job asks whether it has tasks to
    # stop, which would otherwise be a scan of every record (10,000) per finished job.
    _tasks: dict[str, set[str]] = field(default_factory=dict)

    @property
    def primed(self) -> bool:
        return self.synced_at is not None

    def seen(self, rec: JobRecord, *, event: bool = True) -> None:
        """The job as it is now: an event's, or (``event=False``) a read of the job's own."""
        now = time.monotonic()
        if event:
            self.last_event = now
        if rec.uid and rec.uid in self._deleted:
            return  # a late event of a job already deleted
        self._put(rec)
        self._written[rec.key] = now

    def gone(self, key: str, uid: str, *, event: bool = True) -> None:
        """A deletion: an event's, or (``event=False``) one a listing found."""
        now = time.monotonic()
        if event:
            self.last_event = now
        current = self.records.get(key)
        if current is not None and (not uid or not current.uid or current.uid == uid):
            self._drop(key)
        if uid:
            self._deleted[uid] = now

    def merge_listing(self, listed: Iterable[JobRecord], began: float) -> None:
        """A full listing that began at ``began`` (monotonic), every page of it."""
        keys = set()
        for rec in listed:
            keys.add(rec.key)
            if rec.uid in self._deleted or self._written.get(rec.key, float("-inf")) >= began:
                continue
            self._put(rec)
            # Not an event write: a listing is never "newer" than the next listing.
        for key in [k for k in self.records if k not in keys]:
            if self._written.get(key, float("-inf")) < began:
                self._drop(key)
        cutoff = time.monotonic() - TOMBSTONE_SECONDS
        self._deleted = {uid: at for uid, at in self._deleted.items() if at >= cutoff}
        self.synced_at = began

    def missed(self, listed: Iterable[tuple[str, str, str]], began: float) -> list[str]:
        """The keys of jobs a metadata listing (key, uid, resourceVersion) that began at
        ``began`` shows otherwise than the store, where no event has written the record
        since: a job the watch never delivered, or a change it did not. A record the
        listing no longer shows is dropped (its deletion event was lost)."""
        keys, out = set(), []
        for key, uid, version in listed:
            keys.add(key)
            if uid in self._deleted or self.written_since(key, began):
                continue
            rec = self.records.get(key)
            if rec is None or rec.uid != uid or rec.resource_version != version:
                out.append(key)
        for key in [k for k in self.records if k not in keys]:
            if self._written.get(key, float("-inf")) < began:
                self.gone(key, self.records[key].uid, event=False)
        return out

    def written_since(self, key: str, since: float) -> bool:
        """Whether an event has written the job's record since ``since`` (monotonic)."""
        return self._written.get(key, float("-inf")) >= since

    def all(self) -> list[JobRecord]:
        return list(self.records.values())

    def has_tasks(self, namespace: str, name: str) -> bool:
        """Whether a task of the job ``namespace/name`` is known (any phase)."""
        return bool(self._tasks.get(f"{namespace}/{name}"))

    def _put(self, rec: JobRecord) -> None:
        old = self.records.get(rec.key)
        if old is not None and old.task_parent != rec.task_parent:
            self._untask(old)
        self.records[rec.key] = rec
        if rec.task_parent:
            self._tasks.setdefault(f"{rec.namespace}/{rec.task_parent}", set()).add(rec.key)

    def _drop(self, key: str) -> None:
        old = self.records.pop(key, None)
        self._written.pop(key, None)
        if old is not None:
            self._untask(old)

    def _untask(self, rec: JobRecord) -> None:
        if not rec.task_parent:
            return
        parent = f"{rec.namespace}/{rec.task_parent}"
        keys = self._tasks.get(parent)
        if keys is not None:
            keys.discard(rec.key)
            if not keys:
                del self._tasks[parent]


# The operator's one store: kopf's job events write it (handlers.job_record), the
# admission tick and the metrics read it.
store = JobStore()
