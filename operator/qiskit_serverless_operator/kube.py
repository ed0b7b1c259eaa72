"""The operator's Kubernetes API access for objects other than the one a kopf handler holds.

lightkube (async, typed, lazy model imports) instead of the `kubernetes` client keeps the
operator's memory small; objects travel as plain dicts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from lightkube import AsyncClient, codecs
from lightkube.core.exceptions import ApiError
from lightkube.core.selector import build_selector
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret
from lightkube.types import CascadeType, PatchType

from . import constants as c

ServerlessJob = create_namespaced_resource(c.GROUP, c.VERSION, c.JOB_KIND, c.JOB_PLURAL)
QiskitFunction = create_namespaced_resource(c.GROUP, c.VERSION, c.FUNCTION_KIND, c.FUNCTION_PLURAL)
ServerlessQueue = create_global_resource(c.GROUP, c.VERSION, c.QUEUE_KIND, c.QUEUE_PLURAL)

__all__ = [
    "ApiError",
    "ConfigMap",
    "Job",
    "Kube",
    "Pod",
    "QiskitFunction",
    "Secret",
    "ServerlessJob",
    "ServerlessQueue",
]

_FIELD_MANAGER = c.MANAGER
# Ask the API server for metadata alone (what `kubectl get -o name` and client-go's
# metadata informers use); plain JSON is the fallback the API server may answer with.
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


def _plain(obj: Any) -> dict[str, Any]:
    return obj if isinstance(obj, dict) else obj.to_dict()


class Kube:
    """Thin async helpers; every method is safe to repeat (create-or-get, delete-if-present)."""

    def __init__(self, client: AsyncClient | None = None) -> None:
        self._client = client

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            self._client = AsyncClient(field_manager=_FIELD_MANAGER)
        return self._client

    async def get(self, res: Any, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            return _plain(await self.client.get(res, name, namespace=namespace))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise

    async def list(
        self,
        res: Any,
        namespace: str,
        labels: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        return [obj async for obj in self.each(res, namespace, labels=labels, fields=fields)]

    async def each(
        self,
        res: Any,
        namespace: str,
        page: int = 500,
        labels: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every object, listed a page at a time: for kinds that can number thousands."""
        async for obj in self.client.list(
            res, namespace=namespace, chunk_size=page, labels=labels or None, fields=fields or None
        ):
            yield _plain(obj)

    async def list_cached(
        self, res: Any, namespace: str, fields: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Objects as the API server's cache holds them (resourceVersion=0), not a quorum
        read: a plain list waits until the cache has caught up with etcd's latest revision,
        which right after any write in the cluster (an admission, say) took 60-70 ms on the
        local cluster against 3 ms from the cache. For reads where a view milliseconds old
        is as good as the latest (a job's function)."""
        generic = self.client._client
        request = generic.prepare_request(
            "list",
            res,
            namespace=namespace,
            params={
                "resourceVersion": "0",
                "fieldSelector": build_selector(fields, for_fields=True) if fields else None,
            },
        )
        return [_plain(obj) async for obj in generic.list(request)]

    async def each_metadata(
        self, res: Any, namespace: str, page: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        """Every object's metadata only (PartialObjectMetadataList), a page at a time: what
        a check of names, UIDs and resourceVersions needs, without specs and statuses.
        lightkube has no call for it, so its own request pipeline is used underneath."""
        generic = self.client._client
        token: str | None = None
        while True:
            request = generic.prepare_request(
                "list",
                res,
                namespace=namespace,
                params={"limit": page, "continue": token},
                headers={"Accept": _METADATA_LIST},
            )
            response = await generic.send(generic.build_adapter_request(request))
            generic.raise_for_status(response)
            listing = response.json()
            for item in listing.get("items") or []:
                yield item.get("metadata") or {}
            token = (listing.get("metadata") or {}).get("continue")
            if not token:
                return

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj``; a conflict is the caller's to handle (ApiError 409)."""
        namespace = obj["metadata"].get("namespace")
        return _plain(await self.client.create(codecs.from_dict(obj), namespace=namespace))

    async def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace ``obj`` (its metadata.resourceVersion guards against a concurrent writer)."""
        namespace = obj["metadata"].get("namespace")
        return _plain(await self.client.replace(codecs.from_dict(obj), namespace=namespace))

    async def patch(
        self, res: Any, name: str, namespace: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A JSON merge patch of the object itself (not its status)."""
        patched = await self.client.patch(
            res, name, body, namespace=namespace, patch_type=PatchType.MERGE
        )
        return _plain(patched)

    async def create_or_get(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create ``obj``; if it already exists (an earlier run made it), return that one."""
        meta = obj["metadata"]
        try:
            created = await self.client.create(codecs.from_dict(obj), namespace=meta["namespace"])
            return _plain(created), True
        except ApiError as exc:
            if exc.status.code != 409:
                raise
        res = type(codecs.from_dict(obj))
        existing = await self.get(res, meta["name"], meta["namespace"])
        if existing is None:  # deleted between our create and get: try once more
            return _plain(await self.client.create(codecs.from_dict(obj))), True
        return existing, False

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        applied = await self.client.apply(
            codecs.from_dict(obj), namespace=obj["metadata"]["namespace"], force=True
        )
        return _plain(applied)

    async def delete(self, res: Any, name: str, namespace: str, *, background: bool = True) -> bool:
        """Delete if present; True when something was deleted."""
        try:
            await self.client.delete(
                res,
                name,
                namespace=namespace,
                cascade=CascadeType.BACKGROUND if background else CascadeType.FOREGROUND,
            )
            return True
        except ApiError as exc:
            if exc.status.code == 404:
                return False
            raise

    async def patch_status(
        self,
        res: Any,
        name: str,
        namespace: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"status": status}
        if resource_version:
            # A precondition: a concurrent writer makes this fail with 409, not clobber.
            body["metadata"] = {"resourceVersion": resource_version}
        patched = await self.client.patch(
            res.Status, name, body, namespace=namespace, patch_type=PatchType.MERGE
        )
        return _plain(patched)

    async def pod_log_tail(
        self, name: str, namespace: str, lines: int, container: str = "main"
    ) -> str:
        try:
            chunks = [
                line
                async for line in self.client.log(
                    name, namespace=namespace, container=container, tail_lines=lines
                )
            ]
        except ApiError as exc:
            if exc.status.code in (400, 404):
                return ""
            raise
        return "".join(chunks)
