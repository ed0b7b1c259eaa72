"""What every handler shares: configuration, API access, object storage, per-object locks.

Built once by the startup handler. Nothing here is state the operator would lose
on a crash: the locks only serialize this process's own concurrent reconciles.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import OperatorConfig
from ..kube import Kube
from ..storage import ObjectStore

if TYPE_CHECKING:
    from ..archive.store import Archive

# Job reconciles (and clean-ups) running at once. kopf runs one worker per object with
# events, without a limit (a limit deadlocks its index at start-up): 10,000 new jobs would
# otherwise be 10,000 concurrent API calls and time out in the connection pool.
JOB_RECONCILES_AT_ONCE = 32


@dataclass
class Context:
    config: OperatorConfig
    kube: Kube
    store: ObjectStore
    # A lock exists only while a reconcile holds or awaits it (the waiters keep it alive):
    # a lock per object ever seen would be 10,000 locks for 10,000 queued jobs.
    _locks: weakref.WeakValueDictionary[str, asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary
    )

    # Job history: None when no archive is configured (retention.py).
    archive: Archive | None = None
    archive_schema_ready: bool = False
    # Registry credentials (registry_auth.py): the sources as last read ("ns/name" ->
    # (when, data)), and the pull Secret copied into each namespace (-> (digest, when)).
    registry_sources: dict[str, tuple[float, dict[str, str]]] = field(default_factory=dict)
    registry_copies: dict[str, tuple[str, float]] = field(default_factory=dict)

    job_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(JOB_RECONCILES_AT_ONCE)
    )

    def lock(self, key: str) -> asyncio.Lock:
        """The one lock for ``key`` among this process's running reconciles."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock


_current: Context | None = None


def set_context(ctx: Context) -> None:
    global _current
    _current = ctx


def get_context() -> Context:
    if _current is None:
        raise RuntimeError("the operator context is not initialised (startup did not run)")
    return _current
