"""Which jobs a listing asks for, and how one page merges live jobs with archived ones.

Pure: the same ``JobQuery`` filters the live jobs in memory (``matches``) and becomes SQL for
the archive (store.py), and ``merge`` makes one page of both in the one job order
(``constants.job_order``, newest first), each job once.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import constants as c
from .rows import submitted_at

# A job is in both places from its row's commit until the gateway sees it marked archived
# (milliseconds; longer only if the operator stopped in between): a page asks the archive
# for this many rows more than it shows, and again for more if duplicates used them up.
DUPLICATE_SLACK = 16


@dataclass(frozen=True)
class Scope:
    """One conjunction of a listing: None is "any". ``provider`` '' means the namespace's own
    functions (a job whose spec names no provider)."""

    namespace: str | None = None
    user: str | None = None
    function: str | None = None
    provider: str | None = None

    def matches(self, view: JobKey) -> bool:
        return (
            (self.namespace is None or view.namespace == self.namespace)
            and (self.user is None or view.user == self.user)
            and (self.function is None or view.function == self.function)
            and (self.provider is None or view.provider == self.provider)
        )


@dataclass(frozen=True)
class JobQuery:
    """A listing: jobs in any of ``scopes`` that pass the common filters, newest first."""

    scopes: tuple[Scope, ...]
    phases: tuple[str, ...] | None = None
    created_after: float | None = None
    include_tasks: bool = False
    limit: int | None = 10
    offset: int = 0
    # Keyset paging (the history API's continue token): only jobs strictly older than this.
    before: tuple[float, str] | None = None
    # Asked to stop and not ended yet (the REST status STOPPING) or not: live jobs only.
    stop_requested: bool | None = None

    def matches(self, view: JobKey) -> bool:
        return (
            (self.include_tasks or not view.task)
            and (self.phases is None or view.phase in self.phases)
            and (self.created_after is None or view.submitted_at >= self.created_after)
            and (self.before is None or view.order < self.before)
            and (self.stop_requested is None or view.stop_requested == self.stop_requested)
            and any(scope.matches(view) for scope in self.scopes)
        )

    def window(self) -> int | None:
        """How many of the newest matching jobs a page needs to see (None: all)."""
        return None if self.limit is None else self.offset + self.limit


@dataclass(frozen=True, slots=True)
class JobKey:
    """What a listing filters and orders a job by, from a live body or an archive row."""

    job_id: str
    namespace: str
    user: str
    function: str
    provider: str
    phase: str
    task: bool
    submitted_at: float
    body: dict[str, Any] = field(compare=False, repr=False)

    @property
    def order(self) -> tuple[float, str]:
        return c.job_order(self.submitted_at, self.job_id)

    @property
    def stop_requested(self) -> bool:
        return bool((self.body.get("spec") or {}).get("stop"))

    @classmethod
    def of(cls, body: dict[str, Any], user: str) -> JobKey:
        meta, spec = body["metadata"], body.get("spec") or {}
        return cls(
            job_id=meta["uid"],
            namespace=meta["namespace"],
            user=user,
            function=spec.get("function") or "",
            provider=spec.get("provider") or "",
            phase=(body.get("status") or {}).get("phase") or c.JobPhase.QUEUED.value,
            task=bool(spec.get("task")),
            submitted_at=submitted_at(body),
            body=body,
        )


def newest_first(keys: Iterable[JobKey]) -> list[JobKey]:
    return sorted(keys, key=lambda k: k.order, reverse=True)


def _merged(live: list[JobKey], archived: list[JobKey]) -> Iterator[JobKey]:
    seen: set[str] = set()
    for key in heapq.merge(live, archived, key=lambda k: k.order, reverse=True):
        if key.job_id not in seen:
            seen.add(key.job_id)
            yield key


def merge(
    query: JobQuery, live: list[JobKey], archived: list[JobKey], archive_exhausted: bool
) -> list[JobKey] | None:
    """One page of ``query`` from the matching live jobs (all of them, newest first) and the
    newest matching archived rows (newest first; ``archive_exhausted``: there are no more).

    None when the rows given do not settle the page: past the oldest row given, an archived
    row not given could come first. The caller asks the archive for more and merges again."""
    window = query.window()
    floor = None if archive_exhausted or not archived else archived[-1].order
    taken: list[JobKey] = []
    for key in _merged(live, archived):
        if window is not None and len(taken) == window:
            break
        if floor is not None and key.order < floor:
            return None
        taken.append(key)
    else:
        if not archive_exhausted and (window is None or len(taken) < window):
            return None
    return taken[query.offset :]
