"""A finished ServerlessJob as an archive row, and the row back as the job's body.

Pure functions: no database, no API. The row keeps what every read of a job shows (a trimmed
copy of the object, ``body``) plus the columns the reads filter and order by. Never the
arguments or credentials: only where they were (keys), as the live job's status says.
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass
from typing import Any

from .. import constants as c

# What the archived copy keeps of the object's metadata (the rest is the API server's).
_META_KEPT = ("name", "namespace", "uid", "creationTimestamp", "labels")
_ANNOTATIONS_KEPT = (
    c.ANNOTATION_SUBMITTER,
    c.ANNOTATION_SUBMITTER_GROUPS,
    c.ANNOTATION_SUBMITTED_AT,
    c.ANNOTATION_JOB_ID,
)


def _time(value: str | float | None) -> datetime.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.datetime.fromtimestamp(value, datetime.UTC)
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def submitted_at(body: dict[str, Any]) -> float:
    """When the job was submitted (the SDK's and gateway's sub-second annotation, else the
    creation time): the first half of every job listing's order (``c.job_order``)."""
    meta = body["metadata"]
    try:
        return float((meta.get("annotations") or {})[c.ANNOTATION_SUBMITTED_AT])
    except (KeyError, ValueError):
        created = _time(meta.get("creationTimestamp"))
        return created.timestamp() if created else 0.0


def trimmed(body: dict[str, Any]) -> dict[str, Any]:
    """The job as every read shows it, without what is large, secret or the API server's:
    inline arguments, managedFields, finalizers, kopf's annotations."""
    meta = body["metadata"]
    annotations = meta.get("annotations") or {}
    kept_meta: dict[str, Any] = {key: meta[key] for key in _META_KEPT if key in meta}
    kept_meta["annotations"] = {k: annotations[k] for k in _ANNOTATIONS_KEPT if k in annotations}
    spec = copy.deepcopy(body.get("spec") or {})
    arguments = spec.get("arguments")
    if isinstance(arguments, dict) and "inline" in arguments:
        spec["arguments"] = {**{k: v for k, v in arguments.items() if k != "inline"}}
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.JOB_KIND,
        "metadata": kept_meta,
        "spec": spec,
        "status": copy.deepcopy(body.get("status") or {}),
    }


@dataclass(frozen=True)
class ArchivedJob:
    """One row of the archive (store.py's qso_jobs table)."""

    job_id: str
    namespace: str
    name: str
    user_name: str
    function: str
    provider: str  # the catalog function's provider, '' for the namespace's own functions
    task: bool
    parent_job_id: str | None
    phase: str
    sub_status: str | None
    reason: str | None
    message: str | None
    submitted_at: datetime.datetime
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    completed_at: datetime.datetime | None
    resources: dict[str, Any] | None
    result_key: str | None
    logs_key: str | None
    provider_logs_key: str | None
    arguments_ref: str | None
    runtime_jobs: list[Any]
    body: dict[str, Any]

    @classmethod
    def of(cls, sj: dict[str, Any], user: str) -> ArchivedJob:
        """The row of a finished job (``user``: whose job it is, jobspec.queue_user)."""
        meta, spec = sj["metadata"], sj.get("spec") or {}
        status = sj.get("status") or {}
        phase = status.get("phase")
        if phase not in {p.value for p in c.TERMINAL_JOB_PHASES}:
            raise ValueError(f"only a finished job is archived, not one that is {phase}")
        arguments = spec.get("arguments") or {}
        secret = arguments.get("secretRef") if isinstance(arguments, dict) else None
        created = _time(meta.get("creationTimestamp")) or datetime.datetime.now(datetime.UTC)
        return cls(
            job_id=meta["uid"],
            namespace=meta["namespace"],
            name=meta["name"],
            user_name=user,
            function=spec.get("function") or "",
            provider=spec.get("provider") or "",
            task=bool(spec.get("task")),
            parent_job_id=(meta.get("labels") or {}).get(c.LABEL_TASK_PARENT),
            phase=phase,
            sub_status=status.get("subStatus"),
            reason=status.get("reason"),
            message=status.get("message"),
            submitted_at=_time(submitted_at(sj)) or created,
            created_at=created,
            started_at=_time(status.get("startTime")),
            completed_at=_time(status.get("completionTime")),
            resources=spec.get("resources"),
            result_key=(status.get("result") or {}).get("key"),
            logs_key=(status.get("logs") or {}).get("key"),
            provider_logs_key=(status.get("providerLogs") or {}).get("key"),
            arguments_ref=(secret or {}).get("name") if isinstance(secret, dict) else None,
            runtime_jobs=list(status.get("runtimeJobs") or []),
            body=trimmed(sj),
        )

    def object_keys(self) -> list[str]:
        return [k for k in (self.result_key, self.logs_key, self.provider_logs_key) if k]
