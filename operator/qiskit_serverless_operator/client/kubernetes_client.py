"""The SDK: a qiskit_serverless ``BaseClient`` whose functions and jobs are Kubernetes resources.

Functions are QiskitFunction objects and jobs ServerlessJob objects in one namespace; a
job's id is its ServerlessJob's UID. Results and logs are read through the read links the
operator keeps in the job's ``sj-out-<name>`` Secret, so reading them needs exactly the
Kubernetes rights that reading Secrets in the namespace needs. A finished job that has been
archived (and so deleted from the API server) is read through the history API (history.py),
with the same kubeconfig; ``jobs()`` pages there, over live and archived jobs alike.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from qiskit_serverless.core.client import BaseClient
from qiskit_serverless.core.function import QiskitFunction, RunnableQiskitFunction
from qiskit_serverless.core.job import Configuration, Job
from qiskit_serverless.core.job_event import JobEvent
from qiskit_serverless.exception import QiskitServerlessException
from qiskit_serverless.serializers.program_serializers import QiskitObjectsEncoder

from .. import arguments as schema_module
from .. import constants as c
from .. import objects, reports, source
from ..archive.rows import submitted_at
from ..controller import jobspec
from ..runtime import logsplit
from .history import HistoryApi, job_body

NO_LOGS = "No logs yet."
# jobs() without a limit: as qiskit_serverless' ServerlessClient.jobs().
DEFAULT_JOBS_LIMIT = 10
SUBMITTED_AT = c.ANNOTATION_SUBMITTED_AT
STOPPED = "Job has been stopped."
MAX_ARCHIVE_BYTES = source.MAX_ARCHIVE_BYTES
NeedsArchive = source.NeedsArchive
object_name = objects.object_name


def _api_error(exc: ApiException, what: str, namespace: str) -> QiskitServerlessException:
    """A Kubernetes error as a sentence a notebook user can act on."""
    try:
        detail = json.loads(exc.body or "{}").get("message") or exc.reason
    except ValueError:
        detail = exc.reason
    if exc.status == 403:
        return QiskitServerlessException(
            f"not allowed to {what} in namespace {namespace!r}: {detail}. Ask for a Role that "
            "grants it, or choose a namespace you may use: QiskitServerless(namespace=...)"
        )
    if exc.status == 404 and what.startswith("list "):
        return QiskitServerlessException(
            f"this cluster does not serve {what[5:]}: the qiskit-serverless CRDs are not "
            "installed (kubectl apply -f crds/)"
        )
    if exc.status == 401:
        return QiskitServerlessException(f"the cluster did not accept your credentials: {detail}")
    return QiskitServerlessException(f"could not {what} (HTTP {exc.status}): {detail}")


def encode_arguments(arguments: dict[str, Any] | None) -> str:
    """Arguments as the job reads them: JSON with Qiskit objects in qiskit_serverless's codec."""
    if arguments is not None and not isinstance(arguments, dict):
        raise QiskitServerlessException(
            f"arguments must be a dict of name: value (the program's get_arguments()), got "
            f"{type(arguments).__name__}"
        )
    try:
        return json.dumps(arguments or {}, cls=QiskitObjectsEncoder)
    except RecursionError as exc:
        raise QiskitServerlessException(
            "the arguments cannot be sent to the job: they are nested too deeply for JSON"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise QiskitServerlessException(
            f"the arguments cannot be sent to the job: {exc}. Arguments must be JSON values "
            "or Qiskit objects (circuits, observables, arrays, ...)"
        ) from exc


def _folder_members(program: QiskitFunction) -> list[tuple[str, bytes]]:
    folder = Path(program.working_dir or ".").expanduser()
    if not folder.is_dir():
        raise QiskitServerlessException(f"working_dir {str(folder)!r} is not a folder")
    members = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and not source.skipped(relative):
            members.append((relative, path.read_bytes()))
    return members


def read_program_files(program: QiskitFunction) -> dict[str, str]:
    """The function's folder as {relative path: text}; the entrypoint must be among them.
    Raises NeedsArchive when the folder is too big (or too binary) to go inline."""
    members = _folder_members(program)
    try:
        return source.inline_files(members, program.entrypoint)
    except source.SourceError as exc:
        folder = program.working_dir or "."
        raise QiskitServerlessException(f"{exc} (folder {folder!r})") from exc


def pack_program(program: QiskitFunction) -> tuple[bytes, str]:
    """The folder as a reproducible tar.gz (sorted, zero mtimes) and its sha256."""
    members = _folder_members(program)
    size = sum(len(content) for _, content in members)
    if size > MAX_ARCHIVE_BYTES:
        raise QiskitServerlessException(
            f"the program folder holds {size} bytes, over the {MAX_ARCHIVE_BYTES} "
            "limit; keep data out of working_dir and pass it as an argument or a location"
        )
    try:
        return source.pack(members)
    except source.SourceError as exc:
        raise QiskitServerlessException(str(exc)) from exc


class KubernetesClient(BaseClient):
    """Qiskit Serverless on a Kubernetes cluster running the qiskit-serverless operator."""

    def __init__(
        self,
        namespace: str | None = None,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        api_client: k8s.ApiClient | None = None,
        credentials_secret: str | None = None,
    ) -> None:
        """``credentials_secret``: a Secret in the namespace with IBM Quantum ``token``,
        ``channel`` and ``instance``, handed to every job this client runs (default: the
        ``QSO_CREDENTIALS_SECRET`` environment variable; none: programs run offline)."""
        self.credentials_secret = credentials_secret or os.environ.get("QSO_CREDENTIALS_SECRET")
        # upload() prints the function's phase while it waits (set False to silence).
        self.progress = True
        if api_client is None:
            api_client, default_namespace = _connect(kubeconfig, context)
        else:
            default_namespace = "default"
        self.namespace = namespace or default_namespace
        self._api = api_client
        self._custom = k8s.CustomObjectsApi(api_client)
        self._core = k8s.CoreV1Api(api_client)
        super().__init__(host=api_client.configuration.host)
        self._names: dict[str, str] = {}
        self._history = HistoryApi(api_client, self.namespace)
        # Archived jobs read once (an archived job never changes).
        self._finished: dict[str, dict[str, Any]] = {}
        self._user: str | None = None
        self._groups: list[str] = []

    @property
    def user(self) -> str | None:
        """Who the cluster says we are (a SelfSubjectReview), recorded on every job we submit.

        The fair-share queue orders and limits jobs by it; the API server's admission policy
        rejects a job that names anyone else. None if the cluster cannot say (the job then
        counts as its namespace's shared user).
        """
        if self._user is None:
            try:
                review = k8s.AuthenticationV1Api(self._api).create_self_subject_review(
                    k8s.V1SelfSubjectReview()
                )
                self._user = review.status.user_info.username or ""
                self._groups = list(review.status.user_info.groups or [])
            except ApiException:
                self._user = ""
        return self._user or None

    def __repr__(self) -> str:
        return f"<KubernetesClient(host={self.host}, namespace={self.namespace})>"

    @classmethod
    def from_dict(cls, dictionary: dict) -> KubernetesClient:
        return cls(namespace=dictionary.get("namespace"))

    # ------------------------------------------------------------------ plumbing

    def _list(self, plural: str) -> list[dict[str, Any]]:
        try:
            return self._custom.list_namespaced_custom_object(
                c.GROUP, c.VERSION, self.namespace, plural
            )["items"]
        except ApiException as exc:
            raise _api_error(exc, f"list {plural}", self.namespace) from exc
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise QiskitServerlessException(f"no cluster reachable at {self.host}: {exc}") from exc

    def _job_body(self, job_id: str) -> dict[str, Any] | None:
        """The job, read where it is: its ServerlessJob by name when this client knows the
        name (always current), else the history API (one lookup, live or archived), else,
        on a cluster without that API, a field-selector listing of the namespace's jobs."""
        if job_id in self._finished:
            return self._finished[job_id]  # archived: it never changes again
        name = self._names.get(job_id)
        if name:
            try:
                body = self._custom.get_namespaced_custom_object(
                    c.GROUP, c.VERSION, self.namespace, c.JOB_PLURAL, name
                )
                if body["metadata"]["uid"] == job_id:
                    return body
            except ApiException as exc:
                if exc.status != 404:
                    raise _api_error(exc, "read the job", self.namespace) from exc
        try:
            if self._history.served():
                record = self._history.get(job_id)
                if record is None:
                    return None
                body = job_body(record)
                if _archived(body):
                    self._finished[job_id] = body
                else:
                    self._names[job_id] = body["metadata"]["name"]
                return body
        except ApiException as exc:
            raise _api_error(exc, "read the job's history", self.namespace) from exc
        try:
            # The operator writes the UID into the job's first status (a selectable field).
            found = self._custom.list_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                self.namespace,
                c.JOB_PLURAL,
                field_selector=f"{c.JOB_ID_FIELD}={job_id}",
            )["items"]
        except ApiException as exc:
            raise _api_error(exc, "list serverlessjobs", self.namespace) from exc
        # A job the operator has not seen yet has no status: look through them all.
        for body in found or self._list(c.JOB_PLURAL):
            self._names[body["metadata"]["uid"]] = body["metadata"]["name"]
            if body["metadata"]["uid"] == job_id:
                return body
        return None

    def _require_job(self, job_id: str) -> dict[str, Any]:
        body = self._job_body(job_id)
        if body is None:
            raise QiskitServerlessException(f"no job {job_id} in namespace {self.namespace!r}")
        return body

    def _read_link(self, body: dict[str, Any], key: str, secret: str) -> str | None:
        try:
            found = self._core.read_namespaced_secret(secret, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _api_error(exc, "read the job's output links", self.namespace) from exc
        data = (found.data or {}).get(key)
        return base64.b64decode(data).decode() if data else None

    def _fetch(
        self, body: dict[str, Any], key: str, secret: str | None = None, refreshed: bool = False
    ) -> str | None:
        """An output of the job through its read link; an expired link (they last at most 7
        days) is renewed by the operator on request, once."""
        secret = secret or jobspec.output_secret_name(body["metadata"]["name"])
        url = self._read_link(body, key, secret)
        if not url:
            if refreshed or not (body.get("status") or {}).get("startTime"):
                return None
            # Started, yet no links: their Secret was deleted; the operator makes it again.
            self._refresh_links(body, secret, key, url)
            return self._fetch(body, key, secret, refreshed=True)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.read().decode()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if exc.code == 403 and not refreshed:
                self._refresh_links(body, secret, key, url)
                return self._fetch(body, key, secret, refreshed=True)
            raise QiskitServerlessException(
                f"object storage refused the job's {key.split('-')[0]} (HTTP {exc.code})"
            ) from exc

    def _refresh_links(
        self, body: dict[str, Any], secret: str, key: str, old: str | None, timeout: float = 60
    ) -> None:
        name = body["metadata"]["name"]
        try:
            self._custom.patch_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                self.namespace,
                c.JOB_PLURAL,
                name,
                {"metadata": {"annotations": {c.ANNOTATION_REFRESH_LINKS: f"{time.time():.6f}"}}},
            )
        except ApiException as exc:
            raise _api_error(exc, "ask for new read links", self.namespace) from exc
        deadline = time.monotonic() + timeout
        while self._read_link(body, key, secret) == old:
            if time.monotonic() > deadline:
                raise QiskitServerlessException(
                    f"the job's read links expired and no new ones came in {timeout:.0f} s; "
                    "is the operator running?"
                )
            time.sleep(0.5)

    def _runnable(self, body: dict[str, Any]) -> RunnableQiskitFunction:
        spec = body["spec"]
        return RunnableQiskitFunction(
            client=self,
            title=spec["title"],
            provider=spec.get("provider"),
            entrypoint=spec.get("entrypoint"),
            dependencies=spec.get("dependencies") or [],
            env_vars=spec.get("env") or None,
            description=spec.get("description"),
            version=spec.get("version"),
            image=(body.get("status") or {}).get("image") or spec.get("image"),
            arguments_schema=schema_module.schema_of(spec),
            raw_data=body,
        )

    # ------------------------------------------------------------------ functions

    def functions(self, provider: str | None = None, **kwargs: Any) -> list[RunnableQiskitFunction]:
        """The namespace's functions; with ``provider``, that provider's (its catalog, in the
        namespace named after it, when you may read it, plus any here)."""
        bodies = [
            b
            for b in self._list(c.FUNCTION_PLURAL)
            if provider is None or b["spec"].get("provider") == provider
        ]
        if provider and provider != self.namespace:
            bodies += self._catalog(provider)
        return [self._runnable(b) for b in sorted(bodies, key=lambda b: b["spec"]["title"])]

    def _catalog(self, provider: str) -> list[dict[str, Any]]:
        """A provider's catalog functions: those in its namespace that name it."""
        try:
            items = self._custom.list_namespaced_custom_object(
                c.GROUP, c.VERSION, provider, c.FUNCTION_PLURAL
            )["items"]
        except ApiException as exc:
            if exc.status in (403, 404):
                return []  # no grant to read it (or no such provider): nothing to show
            raise _api_error(exc, f"list provider {provider}'s functions", provider) from exc
        return [b for b in items if b["spec"].get("provider") == provider]

    def function(self, title: str, provider: str | None = None) -> RunnableQiskitFunction | None:
        """The namespace's function with this title (and provider); else that provider's
        catalog function, if you may read it. None when there is none."""
        if "/" in title and provider is None:
            provider, title = title.split("/", 1)
        for body in self._list(c.FUNCTION_PLURAL):
            spec = body["spec"]
            if spec["title"] == title and (provider is None or spec.get("provider") == provider):
                return self._runnable(body)
        if provider and provider != self.namespace:
            for body in self._catalog(provider):
                if body["spec"]["title"] == title:
                    return self._runnable(body)
        return None

    def _may_run(self, body: dict[str, Any]) -> None:
        """Before a run of a provider's catalog function: the cluster's own answer (a
        SelfSubjectAccessReview, as `kubectl auth can-i`) to whether we may."""
        meta = body["metadata"]
        review = k8s.AuthorizationV1Api(self._api).create_self_subject_access_review(
            k8s.V1SelfSubjectAccessReview(
                spec=k8s.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=k8s.V1ResourceAttributes(
                        namespace=meta["namespace"],
                        verb="create",
                        group=c.GROUP,
                        resource=c.FUNCTION_PLURAL,
                        subresource="run",
                        name=meta["name"],
                    )
                )
            )
        )
        if not review.status.allowed:
            spec = body["spec"]
            raise QiskitServerlessException(
                f"not allowed to run {spec.get('provider')}/{spec['title']}: no grant to create "
                f"qiskitfunctions/run {meta['name']!r} in namespace {meta['namespace']!r}"
                + (f" ({review.status.reason})" if review.status.reason else "")
                + "; ask the provider for one"
            )

    def upload(
        self, program: QiskitFunction, wait: bool = True, timeout: float = 600
    ) -> RunnableQiskitFunction | None:
        bad_title = objects.title_problem(program.title)
        if bad_title:
            raise QiskitServerlessException(bad_title)
        spec: dict[str, Any] = {"title": program.title, "entrypoint": program.entrypoint}
        for key, value in (
            ("provider", program.provider),
            ("version", program.version),
            ("description", program.description),
            ("dependencies", program.dependencies or None),
            ("env", program.env_vars or None),
        ):
            if value:
                spec[key] = value
        if program.arguments_schema not in (None, {}):
            spec["argumentsSchema"] = program.arguments_schema
        archive: bytes | None = None
        if program.image:
            spec["image"] = program.image
        else:
            try:
                spec["source"] = {"files": read_program_files(program)}
            except NeedsArchive:
                # Too big (or binary) for the object itself: an archive in object storage.
                archive, sha256 = pack_program(program)
                spec["source"] = {"archive": {"sha256": sha256}}
        name = object_name(program.title)
        body = objects.function(name, spec)
        try:
            self._custom.create_namespaced_custom_object(
                c.GROUP, c.VERSION, self.namespace, c.FUNCTION_PLURAL, body
            )
        except ApiException as exc:
            if exc.status != 409:
                raise _api_error(exc, "upload the function", self.namespace) from exc
            try:
                # A whole-spec replace (removed fields go too), guarded by resourceVersion.
                current = self._custom.get_namespaced_custom_object(
                    c.GROUP, c.VERSION, self.namespace, c.FUNCTION_PLURAL, name
                )
                current["spec"] = spec
                self._custom.replace_namespaced_custom_object(
                    c.GROUP, c.VERSION, self.namespace, c.FUNCTION_PLURAL, name, current
                )
            except ApiException as exc2:
                raise _api_error(exc2, "update the function", self.namespace) from exc2
        if archive is not None:
            self._upload_archive(name, archive, spec["source"]["archive"]["sha256"])
        if not wait:
            return self.function(program.title, program.provider)
        return self._wait_ready(name, timeout)

    def _upload_archive(self, name: str, data: bytes, sha256: str, timeout: float = 120) -> None:
        """PUT the archive through the link the operator leaves in ``qf-upload-<name>``."""
        deadline = time.monotonic() + timeout
        url = None
        while url is None:
            try:
                secret = self._core.read_namespaced_secret(f"qf-upload-{name}", self.namespace)
                fields = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
                if fields.get("sha256") == sha256:
                    url = fields["upload-url"]
            except ApiException as exc:
                if exc.status != 404:
                    raise _api_error(exc, "read the upload link", self.namespace) from exc
            if url is None:
                if time.monotonic() > deadline:
                    raise QiskitServerlessException(
                        f"no upload link for function {name!r} after {timeout:.0f} s; is the "
                        "operator running with image builds configured?"
                    )
                time.sleep(0.5)
        request = urllib.request.Request(
            url, data=data, method="PUT", headers={"Content-Type": "application/gzip"}
        )
        with urllib.request.urlopen(request, timeout=300) as response:
            if response.status >= 300:
                raise QiskitServerlessException(f"the archive upload failed: {response.status}")

    def build_logs(self, title: str) -> str:
        """The log of the function's last image build ('No build logs.' if it never built)."""
        name = object_name(title)
        try:
            secret = self._core.read_namespaced_secret(f"qf-out-{name}", self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return "No build logs."
            raise _api_error(exc, "read the build logs", self.namespace) from exc
        url = base64.b64decode((secret.data or {}).get("build-logs-url", "")).decode()
        if not url:
            return "No build logs."
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read().decode() or "No build logs."

    def _wait_ready(self, name: str, timeout: float) -> RunnableQiskitFunction:
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        shown = None
        while True:
            body = self._custom.get_namespaced_custom_object(
                c.GROUP, c.VERSION, self.namespace, c.FUNCTION_PLURAL, name
            )
            status = body.get("status") or {}
            current = status.get("observedGeneration") == body["metadata"].get("generation")
            line = f"{status.get('phase') or 'Pending'}: {status.get('message') or 'waiting'}"
            if current and self.progress and line != shown:
                # Builds take a while: say what the operator is doing, as it changes.
                print(
                    f"[upload {body['spec']['title']} {time.monotonic() - started:5.1f} s] {line}",
                    file=sys.stderr,
                    flush=True,
                )
                shown = line
            if current and status.get("phase") == c.FunctionPhase.READY:
                return self._runnable(body)
            if current and status.get("phase") == c.FunctionPhase.FAILED:
                raise QiskitServerlessException(
                    f"function {body['spec']['title']!r} failed: {status.get('message')}"
                )
            if time.monotonic() > deadline:
                raise QiskitServerlessException(
                    f"function {body['spec']['title']!r} is not Ready after {timeout:.0f} s "
                    f"(phase {status.get('phase') or 'Pending'}); is the operator running?"
                )
            time.sleep(0.5)

    # ------------------------------------------------------------------ running

    def run(
        self,
        program: QiskitFunction | str,
        arguments: dict[str, Any] | None = None,
        config: Configuration | None = None,
        provider: str | None = None,
        *,
        function_size: str | None = None,
    ) -> Job:
        if not isinstance(program, str | QiskitFunction):
            raise QiskitServerlessException(
                f"run() takes a function's title or a QiskitFunction, got "
                f"{type(program).__name__} {program!r}"
            )
        title = program if isinstance(program, str) else program.title
        provider = provider or (None if isinstance(program, str) else program.provider)
        function = self.function(title, provider)
        if function is None:
            raise QiskitServerlessException(
                f"function {title!r} not found in namespace {self.namespace!r}; "
                "serverless.functions() lists the ones you can run"
            )
        encoded = encode_arguments(arguments)
        _check_against_schema(function, encoded)
        home = (function.raw_data or {}).get("metadata", {}).get("namespace", self.namespace)
        catalog = home != self.namespace  # a provider's function, run from here
        if catalog:
            self._may_run(function.raw_data)
        too_large = objects.arguments_too_large(encoded)
        if too_large:
            raise QiskitServerlessException(too_large)
        name = objects.new_job_name(title)
        secret_name = objects.arguments_secret_name(name)
        try:
            # The Secret first: the operator may look at the job the moment it exists.
            self._core.create_namespaced_secret(
                self.namespace, objects.arguments_secret(secret_name, name, encoded)
            )
            body = self._custom.create_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                self.namespace,
                c.JOB_PLURAL,
                objects.job(
                    name,
                    title,
                    arguments_secret=secret_name,
                    annotations=objects.submission_annotations(self.user, self._groups),
                    credentials_secret=self.credentials_secret,
                    provider=home if catalog else None,
                ),
            )
            # Owned by the job from now on: deleting the job deletes its arguments.
            self._core.patch_namespaced_secret(
                secret_name, self.namespace, objects.owned_by_job(body)
            )
        except ApiException as exc:
            raise _api_error(exc, "create the job", self.namespace) from exc
        uid = body["metadata"]["uid"]
        self._names[uid] = name
        return Job(uid, job_service=self, raw_data={"status": "QUEUED"})

    def validate_arguments(
        self, title: str, arguments: dict[str, Any] | None = None, provider: str | None = None
    ) -> dict:
        """Check the arguments against the function's schema (as the operator will), without
        creating a job: ``{"valid": True}``, or a QiskitServerlessException with the path."""
        function = self.function(title, provider)
        if function is None:
            raise QiskitServerlessException(
                f"function {title!r} not found in namespace {self.namespace!r}"
            )
        _check_against_schema(function, encode_arguments(arguments))
        return {"valid": True}

    # ------------------------------------------------------------------ jobs

    def jobs(self, function: QiskitFunction | None = None, **kwargs: Any) -> list[Job]:
        """The namespace's jobs, newest first (``limit``, 10 unless given; ``offset``;
        ``status``: a phase), live and archived; a job's tasks are parts of it, left out."""
        limit = kwargs.get("limit", DEFAULT_JOBS_LIMIT)
        limit = int(limit) if limit else None
        offset = int(kwargs.get("offset") or 0)
        status = kwargs.get("status")
        title = function.title if function is not None else None
        try:
            if self._history.served():
                records = self._history.list(limit, offset, title, status)
                for record in records:
                    self._names[record["metadata"]["uid"]] = job_body(record)["metadata"]["name"]
                return [Job(r["metadata"]["uid"], job_service=self) for r in records]
        except ApiException as exc:
            raise _api_error(exc, "list the job history", self.namespace) from exc
        bodies = [b for b in self._list(c.JOB_PLURAL) if not b["spec"].get("task")]
        if title is not None:
            bodies = [b for b in bodies if b["spec"].get("function") == title]
        if status:
            bodies = [b for b in bodies if (b.get("status") or {}).get("phase") == status]
        bodies.sort(key=_job_order, reverse=True)
        bodies = bodies[offset : offset + limit if limit else None]
        for body in bodies:
            self._names[body["metadata"]["uid"]] = body["metadata"]["name"]
        return [Job(b["metadata"]["uid"], job_service=self) for b in bodies]

    def delete_job(self, job_id: str) -> str:
        """Delete a job for good: a live one's ServerlessJob (its finalizer removes what it
        made), an archived one's history (its row, result and logs)."""
        body = self._require_job(job_id)
        try:
            if (body.get("status") or {}).get("archivedAt") and self._history.served():
                self._history.delete(job_id)
            else:
                self._custom.delete_namespaced_custom_object(
                    c.GROUP, c.VERSION, self.namespace, c.JOB_PLURAL, body["metadata"]["name"]
                )
        except ApiException as exc:
            if exc.status == 409:  # archived but not deleted yet: its ServerlessJob, then
                self._custom.delete_namespaced_custom_object(
                    c.GROUP, c.VERSION, self.namespace, c.JOB_PLURAL, body["metadata"]["name"]
                )
            else:
                raise _api_error(exc, "delete the job", self.namespace) from exc
        self._names.pop(job_id, None)
        self._finished.pop(job_id, None)
        return "Job has been deleted."

    def job(self, job_id: str) -> Job | None:
        return Job(job_id, job_service=self) if self._job_body(job_id) else None

    def get_job_data(self, job_id: str) -> dict[str, Any] | None:
        status = self._require_job(job_id).get("status") or {}
        return {
            "status": status.get("phase") or c.JobPhase.QUEUED.value,
            "sub_status": status.get("subStatus"),
        }

    def status(self, job_id: str) -> str:
        return (self.get_job_data(job_id) or {})["status"]

    def stop(self, job_id: str, service: Any = None) -> str | bool:
        body = self._require_job(job_id)
        phase = (body.get("status") or {}).get("phase")
        if phase in {p.value for p in c.TERMINAL_JOB_PHASES}:
            return f"Job is already {phase}."
        try:
            self._custom.patch_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                self.namespace,
                c.JOB_PLURAL,
                body["metadata"]["name"],
                {"spec": {"stop": True}},
            )
        except ApiException as exc:
            raise _api_error(exc, "stop the job", self.namespace) from exc
        return STOPPED

    def _archived_output(self, body: dict[str, Any], which: str) -> str | None:
        try:
            return self._history.output(body["metadata"]["uid"], which)
        except ApiException as exc:
            raise _api_error(exc, f"read the archived job's {which}", self.namespace) from exc

    def result(self, job_id: str) -> Any:
        body = self._require_job(job_id)
        status = body.get("status") or {}
        if status.get("phase") == c.JobPhase.ERROR:
            return status.get("message") or "the job failed"
        if _archived(body):
            return self._archived_output(body, "result") or "{}"
        return self._fetch(body, "result-url") or "{}"

    def logs(self, job_id: str) -> str:
        """The user's logs: while the job runs, as of the last few seconds. For a provider's
        function only its [PUBLIC] lines; tags removed, as Qiskit Serverless shows them."""
        body = self._require_job(job_id)
        if _archived(body):
            return self._archived_output(body, "logs") or NO_LOGS
        text = self._fetch(body, "logs-url")
        return logsplit.user_view(text, provider_function=False) if text else NO_LOGS

    def provider_logs(self, job_id: str) -> str:
        """A provider's function: every line but the [PUBLIC] ones (the provider's Secret
        sj-prov-<job> holds the link, so RBAC on Secrets decides who reads them)."""
        body = self._require_job(job_id)
        name = body["metadata"]["name"]
        if body["spec"].get("provider"):
            raise QiskitServerlessException(
                f"job {job_id} ran provider {body['spec']['provider']}'s function: its provider "
                "logs are the provider's to read (through the REST gateway's provider-logs)"
            )
        function = self.function(body["spec"]["function"])
        if function is None or not function.provider:
            raise QiskitServerlessException(
                f"job {job_id} is not of a provider's function: it has no provider logs"
            )
        if _archived(body):
            return self._archived_output(body, "providerlogs") or NO_LOGS
        text = self._fetch(body, "logs-url", jobspec.provider_secret_name(name))
        return text if text else NO_LOGS

    def filtered_logs(self, job_id: str, **kwargs: Any) -> str:
        logs = self.logs(job_id)
        if logs == NO_LOGS:
            return logs
        include, exclude = kwargs.get("include"), kwargs.get("exclude")
        lines = [
            line
            for line in logs.splitlines()
            if (not include or re.search(include, line))
            and (not exclude or not re.search(exclude, line))
        ]
        return "\n".join(lines)

    def runtime_jobs(self, job_id: str, runtime_session: str | None = None) -> list[str]:
        """The Qiskit Runtime jobs the program started (as it reported them)."""
        recorded = reports.runtime_jobs(self._require_job(job_id))
        return [
            r["runtime_job"]
            for r in recorded
            if runtime_session is None or r["runtime_session"] == runtime_session
        ]

    def runtime_sessions(self, job_id: str) -> list[str]:
        recorded = reports.runtime_jobs(self._require_job(job_id))
        return sorted({r["runtime_session"] for r in recorded if r["runtime_session"]})

    def events(self, job_id: str, **kwargs: Any) -> list[JobEvent]:
        """What the program reported with send_error(), then the operator's reason for an
        ERROR (``job.error_message()`` formats them)."""
        kind = kwargs.get("type")
        if kind and str(kind).upper() != "ERROR":
            raise QiskitServerlessException("Type is not valid. Valid types: ['ERROR']")
        return [JobEvent.from_json(e) for e in reports.job_events(self._require_job(job_id))]


