"""Qiskit Serverless' ``distribute_task`` / ``get`` / ``put`` in a job's pod: each task a
child job (a pod of its own, anywhere in the cluster), not a Ray task.

qiskit-serverless up to 0.36 ran these on a Ray cluster next to the job; 0.37 removed them
(programs were told to use ``ray.remote`` on the job's Ray cluster). Here Kubernetes is the
distributed engine: the wrapper (launch.py) puts these functions into the
``qiskit_serverless`` module before the program starts, so a program written for them runs
unchanged, and each call of a decorated function becomes a ServerlessJob of its own
(docs/operator.md, "Tasks"):

1. the function and its arguments are pickled (cloudpickle, as Ray does) and stored through
   an upload link the job endpoint gives (``POST tasks/``);
2. the job endpoint makes the task's ServerlessJob (``PUT tasks/{index}/``): same function
   and image, owned by this job, admitted through the same queue as the submitter's jobs;
3. ``get`` polls ``GET tasks/`` and reads each finished task's pickled return value through
   the read link the answer holds; a task that failed raises ``TaskError`` with its reason.

Task indexes are numbered in the order the program calls the functions, so the same
program asks for the same tasks (a repeated request is answered with the task made before).
"""

from __future__ import annotations

import functools
import json
import os
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .folders import EndpointError, retry

POLL_SECONDS = 1.0
# Kept in step with constants.MAX_TASK_PAYLOAD_BYTES (this module is stdlib only).
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024


class TaskError(EndpointError):
    """A task failed, was stopped, or could not be started; the message says which and why."""


@dataclass
class Target:
    """What one task asks for (qiskit-serverless' Target): ``cpu`` cores and ``mem`` bytes
    become the task pod's requests; ``env_vars`` its environment. A GPU, custom resources
    or ``pip`` packages are not offered and are refused with a clear error."""

    cpu: float = 1
    gpu: int = 0
    qpu: int = 0
    mem: int = 1
    resources: dict[str, float] | None = None
    env_vars: dict[str, Any] | None = None
    pip: list[str] | None = None

    @classmethod
    def from_dict(cls, dictionary: dict[str, Any]) -> Target:
        unknown = set(dictionary) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown Target field(s): {', '.join(sorted(unknown))}")
        return cls(**dictionary)

    def requests(self) -> dict[str, str]:
        if self.gpu or self.resources:
            raise TaskError("tasks get CPU and memory only: no GPU or custom resources")
        if self.pip:
            raise TaskError(
                "a task runs in its job's image: list its packages in the function's "
                "dependencies instead of the task's pip"
            )
        if not isinstance(self.cpu, int | float) or self.cpu <= 0:
            raise TaskError(f"Target.cpu must be a positive number of cores, not {self.cpu!r}")
        wanted = {"cpu": f"{int(self.cpu * 1000)}m"}
        # Ray's memory is bytes; its default (1) means "no particular need".
        if isinstance(self.mem, int) and self.mem >= 1 << 20:
            wanted["memory"] = str(self.mem)
        return wanted


@dataclass
class ObjectRef:
    """A task's future (``index`` set) or a value ``put`` in place."""

    index: int | None = None
    name: str = ""
    value: Any = None
    _done: bool = field(default=False, repr=False)


class _Client:
    def __init__(self, endpoint: str, job_id: str, token: str, version: str = "v1") -> None:
        self.url = f"{endpoint.rstrip('/')}/api/{version}/jobs/{job_id}/tasks/"
        self.token = token
        self.next_index = 0

    @classmethod
    def from_env(cls) -> _Client:
        env = os.environ
        needed = ("ENV_JOB_GATEWAY_HOST", "ENV_JOB_ID_GATEWAY", "ENV_JOB_GATEWAY_TOKEN")
        missing = [name for name in needed if not env.get(name)]
        if missing:
            raise TaskError(
                "distribute_task runs tasks as jobs of the cluster: it needs the job "
                f"endpoint ({', '.join(missing)} not set: not running as a cluster job)"
            )
        return cls(
            env["ENV_JOB_GATEWAY_HOST"],
            env["ENV_JOB_ID_GATEWAY"],
            env["ENV_JOB_GATEWAY_TOKEN"],
            env.get("ENV_GATEWAY_PROVIDER_VERSION") or "v1",
        )

    def call(self, method: str, path: str = "", body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )

        def send() -> dict:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")

        return retry(f"{method} tasks/{path}", send, TaskError)

    def submit(self, payload: bytes, requests: dict[str, str], env: dict[str, str]) -> ObjectRef:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise TaskError(
                f"the task's function and arguments pickle to {len(payload)} bytes, over the "
                f"{MAX_PAYLOAD_BYTES} allowed: pass big data through /data files instead"
            )
        index = self.next_index
        self.next_index += 1
        link = self.call("POST", body={"index": index, "size": len(payload)})

        def upload() -> None:
            put = urllib.request.Request(link["url"], data=payload, method="PUT")
            put.add_header("Content-Type", "application/octet-stream")
            with urllib.request.urlopen(put, timeout=300):
                pass

        retry(f"storing task {index}", upload, TaskError)
        made = self.call("PUT", f"{index}/", {"requests": requests, "env": env})
        return ObjectRef(index=index, name=made.get("name", ""))

    def states(self) -> dict[int, dict[str, Any]]:
        return {int(k): v for k, v in self.call("GET").get("tasks", {}).items()}


