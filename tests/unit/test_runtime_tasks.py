"""distribute_task / get / put in the pod (runtime/tasks.py) against a stand-in job endpoint
that runs each task at once in-process (the real flow, with pods, is tests/e2e/test_tasks.py)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from qiskit_serverless_operator.runtime import launch, tasks


class _Endpoint(BaseHTTPRequestHandler):
    # What the stand-in keeps, set afresh per test (the fixture).
    payloads: ClassVar[dict[int, bytes]]
    results: ClassVar[dict[int, bytes]]
    states: ClassVar[dict[str, dict]]
    made: ClassVar[list[dict]]
    fail: ClassVar[set[int]]
    tmp: ClassVar[Path]

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes | dict) -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        assert self.headers["Authorization"] == "Bearer ns.job.secret"
        body = json.loads(self._body())
        base = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"
        self._send(200, {"url": f"{base}/upload/{body['index']}"})

    def do_PUT(self) -> None:
        parts = self.path.strip("/").split("/")
        if parts[0] == "upload":
            self.payloads[int(parts[1])] = self._body()
            return self._send(200, b"")
        index = int(parts[-1])
        self.made.append({"index": index, **json.loads(self._body())})
        # The task "runs" here: the pickled call, made as a task's pod makes it.
        base = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"
        name = f"job-t{index}"
        if index in self.fail:
            self.states[str(index)] = {
                "name": name,
                "phase": "ERROR",
                "reason": "ProgramFailed",
                "message": "the program exited with code 1\nTraceback ...\nValueError: no",
            }
        else:
            out = self.tmp / f"result-{index}"
            tasks.run_task(f"{base}/upload/{index}", str(out))
            self.results[index] = out.read_bytes()
            self.states[str(index)] = {
                "name": name,
                "phase": "DONE",
                "result_url": f"{base}/result/{index}",
            }
        self._send(200, {"name": name})

    def do_GET(self) -> None:
        if self.path.startswith("/result/"):
            return self._send(200, self.results[int(self.path.rsplit("/", 1)[1])])
        if self.path.startswith("/upload/"):
            return self._send(200, self.payloads[int(self.path.rsplit("/", 1)[1])])
        self._send(200, {"tasks": self.states})


@pytest.fixture
def endpoint(tmp_path, monkeypatch):
    _Endpoint.tmp = tmp_path
    _Endpoint.payloads, _Endpoint.results, _Endpoint.states = {}, {}, {}
    _Endpoint.made, _Endpoint.fail = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address
    monkeypatch.setenv("ENV_JOB_GATEWAY_HOST", f"http://{host}:{port}")
    monkeypatch.setenv("ENV_JOB_ID_GATEWAY", "uid-1")
    monkeypatch.setenv("ENV_JOB_GATEWAY_TOKEN", "ns.job.secret")
    monkeypatch.setattr(tasks, "_client", None)
    monkeypatch.setattr(tasks, "POLL_SECONDS", 0.01)
    yield _Endpoint
    server.shutdown()


def test_qiskit_serverless_offers_the_task_api_once_launched():
    launch.install()
    import qiskit_serverless
    from qiskit_serverless import distribute_task, get, put  # 0.37 has none of its own

    assert distribute_task is tasks.distribute_task and get is tasks.get and put is tasks.put
    assert qiskit_serverless.Target is tasks.Target


def test_tasks_map_and_gather_in_order_with_their_requests(endpoint):
    @tasks.distribute_task(target={"cpu": 0.25, "mem": 512 * 2**20, "env_vars": {"A": 1}})
    def square(x, offset):
        return x * x + offset

    offset = tasks.put(10)
    refs = [square(i, offset) for i in range(5)]
    assert [r.index for r in refs] == [0, 1, 2, 3, 4]
    assert tasks.get(refs) == [10, 11, 14, 19, 26]
    assert tasks.get(refs[2]) == 14 and tasks.get(offset) == 10
    assert endpoint.made[0] == {
        "index": 0,
        "requests": {"cpu": "250m", "memory": str(512 * 2**20)},
        "env": {"A": "1"},
    }
    done, pending = tasks.get_refs_by_status(refs)
    assert len(done) == 5 and pending == []


def test_a_failed_task_raises_with_its_reason_on_one_line(endpoint):
    endpoint.fail = {0}

    @tasks.distribute_task()
    def f():
        return 1

    with pytest.raises(tasks.TaskError) as caught:
        tasks.get(f())
    message = str(caught.value)
    assert message == (
        "task 0 (job-t0) ended ERROR: ProgramFailed: the program exited with code 1 | "
        "ValueError: no"
    )


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ({"pip": ["x"]}, "list its packages in the function's dependencies"),
        ({"gpu": 1}, "no GPU"),
        ({"cpu": -1}, "positive number of cores"),
        ({"cpus": 2}, "unknown Target field(s): cpus"),
    ],
)
def test_bad_targets_are_refused_clearly(target, words):
    with pytest.raises(
        (tasks.TaskError, TypeError), match=words.replace("(", r"\(").replace(")", r"\)")
    ):
        tasks.distribute_task(target=target)


def test_outside_a_cluster_job_the_error_says_so(monkeypatch):
    for name in ("ENV_JOB_GATEWAY_HOST", "ENV_JOB_ID_GATEWAY", "ENV_JOB_GATEWAY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tasks, "_client", None)

    @tasks.distribute_task()
    def f():
        return 1

    with pytest.raises(tasks.TaskError, match="not running as a cluster job"):
        f()


def test_get_refuses_what_is_no_reference():
    with pytest.raises(TypeError, match="ObjectRefs"):
        tasks.get([1])
