"""``/api/v1/programs/...``: list, get, upload and run functions (QiskitFunction objects)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp import web
from lightkube.core.exceptions import ApiError

from .. import arguments, objects, source, storage
from ..kube import QiskitFunction, Secret
from . import shapes
from .errors import GatewayError, bad_request
from .state import GATEWAY, Gateway, Routes, json_body, query, read_form

_TITLE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
DEFAULT_ENTRYPOINT = "main.py"
routes = Routes()


def _gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


def split_title(title: str | None, provider: str | None) -> tuple[str, str | None]:
    """``provider/title`` or a title and a provider, as the client's
    format_provider_name_and_title reads them."""
    if not title:
        raise bad_request("'title' not provided or is not valid")
    if "/" in title:
        parts = title.split("/")
        if len(parts) != 2:
            raise bad_request("Qiskit Function title is malformed. It can only contain one slash.")
        if provider and provider != parts[0]:
            raise bad_request("Provider defined in title and in provider fields.")
        provider, title = parts
    if not _TITLE.match(title) or len(title) > 63:
        raise bad_request(
            f"Qiskit Function title {title!r} is malformed: letters, digits, '_', '-' and '.', "
            "starting and ending with a letter or digit, up to 63 characters"
        )
    return title, provider or None


@routes.get("/api/{version}/programs")
async def list_functions(request: web.Request) -> web.Response:
    """The namespace's functions, and the providers' catalog functions the caller may run."""
    gw = _gateway(request)
    caller = await gw.caller(request)
    await gw.authority.require(caller, "list", "qiskitfunctions")
    provider = query(request, "provider")
    kind = query(request, "filter")  # serverless: the caller's own; catalog: providers'
    candidates = list(await gw.functions(caller.namespace))
    if kind != "serverless":
        for qf in await gw.catalog():
            if qf["metadata"]["namespace"] != caller.namespace:
                ok, _ = await gw.authority.may_run(caller, qf)
                if ok:
                    candidates.append(qf)
    found = []
    for qf in candidates:
        own = not qf["spec"].get("provider")
        if provider and qf["spec"].get("provider") != provider:
            continue
        if (kind == "serverless" and not own) or (kind == "catalog" and own):
            continue
        found.append(shapes.function_json(qf))
    found.sort(key=lambda f: (f.get("provider") or "", f["title"]))
    return web.json_response(found)


async def _reachable(gw: Gateway, caller: Any, title: str, provider: str | None) -> dict:
    """A function the caller may use: the namespace's (``get``), or a provider's catalog
    function they were granted (``create qiskitfunctions/run`` there)."""
    await gw.authority.require(caller, "get", "qiskitfunctions")
    qf = await gw.require_function(caller.namespace, title, provider)
    if qf["metadata"]["namespace"] != caller.namespace:
        await gw.authority.require_run(caller, qf)
    return qf


@routes.get("/api/{version}/programs/get_by_title/{title}")
async def get_function(request: web.Request) -> web.Response:
    gw = _gateway(request)
    caller = await gw.caller(request)
    title, provider = split_title(request.match_info["title"], query(request, "provider"))
    return web.json_response(shapes.function_json(await _reachable(gw, caller, title, provider)))


def _dependencies(raw: str | None) -> list[str]:
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"'dependencies' is not valid JSON: {exc}") from exc
    if not isinstance(value, list):
        raise bad_request("'dependencies' should be an array.")
    out = []
    for item in value:
        if isinstance(item, str) and item.strip():
            out.append(item.strip())
        elif isinstance(item, dict) and len(item) == 1:
            ((name, version),) = item.items()
            out.append(f"{name}=={version}")
        else:
            raise bad_request(
                f"'dependencies' should be an array of strings or objects: got {item!r}"
            )
    return out


def _env(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"'env_vars' is not valid JSON: {exc}") from exc
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise bad_request("'env_vars' should be an object of strings")
    return value


def _spec(fields: dict[str, str], title: str, provider: str | None) -> dict[str, Any]:
    entrypoint = fields.get("entrypoint") or None
    image = fields.get("image") or None
    if not entrypoint and not image:
        raise bad_request("At least one of attributes (entrypoint, image) is required.")
    spec: dict[str, Any] = {"title": title, "entrypoint": entrypoint or DEFAULT_ENTRYPOINT}
    if entrypoint and (entrypoint.startswith("/") or not entrypoint.endswith(".py")):
        raise bad_request(f"entrypoint {entrypoint!r} must be a relative path to a .py file")
    for key, value in (
        ("provider", provider),
        ("version", fields.get("version") or None),
        ("description", fields.get("description") or None),
        ("dependencies", _dependencies(fields.get("dependencies")) or None),
        ("env", _env(fields.get("env_vars")) or None),
        ("image", image),
    ):
        if value:
            spec[key] = value
    if image and spec.get("dependencies"):
        raise bad_request("a custom image already holds its dependencies; list none")
    raw_schema = fields.get("arguments_schema")
    if raw_schema:
        try:
            schema = json.loads(raw_schema)
        except ValueError:
            raise bad_request("arguments_schema must be valid JSON.") from None
        if schema != {}:  # the client sends {} to remove a schema
            try:
                arguments.check_schema(schema)
            except arguments.SchemaError as exc:
                raise bad_request(f"the function arguments schema cannot be used: {exc}") from None
            spec["argumentsSchema"] = schema
    return spec


@routes.post("/api/{version}/programs/upload")
async def upload(request: web.Request) -> web.Response:
    gw = _gateway(request)
    caller = await gw.caller(request)
    form = await read_form(request, "artifact", gw.config.max_upload_bytes)
    title, provider = split_title(form.fields.get("title"), form.fields.get("provider") or None)
    spec = _spec(form.fields, title, provider)
    archive: tuple[bytes, str] | None = None
    if "image" not in spec:
        if form.file is None:
            raise bad_request("the artifact (a tar of the function's folder) is missing")
        try:
            members = source.tar_members(form.file.read())
            try:
                spec["source"] = {"files": source.inline_files(members, spec["entrypoint"])}
            except source.NeedsArchive:
                archive = source.pack(members)
                spec["source"] = {"archive": {"sha256": archive[1]}}
        except source.SourceError as exc:
            raise bad_request(str(exc)) from exc
    namespace = caller.namespace
    name = objects.object_name(title)
    existing = await gw.kube.get(QiskitFunction, name, namespace)
    try:
        if existing is None:
            await gw.authority.require(caller, "create", "qiskitfunctions")
            body = objects.function(name, spec)
            body["metadata"]["namespace"] = namespace
            qf = await gw.kube.create(body)
        else:
            await gw.authority.require(caller, "update", "qiskitfunctions", name=name)
            other = existing["spec"]
            if other.get("title") != title or (other.get("provider") or None) != provider:
                raise GatewayError(
                    409,
                    f"the function object {name!r} in namespace {namespace!r} holds "
                    f"{other.get('provider') or '(no provider)'}/{other.get('title')}; "
                    "choose another title",
                )
            if "arguments_schema" not in form.fields and "argumentsSchema" in other:
                # The client leaves the field out to keep the schema (and sends {} to drop it).
                spec["argumentsSchema"] = other["argumentsSchema"]
            existing["spec"] = spec  # a whole-spec replace: removed fields go too
            qf = await gw.kube.replace(existing)
    except ApiError as exc:
        raise _api_error(exc, "upload the function") from exc
    if archive is not None:
        data, sha256 = archive
        await gw.store.aput(
            storage.archive_key(namespace, qf["metadata"]["uid"], sha256), data, "application/gzip"
        )
    return web.json_response(shapes.function_json(qf))


def _api_error(exc: ApiError, what: str) -> GatewayError:
    """The API server refused a write: say why in the gateway's shape (its message already
    names the field, e.g. a CEL rule's)."""
    code = exc.status.code or 500
    status = code if code in (400, 403, 404, 409, 422) else 502
    return GatewayError(400 if status == 422 else status, f"could not {what}: {exc.status.message}")