_client: _Client | None = None


def _the_client() -> _Client:
    global _client
    if _client is None:
        _client = _Client.from_env()
    return _client


def _pickle() -> Any:
    try:
        import cloudpickle
    except ImportError as exc:  # an image without qiskit-serverless' own dependencies
        raise TaskError("distribute_task needs cloudpickle in the job's image") from exc
    return cloudpickle


def distribute_task(
    target: dict[str, Any] | Target | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., ObjectRef]]:
    """``@distribute_task(target=...)``: calling the function starts it as a task and
    returns an ObjectRef at once; ``get(ref)`` waits for its return value."""
    wanted = target if isinstance(target, Target) else Target.from_dict(target or {})
    requests = wanted.requests()
    env = {str(k): str(v) for k, v in (wanted.env_vars or {}).items()}

    def decorator(function: Callable[..., Any]) -> Callable[..., ObjectRef]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> ObjectRef:
            # As Ray does, a reference passed in is its value in the task.
            args = tuple(_resolve(a) for a in args)
            kwargs = {k: _resolve(v) for k, v in kwargs.items()}
            payload = _pickle().dumps((function, args, kwargs))
            return _the_client().submit(payload, requests, env)

        return wrapper

    return decorator


def _resolve(value: Any) -> Any:
    return get(value) if isinstance(value, ObjectRef) else value


def put(value: Any, **_: Any) -> ObjectRef:
    """A reference to ``value`` (it travels with each task it is passed to)."""
    return ObjectRef(value=value, _done=True)


def _fetch(state: dict[str, Any]) -> Any:
    def read() -> bytes:
        with urllib.request.urlopen(state["result_url"], timeout=300) as response:
            return response.read()

    return _pickle().loads(retry(f"reading task {state.get('name')}'s result", read, TaskError))


def get(object_refs: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None) -> Any:
    """The value of one reference, or a list of values for a list of references (in order),
    waiting for the tasks to finish; TaskError for a task that failed or was stopped."""
    single = isinstance(object_refs, ObjectRef)
    refs = [object_refs] if single else list(object_refs)
    for ref in refs:
        if not isinstance(ref, ObjectRef):
            raise TypeError(f"get() takes ObjectRefs from distribute_task or put, not {ref!r}")
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        waiting = [r for r in refs if not r._done]
        if not waiting:
            break
        states = _the_client().states()
        for ref in waiting:
            state = states.get(ref.index or 0)
            if state is None:
                continue
            phase = state.get("phase")
            if phase == "DONE":
                ref.value, ref._done = _fetch(state), True
            elif phase in ("ERROR", "CANCELED"):
                # One line (the job's message keeps the last lines of its log): the task's
                # first line (what ended it) and last (for a program, its exception).
                lines = [ln for ln in str(state.get("message", "")).splitlines() if ln.strip()]
                summary = " | ".join(dict.fromkeys([lines[0], lines[-1]])) if lines else ""
                raise TaskError(
                    f"task {ref.index} ({state.get('name')}) ended {phase}: "
                    f"{state.get('reason')}: {summary}"
                )
        if deadline is not None and time.monotonic() > deadline and any(not r._done for r in refs):
            raise TimeoutError(f"get() timed out after {timeout} s")
        if any(not r._done for r in refs):
            time.sleep(POLL_SECONDS)
    values = [r.value for r in refs]
    return values[0] if single else values


def get_refs_by_status(object_refs: Sequence[ObjectRef], **_: Any) -> tuple[list, list]:
    """(finished, not finished) of the references, without waiting."""
    states = _the_client().states() if any(not r._done for r in object_refs) else {}
    done = [
        r for r in object_refs if r._done or states.get(r.index or 0, {}).get("phase") == "DONE"
    ]
    return done, [r for r in object_refs if r not in done]


def run_task(payload_url: str, result_path: str) -> None:
    """In a task's pod: fetch the pickled call, make it, write the pickled return value
    where the wrapper uploads the job's result from."""

    def read() -> bytes:
        with urllib.request.urlopen(payload_url, timeout=300) as response:
            return response.read()

    function, args, kwargs = _pickle().loads(retry("fetching the task", read, TaskError))
    value = function(*args, **kwargs)
    os.makedirs(os.path.dirname(result_path), exist_ok=True)
    with open(result_path, "wb") as out:
        out.write(_pickle().dumps(value))


EXPORTS = ("distribute_task", "get", "put", "get_refs_by_status", "Target")
