"""Who is calling, and may they: Kubernetes decides both, exactly as it does for kubectl.

- The bearer token is checked with a TokenReview: any token the API server accepts (a
  ServiceAccount token, an OIDC token if the cluster trusts an issuer, ...) is accepted, and
  the API server's answer says who the caller is.
- Every action is checked with a SubjectAccessReview for that user and their groups, on the
  very resources kubectl would touch (e.g. ``create serverlessjobs`` and ``create secrets``
  to run a function), in the caller's namespace. So RBAC Roles and `kubectl auth can-i`
  tell exactly what the REST API allows.

The namespace is the client's ``instance`` (sent as the ``Service-CRN`` header) when it is a
namespace name, else a ServiceAccount's own namespace. Answers are cached briefly (a minute
for tokens, seconds for access), keyed by a hash of the token, never the token itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from lightkube import codecs
from lightkube.core.exceptions import ApiError

from .. import constants as c
from ..kube import Kube
from .errors import GatewayError, NotAuthenticated, bad_request, forbidden

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SERVICE_ACCOUNT = "system:serviceaccount:"
CACHE_ENTRIES = 2000


@dataclass(frozen=True)
class _Identity:
    """Who the API server says a token belongs to."""

    user: str
    groups: tuple[str, ...]
    uid: str
    extra: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Caller(_Identity):
    """That identity, and the namespace its request works in."""

    namespace: str


class _Cache:
    """A small LRU with an age limit."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()

    def get(self, key: Any) -> Any:
        hit = self._items.get(key)
        if hit is None or time.monotonic() - hit[0] > self.seconds:
            return None
        self._items.move_to_end(key)
        return hit[1]

    def put(self, key: Any, value: Any) -> None:
        self._items[key] = (time.monotonic(), value)
        self._items.move_to_end(key)
        while len(self._items) > CACHE_ENTRIES:
            self._items.popitem(last=False)


def namespace_of(crn: str | None, identity: _Identity) -> str:
    if crn and _NAMESPACE.match(crn) and len(crn) <= 63:
        return crn
    if identity.user.startswith(_SERVICE_ACCOUNT):
        return identity.user[len(_SERVICE_ACCOUNT) :].split(":", 1)[0]
    raise bad_request(
        "say which namespace to work in: pass it as the client's instance, e.g. "
        "ServerlessClient(host=..., token=..., instance='<namespace>')"
        + (f" ({crn!r} is not a namespace name)" if crn else "")
    )


