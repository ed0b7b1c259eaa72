"""What the Qiskit Functions Catalog gives providers and users, on the real cluster: argument
schemas checked before a job exists, logs that are live, bounded and split between user and
provider, stop() cancelling the program's Qiskit Runtime jobs, and read links that outlive
the 7 days presigned URLs last."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from kubernetes import client
from qiskit_serverless import QiskitFunction
from qiskit_serverless.exception import QiskitServerlessException

from qiskit_serverless_operator import KubernetesClient
from tests.kube import kubectl, operator_with, wait_until
from tests.serverless import custom, get_job, make_function, make_job, read_object, wait_error

SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 1}},
    "required": ["n"],
}


def _sdk(api_client: client.ApiClient, namespace: str, **kwargs: Any) -> KubernetesClient:
    sdk = KubernetesClient(namespace=namespace, api_client=api_client, **kwargs)
    sdk.progress = False
    return sdk


def _upload(sdk: KubernetesClient, tmp_path: Path, title: str, program: str, **extra: Any):
    folder = tmp_path / title
    folder.mkdir()
    (folder / "main.py").write_text(program)
    return sdk.upload(
        QiskitFunction(title=title, entrypoint="main.py", working_dir=str(folder), **extra)
    )


def _finish(job, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while not job.in_terminal_state() and time.monotonic() < deadline:
        time.sleep(0.5)
    return job.status()


def test_arguments_are_checked_against_the_schema_before_a_job_exists(
    api_client: client.ApiClient, cluster: dict, namespace: str, operator, tmp_path: Path
) -> None:
    sdk = _sdk(api_client, namespace)
    fn = _upload(
        sdk,
        tmp_path,
        "counted",
        "from qiskit_serverless import get_arguments, save_result\n"
        "save_result({'n': get_arguments()['n']})\n",
        arguments_schema=SCHEMA,
    )
    assert fn.arguments_schema == SCHEMA
    with pytest.raises(QiskitServerlessException) as refused:
        fn.run(n="three")
    assert "arguments/n: 'three' is not of type 'integer'" in str(refused.value)
    with pytest.raises(QiskitServerlessException, match="'n' is a required property"):
        sdk.validate_arguments("counted", {})
    assert sdk.validate_arguments("counted", {"n": 2}) == {"valid": True}
    assert sdk.jobs() == []  # nothing was created for the refused runs
    assert fn.run(n=3).result() == {"n": 3}

    # With kubectl: the operator refuses it before the queue, and never makes a pod.
    api = custom(api_client)
    make_job(api, namespace, "by-hand", "counted", arguments={"inline": {"n": 0}})
    status = wait_error(api, namespace, "by-hand")
    assert status["reason"] == "InvalidArguments"
    assert "arguments/n: 0 is less than the minimum of 1" in status["message"]
    pods = kubectl(
        cluster, "-n", namespace, "get", "pods", "-l", "serverless.qiskit.org/job=by-hand"
    )
    assert "No resources found" in pods.stderr
    events = kubectl(
        cluster, "-n", namespace, "get", "events", "--field-selector", "involvedObject.name=by-hand"
    ).stdout
    assert "arguments/n: 0 is less than the minimum of 1" in events


def test_a_malformed_schema_fails_the_function_with_the_reason(
    api_client: client.ApiClient, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_function(
        api, namespace, "bad-schema", {"main.py": "print(1)"}, argumentsSchema={"type": "nope"}
    )
    wait_until(
        lambda: (
            (
                api.get_namespaced_custom_object(
                    "serverless.qiskit.org", "v1alpha1", namespace, "qiskitfunctions", "bad-schema"
                ).get("status")
                or {}
            ).get("reason")
            == "InvalidArgumentsSchema"
        ),
        timeout=60,
        what="the function Failed for its schema",
    )
    status = api.get_namespaced_custom_object(
        "serverless.qiskit.org", "v1alpha1", namespace, "qiskitfunctions", "bad-schema"
    )["status"]
    assert status["phase"] == "Failed"
    assert "spec.argumentsSchema is not a usable JSON Schema" in status["message"]
    assert "'nope' is not valid under any of the given schemas" in status["message"]


def test_logs_are_live_and_split_between_user_and_provider(
    api_client: client.ApiClient, cluster: dict, namespace: str, operator, tmp_path: Path
) -> None:
    sdk = _sdk(api_client, namespace)
    fn = _upload(
        sdk,
        tmp_path,
        "split",
        "import time\n"
        "print('[PUBLIC] working on it', flush=True)\n"
        "print('calibration secret 42', flush=True)\n"
        "print('[PRIVATE] the provider only', flush=True)\n"
        "time.sleep(20)\n"
        "print('[public] done')\n",
        provider="acme",
    )
    job = fn.run()
    # Live: the wrapper uploads every few seconds, so the first line shows while it runs.
    wait_until(
        lambda: job.status() == "RUNNING" and "working on it" in job.logs(),
        timeout=120,
        what="the first line while the job runs",
    )
    assert _finish(job) == "DONE"
    assert job.logs() == "working on it\ndone\n"
    provider = job.provider_logs()
    assert "calibration secret 42" in provider and "the provider only" in provider
    assert "working on it" not in provider and "[PRIVATE]" not in provider
    # The user's stored object never held the provider's lines.
    status = get_job(custom(api_client), namespace, job_name(api_client, namespace, job))["status"]
    stored = read_object(cluster, status["logs"]).decode()
    assert "secret" not in stored and "provider only" not in stored
    assert "calibration secret 42" in read_object(cluster, status["providerLogs"]).decode()


def job_name(api_client: client.ApiClient, namespace: str, job) -> str:
    items = custom(api_client).list_namespaced_custom_object(
        "serverless.qiskit.org", "v1alpha1", namespace, "serverlessjobs"
    )["items"]
    return next(i["metadata"]["name"] for i in items if i["metadata"]["uid"] == job.job_id)


def test_logs_over_the_cap_keep_the_tail_after_a_marker(
    api_client: client.ApiClient, cluster: dict, namespace: str, tmp_path: Path
) -> None:
    with operator_with(cluster, "log-cap", QSO_MAX_LOG_BYTES="2000"):
        sdk = _sdk(api_client, namespace)
        fn = _upload(
            sdk,
            tmp_path,
            "chatty",
            "for i in range(500):\n    print(f'line {i:04d} ' + 'x' * 10)\n",
        )
        job = fn.run()
        assert _finish(job) == "DONE"
        logs = job.logs()
    assert logs.startswith(
        "[Logs exceeded maximum allowed size (0.0 MB). Logs have been truncated, "
        "discarding the oldest entries first.]\n"
    )
    assert logs.rstrip().endswith("line 0499 xxxxxxxxxx")
    assert "line 0000" not in logs
    assert len(logs.encode()) <= 2000
    lines = logs.splitlines()[1:]
    assert all(line.startswith("line ") and len(line) == 20 for line in lines)  # whole lines


class _RuntimeStandIn(BaseHTTPRequestHandler):
    """Plays the IBM Quantum Platform API's IAM and cancel endpoints on loopback (the real
    service is out of reach here): records what it was asked."""

    seen: ClassVar[list[dict[str, Any]]] = []
    finished: ClassVar[set[str]] = set()

    def _answer(self, code: int, body: dict | None = None) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length).decode() if length else ""
        type(self).seen.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers),
                "body": payload,
            }
        )
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        if self.path == "/identity/token":
            self._answer(200, {"access_token": "iam-access-token", "expires_in": 3600})
        elif self.path.startswith("/api/v1/jobs/") and self.path.endswith("/cancel"):
            job = self.path.split("/")[4]
            self._answer(409 if job in type(self).finished else 204)
        else:
            self._answer(404, {"errors": [{"message": "no such endpoint"}]})

    def do_DELETE(self) -> None:
        self._answer(204 if self.path.endswith("/close") else 404)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def runtime_api():
    _RuntimeStandIn.seen, _RuntimeStandIn.finished = [], {"rt-done"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RuntimeStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _RuntimeStandIn.seen
    server.shutdown()


def test_stop_cancels_the_runtime_jobs_and_sessions_the_program_started(
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    namespace: str,
    operator,
    tmp_path,
    runtime_api,
) -> None:
    base, seen = runtime_api
    crn = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc:inst-1::"
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="ibm-quantum"),
            string_data={
                "token": "api-key-123",
                "channel": "ibm_quantum_platform",
                "instance": crn,
                "url": f"{base}/api/v1",
                "iam_url": base,
            },
        ),
    )
    sdk = _sdk(api_client, namespace, credentials_secret="ibm-quantum")
    fn = _upload(
        sdk,
        tmp_path,
        "on-hardware",
        "import time\n"
        "from qiskit_serverless.utils.runtime_service_client import (\n"
        "    associate_runtime_job_with_serverless_job as associate)\n"
        "associate('rt-1', 'session-1')\n"
        "associate('rt-2', 'session-1')\n"
        "associate('rt-done')\n"
        "time.sleep(120)\n",
    )
    job = fn.run()
    wait_until(lambda: len(job.runtime_jobs()) == 3, timeout=120, what="three runtime jobs")
    assert job.runtime_sessions() == ["session-1"]
    assert job.stop() == "Job has been stopped."
    assert _finish(job, timeout=60) == "CANCELED"

    calls = [(c["method"], c["path"]) for c in seen]
    assert ("POST", "/identity/token") in calls
    iam = next(c for c in seen if c["path"] == "/identity/token")
    assert "apikey=api-key-123" in iam["body"] and "grant-type%3Aapikey" in iam["body"]
    assert calls.count(("DELETE", "/api/v1/sessions/session-1/close")) == 1
    for rt in ("rt-1", "rt-2", "rt-done"):
        assert ("POST", f"/api/v1/jobs/{rt}/cancel") in calls
    for call in seen:
        if call["path"].startswith("/api/v1/"):
            assert call["headers"]["Authorization"] == "Bearer iam-access-token"
            assert call["headers"]["Service-CRN"] == crn
    status = get_job(custom(api_client), namespace, job_name(api_client, namespace, job))["status"]
    outcomes = {r["job"]: r["cancel"] for r in status["runtimeJobs"]}
    assert outcomes == {
        "rt-1": "canceled; session canceled",
        "rt-2": "canceled; session canceled",
        "rt-done": "already finished",
    }
    assert "Qiskit Runtime: rt-1 canceled" in status["message"]


def test_read_links_are_renewed_when_they_expire(
    api_client: client.ApiClient, cluster: dict, namespace: str, tmp_path: Path
) -> None:
    with operator_with(cluster, "short-links", QSO_READ_LINK_SECONDS="3"):
        sdk = _sdk(api_client, namespace)
        fn = _upload(
            sdk,
            tmp_path,
            "kept",
            "from qiskit_serverless import save_result\nprint('hi')\nsave_result({'x': 1})\n",
        )
        job = fn.run()
        assert _finish(job) == "DONE"
        time.sleep(4)  # the links the job got have expired
        assert job.result() == {"x": 1}
        assert job.logs() == "hi\n"
        name = job_name(api_client, namespace, job)
        status = get_job(custom(api_client), namespace, name)["status"]
        assert status.get("linksRefreshed")
        # The links' Secret deleted by hand: asked for, it is made again.
        client.CoreV1Api(api_client).delete_namespaced_secret(f"sj-out-{name}", namespace)
        assert job.result() == {"x": 1}
        assert job.logs() == "hi\n"
