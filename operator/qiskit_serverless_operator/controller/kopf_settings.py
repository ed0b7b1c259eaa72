"""kopf's settings for this operator, in one function the start-up handler calls."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, cast

import kopf

from .. import constants as c
from ..config import OperatorConfig
from . import lean_events

# Server-side filters for the kinds the operator creates (handlers.py watches them with the
# same label): kopf is sent only our own pods and batch Jobs. A handler's label filter alone
# is applied in the operator, after kopf has parsed, and remembered, every pod in the cluster.
OWN_OBJECTS = f"{c.LABEL_MANAGED_BY}={c.MANAGER}"
OWN_KINDS = (("", "v1", "pods"), ("batch", "v1", "jobs"))


class JobsWithoutDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff-base in an annotation for QiskitFunctions, none for ServerlessJobs.

    kopf writes the annotation after a creation's handlers: one more write, and one more
    watch event, for every new job, where nothing of kopf's change detection is used for
    jobs (spec changes are seen by generation, handlers.py). A job with a status has been
    handled: it counts as its own diff-base (no change: no update cause; after a restart,
    kopf's resume); one without is new (kopf's creation, retried until it is handled)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        # kopf builds an essence of every event's body to diff against the stored one: two
        # deep copies of the job (a profile of a burst put 6% of the operator's CPU there),
        # for a diff nothing reads. A job's essence is empty: no change, ever (see above).
        if body.get("kind") == c.JOB_KIND:
            return cast(kopf.BodyEssence, {})
        return super().build(body=body, extra_fields=extra_fields)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        if body.get("kind") == c.JOB_KIND:
            return self.build(body=body) if body.get("status") else None
        return super().fetch(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        if body.get("kind") != c.JOB_KIND:
            super().store(body=body, patch=patch, essence=essence)


class ProgressWithoutJobMarker(kopf.AnnotationsProgressStorage):
    """kopf's handler progress in annotations, without its "kopf-managed" marker on jobs.

    A handler that succeeds at once leaves no progress behind (kopf purges it in the same
    patch), but kopf adds the marker (which only helps other kopf operators tell our prefix
    apart) to the first object it handles: for a new job, a write of its own. Functions
    keep it."""

    def _store_marker(self, prefix: str, patch: kopf.Patch, body: kopf.Body) -> None:
        if body.get("kind") != c.JOB_KIND:
            super()._store_marker(prefix=prefix, patch=patch, body=body)


def configure(settings: kopf.OperatorSettings, cfg: OperatorConfig) -> None:
    lean_events.install()
    # Our own domain for kopf's bookkeeping, so Argo CD can be told to ignore it.
    settings.persistence.finalizer = c.FINALIZER
    settings.persistence.progress_storage = ProgressWithoutJobMarker(prefix=c.GROUP)
    # Inline arguments and source files can be ~1 MiB; annotations hold 256 KiB in all.
    # Spec changes are detected by generation instead (see the event handlers, handlers.py).
    settings.persistence.diffbase_storage = JobsWithoutDiffBase(
        prefix=c.GROUP,
        key="last-handled-configuration",
        ignored_fields=[("spec", "arguments"), ("spec", "source")],
    )
    settings.peering.name = cfg.peering
    settings.peering.priority = cfg.peering_priority
    settings.peering.lifetime = cfg.peering_lifetime_seconds
    settings.peering.mandatory = False
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # Restart a watch that has been silent this long (a stuck connection looks like that).
    settings.watching.inactivity_timeout = 600
    settings.networking.request_timeout = 30
    # At most this many kopf per-object workers: a burst of 10,000 new jobs waits as raw
    # events in kopf's queues, not as 10,000 running workers (each several times bigger).
    # Safe only because no kopf index is used (see jobstore: with one, a limit below the
    # number of objects deadlocks the start-up, nolar/kopf#1243).
    settings.queueing.worker_limit = 200
    # A worker exits this long after its object's last event, and holds one of the 200 slots
    # until then: the idle wait, not the work, is what caps the rate. A restart with 10,000
    # jobs present lists them all at once; at 0.5 s (400 a second) they piled up in kopf's
    # queues (250 MiB peak, 230 MiB after), at 0.05 s they are worked off as they come in
    # (123 MiB peak, 117 MiB after; benchmarks/queue_burst.py). A worker that awaits its own
    # patch's event waits for it regardless (kopf's consistency wait), so nothing is lost.
    settings.queueing.idle_timeout = 0.05
    # List in pages at start-up: 10,000 jobs in one response is one ~100 MB JSON document.
    settings.watching.chunk_size = 500
    settings.execution.max_workers = 8
    for kind in OWN_KINDS:
        settings.watching.label_selectors[kind] = OWN_OBJECTS
