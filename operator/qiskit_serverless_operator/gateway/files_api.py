"""``/api/v1/files/...``: a user's and a provider's files for a function (files.py).

The user's folder is the caller's own (whoever may ``get`` the function); the provider's
folder is for whoever may ``update`` it. Jobs of the function see them as ``/data`` and
``/function_data``.
"""

from __future__ import annotations

import asyncio
import mimetypes
from typing import Any

from aiohttp import web

from .. import files
from .auth import Caller
from .errors import bad_request, not_found, too_large
from .state import GATEWAY, Gateway, Routes, query, read_form

routes = Routes()
CHUNK = 1024 * 1024


def _gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


async def _folder(request: web.Request, *, provider_side: bool) -> tuple[Gateway, str, str]:
    """(gateway, object-storage folder, the folder as jobs see it), after the checks."""
    gw = _gateway(request)
    caller: Caller = await gw.caller(request)
    title = query(request, "function", required=True)
    provider = query(request, "provider", required=provider_side)
    await gw.authority.require(caller, "get", "qiskitfunctions")
    qf = await gw.require_function(caller.namespace, title or "", provider)
    home = qf["metadata"]["namespace"]
    if provider_side:
        # The provider's folder: for whoever may change the function (in its namespace).
        await gw.authority.require(
            caller, "update", "qiskitfunctions", name=qf["metadata"]["name"], namespace=home
        )
        return (
            gw,
            files.provider_folder(home, provider or "", title or ""),
            files.PROVIDER_MOUNT,
        )
    if home != caller.namespace:
        await gw.authority.require_run(caller, qf)  # a catalog function: its users' folders
    return gw, files.user_folder(caller.namespace, caller.user, provider, title), files.USER_MOUNT


def _name(request: web.Request) -> str:
    try:
        return files.check_name(query(request, "file") or "")
    except files.FileNameError as exc:
        raise bad_request(str(exc)) from exc


async def _list(request: web.Request, provider_side: bool) -> web.Response:
    gw, folder, _ = await _folder(request, provider_side=provider_side)
    present = await gw.store.alist_folder(folder)
    return web.json_response({"results": [name for name, _ in present]})


async def _download(request: web.Request, provider_side: bool) -> web.StreamResponse:
    gw, folder, _ = await _folder(request, provider_side=provider_side)
    name = _name(request)
    opened = await asyncio.to_thread(gw.store.open, folder + name)
    if opened is None:
        raise not_found("Requested file was not found.")
    body, size = opened
    response = web.StreamResponse(
        headers={
            "Content-Type": mimetypes.guess_type(name)[0] or "application/octet-stream",
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{name}"',
        }
    )
    await response.prepare(request)
    try:
        while chunk := await asyncio.to_thread(body.read, CHUNK):
            await response.write(chunk)
    finally:
        body.close()
    await response.write_eof()
    return response


async def _upload(request: web.Request, provider_side: bool) -> web.Response:
    gw, folder, shown = await _folder(request, provider_side=provider_side)
    limits = gw.config.files
    form = await read_form(request, "file", min(gw.config.max_upload_bytes, limits.max_file_bytes))
    if form.file is None:
        raise bad_request("A file should be uploaded.")
    try:
        name = files.check_name(form.filename or "")
        present = await gw.store.alist_folder(folder)
        files.check_quota(limits, present, name, form.size, shown)
    except files.FileNameError as exc:
        raise bad_request(str(exc)) from exc
    except files.QuotaError as exc:
        raise too_large(str(exc)) from exc
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    await asyncio.to_thread(gw.store.put_file, folder + name, form.file, content_type)
    return web.json_response({"message": f"{shown}/{name}"})


async def _delete(request: web.Request, provider_side: bool) -> web.Response:
    gw, folder, _ = await _folder(request, provider_side=provider_side)
    name = _name(request)
    if await gw.store.asize(folder + name) is None:
        raise not_found("Requested file was not found.")
    await gw.store.adelete(folder + name)
    return web.json_response({"message": "Requested file was deleted."})


def _both(path: str, method: str, handler: Any) -> None:
    async def user(request: web.Request) -> web.StreamResponse:
        return await handler(request, False)

    async def provider(request: web.Request) -> web.StreamResponse:
        return await handler(request, True)

    routes.route(method, f"/api/{{version}}/files{path}")(user)
    routes.route(method, f"/api/{{version}}/files/provider{path}")(provider)


_both("", "GET", _list)
_both("/download", "GET", _download)
_both("/upload", "POST", _upload)
_both("/delete", "DELETE", _delete)