@dataclass
class Authority:
    kube: Kube
    token_seconds: float = 60
    access_seconds: float = 10
    _tokens: _Cache = field(init=False)
    _access: _Cache = field(init=False)

    def __post_init__(self) -> None:
        self._tokens = _Cache(self.token_seconds)
        self._access = _Cache(self.access_seconds)

    async def _review(self, api_version: str, kind: str, spec: dict[str, Any], what: str) -> Any:
        """Ask the API server (a TokenReview or SubjectAccessReview); its answer's status."""
        review = {"apiVersion": api_version, "kind": kind, "spec": spec}
        try:
            answer = await self.kube.client.create(codecs.from_dict(review))
        except ApiError as exc:
            raise GatewayError(
                503, f"the cluster could not check {what}: {exc.status.message}"
            ) from exc
        return answer.status

    async def caller(self, request: web.Request) -> Caller:
        header = request.headers.get("Authorization", "")
        token = header.split(" ")[-1].strip() if header else ""
        if not token:
            raise NotAuthenticated("Authorization token was not provided.")
        identity = await self._identity(token)
        return Caller(
            user=identity.user,
            groups=identity.groups,
            uid=identity.uid,
            extra=identity.extra,
            namespace=namespace_of(request.headers.get("Service-CRN"), identity),
        )

    async def _identity(self, token: str) -> _Identity:
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._tokens.get(key)
        if cached is not None:
            if isinstance(cached, str):
                raise NotAuthenticated(cached)
            return cached
        status = await self._review(
            "authentication.k8s.io/v1", "TokenReview", {"token": token}, "the token"
        )
        if not status or not status.authenticated or not status.user:
            why = "Authorization token is not valid."
            if status and status.error:
                why += f" ({status.error})"
            self._tokens.put(key, why)
            raise NotAuthenticated(why)
        user = status.user
        identity = _Identity(
            user=user.username or "",
            groups=tuple(user.groups or ()),
            uid=user.uid or "",
            extra=tuple(sorted((k, tuple(v)) for k, v in (user.extra or {}).items())),
        )
        self._tokens.put(key, identity)
        return identity

    async def allowed(
        self,
        caller: Caller,
        verb: str,
        resource: str,
        *,
        namespace: str | None = None,
        name: str | None = None,
        group: str = c.GROUP,
        subresource: str | None = None,
    ) -> tuple[bool, str]:
        """Whether RBAC (or whatever authorizer the cluster runs) lets the caller do it."""
        namespace = namespace or caller.namespace
        key = (caller.user, caller.groups, verb, group, resource, subresource, namespace, name)
        cached = self._access.get(key)
        if cached is not None:
            return cached
        attributes: dict[str, Any] = {
            "namespace": namespace,
            "verb": verb,
            "group": group,
            "resource": resource,
        }
        if name:
            attributes["name"] = name
        if subresource:
            attributes["subresource"] = subresource
        spec: dict[str, Any] = {
            "user": caller.user,
            "groups": list(caller.groups),
            "resourceAttributes": attributes,
        }
        if caller.uid:
            spec["uid"] = caller.uid
        if caller.extra:
            spec["extra"] = {k: list(v) for k, v in caller.extra}
        status = await self._review(
            "authorization.k8s.io/v1", "SubjectAccessReview", spec, "access"
        )
        result = (bool(status and status.allowed), (status.reason or "") if status else "")
        self._access.put(key, result)
        return result

    async def require(self, caller: Caller, verb: str, resource: str, **kwargs: Any) -> None:
        """Go on only if allowed; else 403 saying what was refused and the authorizer's reason."""
        ok, reason = await self.allowed(caller, verb, resource, **kwargs)
        if ok:
            return
        group = kwargs.get("group", c.GROUP)
        what = f"{resource}.{group}" if group else resource
        if kwargs.get("subresource"):
            what += f"/{kwargs['subresource']}"
        if kwargs.get("name"):
            what += f" {kwargs['name']!r}"
        namespace = kwargs.get("namespace") or caller.namespace
        raise forbidden(
            f'{caller.user} may not {verb} {what} in namespace "{namespace}"'
            + (f": {reason}" if reason else " (no RBAC rule allows it)")
            + ". Ask for a Role that grants it, or use a namespace you may use "
            "(the client's instance)."
        )

    async def may_run(self, caller: Caller, qf: dict[str, Any]) -> tuple[bool, str]:
        """May the caller run this function of another namespace (a provider's catalog
        function)? RBAC's ``create`` on ``qiskitfunctions/run`` there."""
        return await self.allowed(
            caller,
            "create",
            c.FUNCTION_PLURAL,
            namespace=qf["metadata"]["namespace"],
            name=qf["metadata"]["name"],
            subresource="run",
        )

    async def require_run(self, caller: Caller, qf: dict[str, Any]) -> None:
        ok, reason = await self.may_run(caller, qf)
        if ok:
            return
        meta, spec = qf["metadata"], qf["spec"]
        raise forbidden(
            f"{caller.user} may not run {spec.get('provider')}/{spec['title']}: no grant to "
            f"create qiskitfunctions/run {meta['name']!r} in namespace {meta['namespace']!r}"
            + (f" ({reason})" if reason else "")
            + "; ask the provider for one"
        )

    async def require_all(self, caller: Caller, checks: list[tuple[str, str, dict]]) -> None:
        await asyncio.gather(*(self.require(caller, v, r, **kw) for v, r, kw in checks))
