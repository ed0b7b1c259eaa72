"""The ClusterKopfPeering object the replicas elect their active one through, made by the
operator itself.

An install that shipped the object beside the CRDs failed on a cluster that never had them:
one `kubectl apply -k` sends both, and the API server refuses an object of a kind whose CRD
is not established yet. The object is the operator's runtime state, as its ServerlessQueue is,
so the operator creates it at start-up (kopf reads it only after the startup handlers ran) and
again whenever it disappears (an Argo CD prune of an older install that still listed it).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from lightkube import codecs
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource

from .. import constants as c
from ..kube import Kube

log = logging.getLogger(__name__)

PEERING_GROUP = "kopf.dev"
PEERING_VERSION = "v1"
PEERING_KIND = "ClusterKopfPeering"
PEERING_PLURAL = "clusterkopfpeerings"
ClusterKopfPeering = create_global_resource(
    PEERING_GROUP, PEERING_VERSION, PEERING_KIND, PEERING_PLURAL
)
# A CRD applied in the same `kubectl apply` as the operator may be established a moment
# after the operator's pod starts: look again this soon.
CRD_WAIT_RETRY_SECONDS = 2.0


def peering_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{PEERING_GROUP}/{PEERING_VERSION}",
        "kind": PEERING_KIND,
        "metadata": {"name": name, "labels": {c.LABEL_MANAGED_BY: c.MANAGER}},
    }


async def create_if_missing(kube: Kube, body: dict[str, Any], crd: str) -> bool:
    """Create a cluster-scoped object unless it exists; True if this call created it.

    A missing CRD (404) is a wait, not a failure: kopf runs the startup handler again."""
    try:
        await kube.client.create(codecs.from_dict(body))
    except ApiError as exc:
        if exc.status.code == 409:
            return False
        if exc.status.code == 404:
            raise kopf.TemporaryError(
                f"the CRD {crd} is not established yet (install crds/ first: "
                "kubectl apply --server-side -k crds)",
                delay=CRD_WAIT_RETRY_SECONDS,
            ) from exc
        raise
    return True


async def ensure_peering(kube: Kube, name: str) -> None:
    if await create_if_missing(kube, peering_body(name), f"{PEERING_PLURAL}.{PEERING_GROUP}"):
        log.info("created the peering object %s %s", PEERING_KIND, name)
