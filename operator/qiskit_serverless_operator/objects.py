"""The objects a client creates to upload a function or run a job, as plain dicts.

Two clients create them: the Python SDK (client/, through the `kubernetes` package) and the
REST gateway (gateway/, through lightkube). Both build them here, so a job looks the same to
the operator, to kubectl and to Argo CD whichever way it was submitted.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from typing import Any

from . import constants as c

# What a job's arguments Secret may hold (a Secret is at most 1 MiB; room for metadata).
MAX_ARGUMENTS_BYTES = c.SECRET_MAX_BYTES - 4096


def title_problem(title: object) -> str | None:
    """Why ``title`` cannot be a function's title (the CRD's rule, said before the API server
    says it less kindly), or None."""
    if not isinstance(title, str):
        return f"a function's title is a string, got {type(title).__name__} {title!r}"
    if len(title) > c.TITLE_MAX_LENGTH or not re.match(c.TITLE_PATTERN, title):
        return (
            f"function title {title!r} is not allowed: letters, digits, '_', '-' and '.' "
            f"(ASCII), starting and ending with a letter or digit, up to "
            f"{c.TITLE_MAX_LENGTH} characters"
        )
    return None


def object_name(title: str) -> str:
    """A QiskitFunction title (underscores allowed) as a DNS-1123 object name."""
    name = re.sub(r"[^a-z0-9-]+", "-", title.lower()).strip("-") or "function"
    if name != title or len(name) > 50:
        name = f"{name[:40].rstrip('-')}-{hashlib.sha256(title.encode()).hexdigest()[:8]}"
    return name


def new_job_name(title: str) -> str:
    """A fresh ServerlessJob name for a run of ``title``."""
    return f"{object_name(title)[:40].rstrip('-')}-{uuid.uuid4().hex[:8]}"


def arguments_secret_name(job_name: str) -> str:
    return f"{job_name}-args"


def arguments_too_large(encoded: str) -> str | None:
    """Why these encoded arguments cannot be sent, or None when they can."""
    size = len(encoded.encode())
    if size <= MAX_ARGUMENTS_BYTES:
        return None
    return (
        f"the arguments are {size} bytes, over the {MAX_ARGUMENTS_BYTES} a job's arguments "
        "Secret holds; put large inputs in object storage (the files API) and pass where "
        "they are instead"
    )


def submission_annotations(
    submitter: str | None, groups: list[str] | tuple[str, ...] = ()
) -> dict[str, str]:
    """When (sub-second: creationTimestamp has 1 s) and by whom a job was submitted: the
    user and groups the API server authenticated (the submitter policy checks both)."""
    annotations = {c.ANNOTATION_SUBMITTED_AT: f"{time.time():.6f}"}
    if submitter:
        annotations[c.ANNOTATION_SUBMITTER] = submitter
        if groups:
            annotations[c.ANNOTATION_SUBMITTER_GROUPS] = ",".join(groups)
    return annotations


def arguments_secret(name: str, job_name: str, encoded: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "labels": {c.LABEL_JOB: job_name}},
        "stringData": {c.ARGUMENTS_FILE: encoded},
    }


def job(
    name: str,
    title: str,
    *,
    arguments_secret: str,
    annotations: dict[str, str],
    credentials_secret: str | None = None,
    labels: dict[str, str] | None = None,
    provider: str | None = None,
) -> dict[str, Any]:
    """``provider``: run that provider's catalog function (in the provider's namespace)."""
    spec: dict[str, Any] = {
        "function": title,
        "arguments": {"secretRef": {"name": arguments_secret}},
    }
    if provider:
        spec["provider"] = provider
    if credentials_secret:
        spec["credentials"] = {"secretRef": {"name": credentials_secret}}
    metadata: dict[str, Any] = {"name": name, "annotations": annotations}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": c.API_VERSION, "kind": c.JOB_KIND, "metadata": metadata, "spec": spec}


def owned_by_job(job_body: dict[str, Any]) -> dict[str, Any]:
    """A merge patch making an object (the arguments Secret) the job's: deleted with it."""
    meta = job_body["metadata"]
    return {
        "metadata": {
            "ownerReferences": [
                {
                    "apiVersion": c.API_VERSION,
                    "kind": c.JOB_KIND,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "blockOwnerDeletion": True,
                }
            ]
        }
    }


def function(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.FUNCTION_KIND,
        "metadata": {"name": name},
        "spec": spec,
    }