def _arguments(body: dict[str, Any]) -> str:
    raw = body.get("arguments", "{}")
    if isinstance(raw, dict):
        raw = json.dumps(raw)
    if not isinstance(raw, str):
        raise bad_request("'arguments' must be a JSON object, sent as a string", path=[])
    try:
        decoded = json.loads(raw or "{}")
    except ValueError as exc:
        raise bad_request(f"arguments is not valid JSON: {exc}", path=[]) from exc
    if not isinstance(decoded, dict):
        raise bad_request(
            f"arguments must be a JSON object (keyword arguments), not {type(decoded).__name__}",
            path=[],
        )
    too_large = objects.arguments_too_large(raw)
    if too_large:
        raise bad_request(too_large, path=[])
    return raw or "{}"


async def _function_request(
    request: web.Request,
) -> tuple[Gateway, Any, dict[str, Any], dict[str, Any], str]:
    """A JSON request about one function (validate_arguments, run): the gateway, caller,
    body, the function, and its arguments checked (JSON text of an object)."""
    gw = _gateway(request)
    caller = await gw.caller(request)
    body = await json_body(request)
    title, provider = split_title(body.get("title"), body.get("provider"))
    qf = await _reachable(gw, caller, title, provider)
    encoded = _arguments(body)
    schema = arguments.schema_of(qf["spec"])
    if schema is not None:
        try:
            await asyncio.to_thread(arguments.validate, schema, json.loads(encoded))
        except arguments.ArgumentsError as exc:
            raise bad_request(exc.message, path=exc.path) from None
        except arguments.SchemaError as exc:
            raise bad_request(
                f"the function arguments schema cannot be used: {exc}", path=[]
            ) from None
    return gw, caller, body, qf, encoded


