"""What every request handler shares, and the reads of custom resources they all need.

Nothing here is state of its own: the QiskitFunctions, ServerlessJobs, the job archive and
object storage are the state, and every answer is read from them. Jobs come through
``history`` (a watch cache of the live ones, the archive for the rest); a small cache from
job id to object name covers jobs this process just created, until the watch brings them.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import IO, Any

from aiohttp import BodyPartReader, web

from .. import constants as c
from ..kube import Kube, QiskitFunction, ServerlessJob
from ..storage import ObjectStore
from .auth import Authority, Caller
from .config import GatewayConfig
from .errors import GatewayError, bad_request, function_not_found, job_not_found, too_large
from .history import JobHistory
from .live import LiveJobs

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
FORM_FIELD_LIMIT = 2 * 1024 * 1024
# How much of an oversized upload is read (and dropped) so the client sees the 413.
DRAIN_LIMIT = 64 * 1024 * 1024  # a text field of a multipart form (the real: 2.5 MB)
NAMES_KEPT = 10_000
# How long an id found nowhere waits for the watch cache: a job made a moment ago through
# another replica, before the operator wrote its first status (the watch brings it in ms).
NEW_JOB_WAIT_SECONDS = 0.5


class Routes(web.RouteTableDef):
    """Each route with and without its trailing slash: the client asks for both kinds
    (``programs`` and ``programs/upload/``), and the real gateway answers both alike."""

    def route(self, method: str, path: str, **kwargs: Any):  # type: ignore[override]
        bare = path.rstrip("/")

        def register(handler: Any) -> Any:
            super(Routes, self).route(method, bare, **kwargs)(handler)
            super(Routes, self).route(method, bare + "/", **kwargs)(handler)
            return handler

        return register


@dataclass
class Gateway:
    config: GatewayConfig
    kube: Kube
    store: ObjectStore
    authority: Authority
    history: JobHistory = field(default_factory=lambda: JobHistory(LiveJobs()))
    _names: OrderedDict[tuple[str, str], str] = field(default_factory=OrderedDict)

    async def caller(self, request: web.Request) -> Caller:
        return await self.authority.caller(request)

    def remember(self, namespace: str, job_id: str, name: str) -> None:
        self._names[(namespace, job_id)] = name
        while len(self._names) > NAMES_KEPT:
            self._names.popitem(last=False)

    # ------------------------------------------------------------------ functions

    async def functions(self, namespace: str) -> list[dict[str, Any]]:
        return await self.kube.list(QiskitFunction, namespace)

    async def function(
        self, namespace: str, title: str, provider: str | None
    ) -> dict[str, Any] | None:
        """The namespace's function with this title and provider; else that provider's
        catalog function (in the namespace named after the provider)."""
        for qf in await self.functions(namespace):
            spec = qf["spec"]
            if spec.get("title") == title and (spec.get("provider") or None) == (provider or None):
                return qf
        if provider and provider != namespace and _NAMESPACE.match(provider):
            for qf in await self.functions(provider):
                if qf["spec"].get("title") == title and qf["spec"].get("provider") == provider:
                    return qf
        return None

    async def catalog(self) -> list[dict[str, Any]]:
        """Every provider's catalog functions: those whose namespace is named after their
        provider."""
        return [
            qf
            async for qf in self.kube.each(QiskitFunction, "*")
            if qf["spec"].get("provider") == qf["metadata"]["namespace"]
        ]

    async def job_function(self, sj: dict[str, Any]) -> dict[str, Any] | None:
        """The function a job ran: by title in its namespace, or its provider's catalog one."""
        provider = sj["spec"].get("provider")
        if provider and provider != sj["metadata"]["namespace"]:
            return await self.function(
                sj["metadata"]["namespace"], sj["spec"]["function"], provider
            )
        return await self.function_titled(sj["metadata"]["namespace"], sj["spec"]["function"])

    async def function_titled(self, namespace: str, title: str) -> dict[str, Any] | None:
        """The function a job names (``spec.function`` is a title, unique per namespace)."""
        for qf in await self.functions(namespace):
            if qf["spec"].get("title") == title:
                return qf
        return None

    async def require_function(
        self, namespace: str, title: str, provider: str | None
    ) -> dict[str, Any]:
        qf = await self.function(namespace, title, provider)
        if qf is None:
            raise function_not_found(title, provider)
        return qf

    # ------------------------------------------------------------------ jobs

    async def job(self, namespace: str, job_id: str) -> dict[str, Any] | None:
        """The job with that id in the namespace (``*``: in any), live or archived: the watch
        cache's copy or one indexed lookup in the archive, never a listing of jobs."""
        if not _UUID.match(job_id):
            return None  # never a UID: nothing to look up
        found = await self.history.find(job_id, None if namespace == "*" else namespace)
        if found is not None:
            return found.body
        name = self._names.get((namespace, job_id))
        if name:
            # Created by this replica a moment ago, before its watch event came.
            sj = await self.kube.get(ServerlessJob, name, namespace)
            if sj is not None and sj["metadata"]["uid"] == job_id:
                return sj
        # Created a moment ago through another replica or the SDK, before this replica's
        # watch brought it: the API server filters its own cache (the id is in the job's
        # first status), the answer holds at most the one job.
        found = await self.kube.list(ServerlessJob, namespace, fields={c.JOB_ID_FIELD: job_id})
        if found:
            return found[0]
        # So new the operator has not written its status yet: its watch event is due.
        deadline = time.monotonic() + NEW_JOB_WAIT_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            key = self.history.live.get(job_id)
            if key is not None and (namespace == "*" or key.namespace == namespace):
                return key.body
        return None

    async def require_job(self, namespace: str, job_id: str) -> dict[str, Any]:
        sj = await self.job(namespace, job_id)
        if sj is None:
            raise job_not_found(job_id)
        return sj


