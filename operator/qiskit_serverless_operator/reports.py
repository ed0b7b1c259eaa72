"""What a job reports besides its phase, in qiskit_serverless' shapes: the Qiskit Runtime
jobs its program started and the errors it ran into. The SDK and the REST gateway both
answer ``job.runtime_jobs()``, ``job.runtime_sessions()`` and ``job.events()`` from here."""

from __future__ import annotations

from typing import Any

from .constants import JobPhase


def runtime_jobs(sj: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{"runtime_job", "runtime_session"}]``, as the program reported them."""
    recorded = (sj.get("status") or {}).get("runtimeJobs") or []
    return [{"runtime_job": r["job"], "runtime_session": r.get("session")} for r in recorded]


def job_events(sj: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's events as the gateway lists them: what the program reported with
    send_error(), then, for a job that ended in ERROR, the operator's reason and message
    (so ``job.error_message()`` and ``job.result()`` say what went wrong)."""
    status = sj.get("status") or {}
    events = [
        {
            "event_type": "ERROR",
            "origin": "API",
            "context": "SEND_ERROR",
            "created": event.get("created"),
            "data": {
                "code": event.get("code", ""),
                "message": event.get("message", ""),
                "exception": event.get("exception", ""),
                "error_type": event.get("exception", ""),
                "args": event.get("args"),
            },
        }
        for event in status.get("events") or []
    ]
    if (sj.get("status") or {}).get("phase") == JobPhase.ERROR:
        reason = status.get("reason") or "Failed"
        events.append(
            {
                "event_type": "ERROR",
                "origin": "SCHEDULER",
                "context": "UPDATE_JOB_STATUS",
                "created": status.get("completionTime"),
                "data": {
                    "code": reason,
                    "message": status.get("message") or "the job failed",
                    "exception": reason,
                    "error_type": reason,
                    "args": None,
                },
            }
        )
    return events