def _check_against_schema(function: RunnableQiskitFunction, encoded: str) -> None:
    """Refuse arguments the function's schema does not allow, before any job exists."""
    schema = function.arguments_schema
    if schema is None:
        return
    try:
        schema_module.validate(schema, json.loads(encoded))
    except schema_module.ArgumentsError as exc:
        raise QiskitServerlessException(
            f"the arguments do not fit function {function.title!r}'s argumentsSchema: {exc}"
        ) from exc
    except schema_module.SchemaError as exc:
        raise QiskitServerlessException(
            f"function {function.title!r} has an unusable argumentsSchema: {exc}"
        ) from exc


def _job_order(body: dict[str, Any]) -> tuple[float, str]:
    """The one job order (constants.job_order), as the REST API and history API list."""
    return c.job_order(submitted_at(body), body["metadata"]["uid"])


def _archived(body: dict[str, Any]) -> bool:
    """In the archive: its read-link Secrets may be gone, the history API reads it."""
    return bool((body.get("status") or {}).get("archivedAt"))


def _connect(kubeconfig: str | None, context: str | None) -> tuple[k8s.ApiClient, str]:
    try:
        k8s_config.load_incluster_config()
        namespace_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        namespace = namespace_file.read_text().strip() if namespace_file.exists() else "default"
        return k8s.ApiClient(), namespace
    except k8s_config.ConfigException:
        pass
    # Read KUBECONFIG now, not when the kubernetes package was imported.
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
        _, active = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
        if context:
            contexts, _ = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
            active = next((x for x in contexts if x["name"] == context), active)
    except (k8s_config.ConfigException, FileNotFoundError, TypeError) as exc:
        raise QiskitServerlessException(
            f"no cluster configured: {exc}. Set KUBECONFIG or run inside the cluster"
        ) from exc
    namespace = (active or {}).get("context", {}).get("namespace") or "default"
    return k8s.ApiClient(configuration), namespace


def QiskitServerless(namespace: str | None = None, **kwargs: Any) -> KubernetesClient:
    """The walkthrough's entry point: the cluster from kubeconfig (or in-cluster config)."""
    return KubernetesClient(namespace=namespace, **kwargs)
