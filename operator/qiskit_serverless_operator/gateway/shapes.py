"""QiskitFunctions and ServerlessJobs in the JSON shapes of the Qiskit Serverless gateway.

The field names and their odd types are the real gateway's (its client decodes them): a
function's ``dependencies`` and ``arguments_schema`` are JSON text, a job's ``status`` is
the gateway's own vocabulary (the client maps it to QUEUED / INITIALIZING / RUNNING / DONE /
ERROR / CANCELED), ``created`` is ISO 8601 in UTC.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from .. import constants as c
from ..archive import rows
from ..constants import JobPhase
from ..reports import job_events, runtime_jobs

__all__ = ["job_events", "runtime_jobs"]

# Our phases in the gateway's words (qiskit_serverless.core.job.STATUS_MAP reverses them).
GATEWAY_STATUS = {
    JobPhase.QUEUED: "QUEUED",
    JobPhase.INITIALIZING: "PENDING",
    JobPhase.RUNNING: "RUNNING",
    JobPhase.DONE: "SUCCEEDED",
    JobPhase.ERROR: "FAILED",
    JobPhase.CANCELED: "STOPPED",
}
PHASE_OF_STATUS = {status: phase for phase, status in GATEWAY_STATUS.items()}
STOPPING = "STOPPING"
NOT_ENDED = (JobPhase.QUEUED, JobPhase.INITIALIZING, JobPhase.RUNNING)


def phase(sj: dict[str, Any]) -> JobPhase:
    return JobPhase((sj.get("status") or {}).get("phase") or JobPhase.QUEUED)


def job_status(sj: dict[str, Any]) -> str:
    current = phase(sj)
    if current not in c.TERMINAL_JOB_PHASES and (sj.get("spec") or {}).get("stop"):
        return STOPPING  # asked to stop; the operator has not ended it yet
    return GATEWAY_STATUS[current]


def submitted_at(body: dict[str, Any]) -> float:
    """When it was submitted (the one rule: archive/rows.py)."""
    return rows.submitted_at(body)


def iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def function_json(qf: dict[str, Any]) -> dict[str, Any]:
    spec = qf["spec"]
    shape: dict[str, Any] = {
        "id": qf["metadata"].get("uid"),
        "title": spec["title"],
        "entrypoint": spec.get("entrypoint"),
        "artifact": None,
        "image": spec.get("image"),
        "dependencies": json.dumps(spec.get("dependencies") or []),
        "description": spec.get("description"),
        "documentation_url": None,
        "type": "GENERIC",
        "version": spec.get("version"),
        # JSON text, as the real gateway's column; "{}" when there is none.
        "arguments_schema": json.dumps(spec.get("argumentsSchema", {})),
        "sizes": {},
        "default_size": None,
    }
    if spec.get("provider"):
        # The real gateway leaves the key out for a user's own function.
        shape["provider"] = spec["provider"]
    return shape


def program_summary(qf: dict[str, Any] | None, title: str) -> dict[str, Any]:
    spec = (qf or {}).get("spec") or {}
    return {
        "id": (qf or {}).get("metadata", {}).get("uid"),
        "title": title,
        "provider": spec.get("provider"),
    }


def job_json(sj: dict[str, Any], qf: dict[str, Any] | None) -> dict[str, Any]:
    status = sj.get("status") or {}
    return {
        "id": sj["metadata"]["uid"],
        "status": job_status(sj),
        "program": program_summary(qf, sj["spec"]["function"]),
        "created": iso(submitted_at(sj)),
        "sub_status": status.get("subStatus") if phase(sj) == JobPhase.RUNNING else None,
        "compute_profile": None,
    }