GATEWAY = web.AppKey("gateway", Gateway)


def query(request: web.Request, name: str, *, required: bool = False) -> str | None:
    value = request.query.get(name) or None
    if value is None and required:
        raise bad_request(f"'{name}' not provided or is not valid")
    return value


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


@dataclass
class Form:
    fields: dict[str, str]
    file: IO[bytes] | None = None
    filename: str | None = None
    size: int = 0


async def read_form(request: web.Request, file_field: str, limit: int) -> Form:
    """A multipart form, its file part streamed to a temporary file and refused (413) once it
    passes ``limit`` bytes, never held whole in memory. The rest of a moderately oversized
    body is read and dropped first, so the client reads the 413 instead of a reset
    connection; a body declared far bigger is refused at once."""
    declared = request.content_length
    if declared is not None and declared > limit + DRAIN_LIMIT:
        raise too_large(
            f"the request body is {declared} bytes, over the {limit} bytes an upload may hold"
        )
    if request.content_type == "application/x-www-form-urlencoded":
        # What the client sends for an image function (no file): fields only, read whole
        # (the app's body limit bounds it).
        posted = await request.post()
        return Form(fields={k: str(v) for k, v in posted.items() if isinstance(v, str)})
    if not request.content_type.startswith("multipart/"):
        raise bad_request(
            "send the upload as a form (multipart/form-data, or urlencoded without a file)"
        )
    form = Form(fields={})
    refused: GatewayError | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == file_field and part.filename is not None and refused is None:
                handle = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
                size = 0
                while chunk := await part.read_chunk(1024 * 1024):
                    size += len(chunk)
                    if size > limit:
                        handle.close()
                        refused = too_large(
                            f"{part.filename} is over the {limit} bytes an upload may hold"
                        )
                        break
                    handle.write(chunk)
                if refused is None:
                    handle.seek(0)
                    form.file, form.filename, form.size = handle, part.filename, size
                else:
                    await _drain(part, size)
            elif part.name and refused is None:
                raw = await part.read()
                if len(raw) > FORM_FIELD_LIMIT:
                    raise too_large(
                        f"the form field {part.name!r} is over {FORM_FIELD_LIMIT} bytes"
                    )
                form.fields[part.name] = raw.decode(errors="replace")
            else:
                await _drain(part, 0)
    except ValueError as exc:  # aiohttp's own "malformed multipart" errors
        raise bad_request(f"the multipart form cannot be read: {exc}") from exc
    if refused is not None:
        if form.file is not None:
            form.file.close()
        raise refused
    return form


async def _drain(part: BodyPartReader, already: int) -> None:
    dropped = already
    while chunk := await part.read_chunk(1024 * 1024):
        dropped += len(chunk)
        if dropped > DRAIN_LIMIT:
            return  # enough: the connection will be closed on the rest
