"""The gateway's watch cache of live ServerlessJobs: every listing and lookup of a job starts
here, never with a list of the API server's jobs per request.

One list (in pages) and then a watch from its resourceVersion, as client-go's informers do;
any failure of the watch starts again with a fresh list. Each job is kept trimmed (no inline
arguments, no managedFields: archive/rows.py ``trimmed``), indexed by id and, per namespace,
in the one job order, so a page of a namespace's jobs is a walk from the newest. Only live
jobs are here (the archive holds the others), so its size does not grow with history.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..archive.query import JobKey, JobQuery
from ..archive.rows import trimmed
from ..controller.jobspec import queue_user
from ..kube import Kube, ServerlessJob

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
PAGE = 500


def key_of(body: dict[str, Any]) -> JobKey:
    return JobKey.of(body, queue_user(body))


def _order(key: JobKey) -> tuple[float, str]:
    return key.order


@dataclass
class LiveJobs:
    """Live ServerlessJobs by id, and per namespace in the job order (oldest first, read
    backwards)."""

    by_id: dict[str, JobKey] = field(default_factory=dict)
    by_name: dict[tuple[str, str], str] = field(default_factory=dict)
    _ordered: dict[str, list[JobKey]] = field(default_factory=dict)
    synced: asyncio.Event = field(default_factory=asyncio.Event)

    # ------------------------------------------------------------------ the index

    def put(self, body: dict[str, Any]) -> None:
        key = key_of(trimmed(body))
        self.remove(key.job_id)
        self.by_id[key.job_id] = key
        self.by_name[(key.namespace, key.body["metadata"]["name"])] = key.job_id
        bisect.insort(self._ordered.setdefault(key.namespace, []), key, key=_order)

    def remove(self, job_id: str) -> None:
        old = self.by_id.pop(job_id, None)
        if old is None:
            return
        self.by_name.pop((old.namespace, old.body["metadata"]["name"]), None)
        entries = self._ordered.get(old.namespace, [])
        at = bisect.bisect_left(entries, old.order, key=_order)
        if at < len(entries) and entries[at].job_id == job_id:
            del entries[at]
        if not entries:
            self._ordered.pop(old.namespace, None)

    def replace_all(self, bodies: list[dict[str, Any]]) -> None:
        self.by_id.clear()
        self.by_name.clear()
        self._ordered.clear()
        for body in bodies:
            self.put(body)

    # ------------------------------------------------------------------ reads

    def get(self, job_id: str) -> JobKey | None:
        return self.by_id.get(job_id)

    def named(self, namespace: str, name: str) -> JobKey | None:
        job_id = self.by_name.get((namespace, name))
        return self.by_id.get(job_id) if job_id else None

    def _walk(self, namespaces: set[str] | None) -> Iterator[JobKey]:
        if namespaces is not None and len(namespaces) == 1:
            (only,) = namespaces
            yield from reversed(self._ordered.get(only, []))
            return
        lists = [
            reversed(entries)
            for namespace, entries in self._ordered.items()
            if namespaces is None or namespace in namespaces
        ]
        yield from heapq.merge(*lists, key=_order, reverse=True)

    def matching(self, query: JobQuery, unarchived: bool = True) -> list[JobKey]:
        """The live jobs of ``query``, newest first: all of them (the merge with the archive
        needs every live one down to the page's end). A job marked archived is the
        archive's to show (its row is committed before the mark)."""
        namespaces = {s.namespace for s in query.scopes}
        walk = self._walk(None if None in namespaces else namespaces)  # type: ignore[arg-type]
        return [
            key
            for key in walk
            if query.matches(key) and not (unarchived and key.body["status"].get("archivedAt"))
        ]

    def __len__(self) -> int:
        return len(self.by_id)


async def follow(kube: Kube, live: LiveJobs, stopped: Callable[[], bool]) -> None:
    """Keep ``live`` up to date until ``stopped()``: list, then watch; again on any error."""
    while not stopped():
        try:
            listing = kube.client.list(ServerlessJob, namespace="*", chunk_size=PAGE)
            bodies = [_plain(obj) async for obj in listing]
            live.replace_all(bodies)
            live.synced.set()
            version = listing.resourceVersion
            async for kind, obj in kube.client.watch(
                ServerlessJob, namespace="*", resource_version=version
            ):
                body = _plain(obj)
                if kind == "DELETED":
                    live.remove(body["metadata"]["uid"])
                else:
                    live.put(body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a closed or expired watch: list afresh
            log.info("job watch restarts after: %s", exc)
        await asyncio.sleep(RETRY_SECONDS)


def _plain(obj: Any) -> dict[str, Any]:
    return obj if isinstance(obj, dict) else obj.to_dict()
