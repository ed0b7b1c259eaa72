"""Prometheus metrics: jobs by phase, and how long jobs take to reach each phase.

The by-phase gauge is computed at scrape time from the admission queue's record of every
job (kept from the cluster's events and listings), not counted up and down, so a crash
cannot skew it and nothing more is kept per job.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from .constants import JobPhase

_phases: Callable[[], Iterable[str | None]] = tuple

TRANSITIONS = PromCounter(
    "qso_job_transitions_total", "ServerlessJob phase transitions written", ["phase"]
)
LATENCY = Histogram(
    "qso_job_phase_latency_seconds",
    "Seconds from a ServerlessJob's creation until it reached a phase",
    ["phase"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, float("inf")),
)

# Job history (controller/retention.py).
ARCHIVED = PromCounter("qso_jobs_archived_total", "Finished jobs written to the archive")
TTL_DELETED = PromCounter(
    "qso_jobs_ttl_deleted_total", "Finished jobs deleted from the API server after their TTL"
)
ARCHIVE_ERRORS = PromCounter(
    "qso_archive_errors_total", "Failed requests to the archive database", ["operation"]
)
ARCHIVE_BACKLOG = Gauge(
    "qso_archive_backlog", "Finished jobs past their TTL still waiting to be archived"
)


# Monitoring (manifests/monitoring/prometheusrule.yaml alerts on these).
BUILDS = PromCounter(
    "qso_function_builds_total", "Function image builds that ended, by result", ["result"]
)
RECONCILE_ERRORS = PromCounter(
    "qso_reconcile_errors_total",
    "Handler runs that failed on an unexpected error (kopf retries them)",
    ["kind"],
)
S3_ERRORS = PromCounter("qso_s3_errors_total", "Object storage requests that failed", ["operation"])
ACTIVE = Gauge("qso_operator_active", "1 in the replica that acts (kopf peering), 0 in a standby")
_oldest_wait: Callable[[], float] = lambda: 0.0  # noqa: E731


class _PhaseCollector(Collector):
    def collect(self):  # type: ignore[override]
        gauge = GaugeMetricFamily("qso_jobs", "ServerlessJobs by phase", labels=["phase"])
        counts = Counter(_phases())
        for phase in JobPhase:
            gauge.add_metric([phase.value], counts.get(phase.value, 0))
        yield gauge
        yield GaugeMetricFamily(
            "qso_queue_oldest_wait_seconds",
            "How long the longest-waiting job ready to run has waited for admission",
            value=_oldest_wait(),
        )


def transition(body: dict[str, Any], phase: str) -> None:
    TRANSITIONS.labels(phase).inc()
    created = body["metadata"].get("creationTimestamp")
    if created:
        start = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
        elapsed = (datetime.datetime.now(datetime.UTC) - start).total_seconds()
        LATENCY.labels(phase).observe(max(0.0, elapsed))


_started = False


def serve(
    port: int,
    addr: str,
    phases: Callable[[], Iterable[str | None]],
    oldest_wait: Callable[[], float] = lambda: 0.0,
) -> None:
    """Serve /metrics; ``phases`` gives every job's current phase at scrape time, and
    ``oldest_wait`` the longest wait for admission."""
    global _started, _phases, _oldest_wait
    _phases, _oldest_wait = phases, oldest_wait
    if _started:
        return
    # Every series a rule reads starts at 0: Prometheus sees no increase in a series whose
    # first sample is already 1 (the first failure after a start would go unnoticed).
    for phase in JobPhase:
        TRANSITIONS.labels(phase.value)
    for result in ("succeeded", "failed"):
        BUILDS.labels(result)
    for kind in ("job", "job-cleanup", "function"):
        RECONCILE_ERRORS.labels(kind)
    for operation in ("migrate", "archive", "objects"):
        ARCHIVE_ERRORS.labels(operation)
    for operation in ("sha256", "size", "put", "get", "delete", "list_folder", "open", "put_file"):
        S3_ERRORS.labels(operation)
    REGISTRY.register(_PhaseCollector())
    start_http_server(port, addr=addr)
    _started = True