@routes.post("/api/{version}/programs/validate_arguments")
async def validate_arguments(request: web.Request) -> web.Response:
    await _function_request(request)
    return web.json_response({"valid": True})


@routes.post("/api/{version}/programs/run")
async def run(request: web.Request) -> web.Response:
    gw, caller, _, qf, encoded = await _function_request(request)
    namespace, title = caller.namespace, qf["spec"]["title"]
    # What kubectl (and the SDK) would need to do the same: the arguments Secret and the job.
    await gw.authority.require_all(
        caller,
        [("create", "secrets", {"group": ""}), ("create", "serverlessjobs", {})],
    )
    name = objects.new_job_name(title)
    secret_name = objects.arguments_secret_name(name)
    secret = objects.arguments_secret(secret_name, name, encoded)
    secret["metadata"]["namespace"] = namespace
    home = qf["metadata"]["namespace"]
    job = objects.job(
        name,
        title,
        arguments_secret=secret_name,
        annotations=objects.submission_annotations(caller.user, caller.groups),
        # A provider's catalog function: the job is the caller's, its pod runs at the provider.
        provider=home if home != namespace else None,
    )
    job["metadata"]["namespace"] = namespace
    try:
        # The Secret first: the operator may look at the job the moment it exists.
        await gw.kube.create(secret)
        sj = await gw.kube.create(job)
        await gw.kube.patch(Secret, secret_name, namespace, objects.owned_by_job(sj))
    except ApiError as exc:
        raise _api_error(exc, "create the job") from exc
    uid = sj["metadata"]["uid"]
    gw.remember(namespace, uid, name)
    return web.json_response(
        {
            "id": uid,
            "result": None,
            "status": shapes.GATEWAY_STATUS[shapes.phase(sj)],
            "program": qf["metadata"]["uid"],
            "created": shapes.iso(shapes.submitted_at(sj)),
            "arguments": "{}",
            "compute_profile": None,
        }
    )


@routes.get("/api/{version}/dependencies-versions")
async def dependencies_versions(request: web.Request) -> web.Response:
    """No allowlist: a function's dependencies are built into its own image (any pip
    requirement the package index serves)."""
    gw = _gateway(request)
    await gw.caller(request)
    return web.json_response([])
