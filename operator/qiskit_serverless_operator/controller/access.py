"""Who may run another namespace's function: Kubernetes' authorizer decides (RBAC), through
a SubjectAccessReview for the job's submitter (user and groups, as the API server
authenticated them when the job was created; the submitter policy checks both annotations).

A provider grants runs with an RBAC rule in its namespace: ``create`` on
``qiskitfunctions/run`` (``resourceNames`` for single functions); the ClusterRole
``qiskit-serverless-function-runner`` holds it, for a RoleBinding to its users.
"""

from __future__ import annotations

from typing import Any

from lightkube import codecs

from .. import constants as c
from ..kube import Kube

RUN_SUBRESOURCE = "run"


def submitter_of(sj: dict[str, Any]) -> tuple[str | None, list[str]]:
    annotations = sj["metadata"].get("annotations") or {}
    groups = annotations.get(c.ANNOTATION_SUBMITTER_GROUPS) or ""
    return annotations.get(c.ANNOTATION_SUBMITTER), [g for g in groups.split(",") if g]


async def can_run(kube: Kube, user: str, groups: list[str], qf: dict[str, Any]) -> tuple[bool, str]:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": groups,
            "resourceAttributes": {
                "namespace": qf["metadata"]["namespace"],
                "verb": "create",
                "group": c.GROUP,
                "resource": c.FUNCTION_PLURAL,
                "subresource": RUN_SUBRESOURCE,
                "name": qf["metadata"]["name"],
            },
        },
    }
    answer = await kube.client.create(codecs.from_dict(review))
    status = answer.status
    return bool(status and status.allowed), (status.reason or "") if status else ""
