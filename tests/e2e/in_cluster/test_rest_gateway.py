"""The REST gateway on the real cluster, driven by the qiskit-serverless package from PyPI
(its ServerlessClient and plain HTTP), never by our SDK: the walkthrough, files in /data
and /function_data, runtime-job associations and errors, TLS, metrics, and bad input."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
import urllib.request
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from qiskit_serverless import QiskitFunction, ServerlessClient
from qiskit_serverless.exception import QiskitServerlessException

from tests.e2e.test_walkthrough import check_walkthrough_record, load_walkthrough
from tests.in_cluster import pods, service_account_token
from tests.kube import kubectl

warnings.filterwarnings("ignore", category=DeprecationWarning, module="qiskit_serverless")
TERMINAL = ("DONE", "ERROR", "CANCELED")


@pytest.fixture
def rest(
    cluster: dict[str, Any],
    namespace: str,
    in_cluster: list[str],
    api_client: client.ApiClient,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """A ServiceAccount that may edit the test's namespace, and what its client needs."""
    in_cluster.append(namespace)
    # The gateway's certificate is signed by the cluster's CA: trust it, as a user would.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cluster["ca"])
    monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)
    token = service_account_token(api_client, namespace, "alice")
    return {
        "host": cluster["gateway"],
        "token": token,
        "namespace": namespace,
        "user": f"system:serviceaccount:{namespace}:alice",
        "client": ServerlessClient(host=cluster["gateway"], token=token, instance=namespace),
    }


def _headers(rest: dict[str, Any], token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or rest['token']}", "Service-CRN": rest["namespace"]}


def _wait(job, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = job.status()
        if status in TERMINAL:
            return status
        time.sleep(0.5)
    pytest.fail(f"job {job.job_id} did not finish in {timeout:.0f} s (last: {status})")


def _upload(rest: dict[str, Any], tmp_path: Path, title: str, program: str, **extra: Any):
    folder = tmp_path / title
    folder.mkdir()
    (folder / "main.py").write_text(program)
    return rest["client"].upload(
        QiskitFunction(title=title, entrypoint="main.py", working_dir=str(folder), **extra)
    )


def test_walkthrough_through_serverless_client(
    cluster: dict[str, Any], rest: dict[str, Any]
) -> None:
    record = load_walkthrough().main(
        namespace=rest["namespace"], rest=(rest["host"], rest["token"])
    )
    check_walkthrough_record(record)

    # The same job, through kubectl: found by the id the REST client knows it by.
    out = kubectl(
        cluster,
        "-n",
        rest["namespace"],
        "get",
        "sj",
        "--field-selector",
        f"status.jobId={record['job_id']}",
        "-o",
        "json",
    ).stdout
    (item,) = json.loads(out)["items"]
    assert item["status"]["phase"] == "DONE"
    assert item["status"]["user"] == rest["user"]
    table = kubectl(cluster, "-n", rest["namespace"], "get", "sj", item["metadata"]["name"])
    assert "DONE" in table.stdout.split()


def test_files_reach_the_job_and_come_back(rest: dict[str, Any], tmp_path: Path) -> None:
    serverless: ServerlessClient = rest["client"]
    fn = _upload(
        rest,
        tmp_path,
        "file-reader",
        "import os\n"
        "from qiskit_serverless import save_result\n"
        "data = os.environ['DATA_PATH']\n"
        "save_result({'seen': sorted(os.listdir(data))})\n"
        "text = open(os.path.join(data, 'input.txt')).read()\n"
        "open(os.path.join(data, 'output.txt'), 'w').write(text.upper())\n",
    )
    source = tmp_path / "input.txt"
    source.write_text("hello from the client\n")
    assert json.loads(serverless.file_upload(str(source), fn)) == {"message": "/data/input.txt"}
    assert serverless.files(fn) == ["input.txt"]

    job = fn.run()
    assert _wait(job) == "DONE", job.logs()
    assert job.result() == {"seen": ["input.txt"]}
    assert serverless.files(fn) == ["input.txt", "output.txt"]
    name = serverless.file_download("output.txt", fn, download_location=str(tmp_path))
    assert (tmp_path / name).read_text() == "HELLO FROM THE CLIENT\n"

    assert serverless.file_delete("input.txt", fn) == "Requested file was deleted."
    assert serverless.files(fn) == ["output.txt"]
    missing = requests.get(
        f"{rest['host']}/api/v1/files/download",
        params={"file": "input.txt", "function": "file-reader"},
        headers=_headers(rest),
        timeout=30,
    )
    assert missing.status_code == 404
    assert missing.json() == {"message": "Requested file was not found."}


def test_a_provider_folder_is_the_jobs_function_data(rest: dict[str, Any], tmp_path: Path) -> None:
    serverless: ServerlessClient = rest["client"]
    fn = _upload(
        rest,
        tmp_path,
        "with-model",
        "import os\n"
        "print('model:', open('/function_data/model.txt').read().strip())\n"
        "print('data:', sorted(os.listdir('/data')))\n",
        provider="acme",
    )
    assert str(fn) == "QiskitFunction(acme/with-model)"
    model = tmp_path / "model.txt"
    model.write_text("weights v1\n")
    # alice may change the function (edit), so she is its provider's admin here.
    assert json.loads(serverless.provider_file_upload(str(model), fn)) == {
        "message": "/function_data/model.txt"
    }
    assert serverless.provider_files(fn) == ["model.txt"]
    assert serverless.files(fn) == []  # the user's folder for this function is another one
    fetched = serverless.provider_file_download("model.txt", fn, download_location=str(tmp_path))
    assert (tmp_path / fetched).read_text() == "weights v1\n"
    extra = tmp_path / "old.txt"
    extra.write_text("obsolete\n")
    serverless.provider_file_upload(str(extra), fn)
    assert serverless.provider_file_delete("old.txt", fn) == "Requested file was deleted."
    assert serverless.provider_files(fn) == ["model.txt"]
    job = fn.run()
    assert _wait(job) == "DONE"
    # The provider's view of its function's jobs, every user's.
    assert [j.job_id for j in serverless.provider_jobs(fn)] == [job.job_id]
    # A provider's function: the user sees only [PUBLIC] lines, the provider everything else.
    assert "model:" not in job.logs()
    provider_logs = job.provider_logs()
    assert "model: weights v1" in provider_logs and "data: []" in provider_logs


def test_runtime_jobs_and_errors_a_program_reports(rest: dict[str, Any], tmp_path: Path) -> None:
    fn = _upload(
        rest,
        tmp_path,
        "reporter",
        "from qiskit_serverless.core.job import send_error\n"
        "from qiskit_serverless.utils.runtime_service_client import (\n"
        "    associate_runtime_job_with_serverless_job as associate)\n"
        "print('[PUBLIC] starting')\n"
        "assert associate('rt-job-1', 'rt-session-1')\n"
        "assert associate('rt-job-2')\n"
        "assert send_error('E42', 'the backend is gone', 'BackendError', {'tried': 3})\n"
        "raise SystemExit(7)\n",
    )
    job = fn.run()
    assert _wait(job) == "ERROR"
    assert job.runtime_jobs() == ["rt-job-1", "rt-job-2"]
    assert job.runtime_jobs(runtime_session="rt-session-1") == ["rt-job-1"]
    assert job.runtime_sessions() == ["rt-session-1"]
    message = job.error_message()
    assert "the backend is gone" in message and "E42" in message, message
    assert "exited with code 7" in message, message
    with pytest.raises(QiskitServerlessException, match="the backend is gone"):
        job.result()
    # A user's own function: every line, tags removed; no provider logs to read.
    assert job.logs().startswith("starting")
    with pytest.raises(QiskitServerlessException, match="403"):
        job.provider_logs()


def test_bad_input_gets_the_gateways_error_shapes(
    rest: dict[str, Any], api_client: client.ApiClient, tmp_path: Path
) -> None:
    host, ns = rest["host"], rest["namespace"]
    with pytest.raises(QiskitServerlessException) as wrong_token:
        ServerlessClient(host=host, token="not-a-token", instance=ns)
    assert "Code: 401" in str(wrong_token.value)
    assert "Authorization token is not valid." in str(wrong_token.value)

    no_token = requests.get(f"{host}/api/v1/programs/", timeout=30)
    assert no_token.status_code == 401
    assert no_token.json() == {"detail": "Authorization token was not provided."}
    assert no_token.headers["WWW-Authenticate"] == "Bearer"

    with pytest.raises(QiskitServerlessException) as elsewhere:
        ServerlessClient(host=host, token=rest["token"], instance="kube-system")
    assert "Code: 403" in str(elsewhere.value)
    assert "may not list qiskitfunctions.serverless.qiskit.org" in str(elsewhere.value)
    nobody = service_account_token(api_client, ns, "nobody", role=None)
    with pytest.raises(QiskitServerlessException, match="Code: 403"):
        ServerlessClient(host=host, token=nobody, instance=ns)

    serverless: ServerlessClient = rest["client"]
    with pytest.raises(QiskitServerlessException, match=r"Qiskit Function nope doesn't exist\."):
        serverless.function("nope")
    with pytest.raises(QiskitServerlessException, match="Code: 404"):
        serverless.run("nope", {})
    unknown = str(uuid.uuid4())
    with pytest.raises(QiskitServerlessException, match=rf"Job \[{unknown}\] not found"):
        serverless.job(unknown)

    malformed = requests.post(
        f"{host}/api/v1/programs/run/",
        data="{not json",
        headers={**_headers(rest), "Content-Type": "application/json"},
        timeout=30,
    )
    assert malformed.status_code == 400
    assert malformed.json()["message"].startswith("the request body is not valid JSON")
    not_an_object = requests.post(
        f"{host}/api/v1/programs/run/",
        json={"title": "nope", "arguments": "[1, 2]"},
        headers=_headers(rest),
        timeout=30,
    )
    assert not_an_object.status_code == 404  # the function is looked up first

    fn = _upload(rest, tmp_path, "bad-inputs", "print(1)\n")
    assert serverless.validate_arguments("bad-inputs", {"n": 3}) == {"valid": True}
    with pytest.raises(QiskitServerlessException, match="Code: 404"):
        serverless.validate_arguments("nope", {})
    assert serverless.dependencies_versions() == []

    # A function with an arguments schema: a run that does not fit it is refused (400, with
    # the path), and no job is made.
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    checked = _upload(rest, tmp_path, "with-schema", "print(1)\n", arguments_schema=schema)
    assert serverless.function("with-schema").arguments_schema == schema
    before = len(serverless.jobs())
    with pytest.raises(QiskitServerlessException) as not_an_integer:
        checked.run(n="three")
    assert "Code: 400" in str(not_an_integer.value)
    assert "'three' is not of type 'integer'['n']" in str(not_an_integer.value)
    with pytest.raises(QiskitServerlessException, match="'n' is a required property"):
        checked.validate_arguments({})
    assert checked.validate_arguments({"n": 1}) == {"valid": True}
    assert len(serverless.jobs()) == before
    bad_schema = requests.post(
        f"{host}/api/v1/programs/upload/",
        files={  # a multipart form, as the client sends it
            "title": (None, "bad-schema"),
            "image": (None, "x"),
            "arguments_schema": (None, '{"type": "nope"}'),
        },
        headers=_headers(rest),
        timeout=30,
    )
    assert bad_schema.status_code == 400
    assert bad_schema.json()["message"].startswith("the function arguments schema cannot be used")
    wrong_arguments = requests.post(
        f"{host}/api/v1/programs/run/",
        json={"title": "bad-inputs", "arguments": "[1, 2]"},
        headers=_headers(rest),
        timeout=30,
    )
    assert wrong_arguments.status_code == 400
    assert wrong_arguments.json() == {
        "message": "arguments must be a JSON object (keyword arguments), not list",
        "path": [],
    }

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 * 1024 * 1024))  # the local cluster's limit is 8 MiB a file
    with pytest.raises(QiskitServerlessException) as oversized:
        serverless.file_upload(str(big), fn)
    assert "413" in str(oversized.value) and "8388608 bytes" in str(oversized.value)

    traversal = requests.post(
        f"{host}/api/v1/files/upload/",
        params={"function": "bad-inputs"},
        files={"file": ("../escape.txt", b"x")},
        headers=_headers(rest),
        timeout=30,
    )
    assert traversal.status_code == 400 and "names a folder" in traversal.json()["message"]

    not_a_tar = requests.post(
        f"{host}/api/v1/programs/upload/",
        data={"title": "not-a-tar", "entrypoint": "main.py"},
        files={"artifact": ("artifact.tar", b"this is no tar")},
        headers=_headers(rest),
        timeout=30,
    )
    assert not_a_tar.status_code == 400
    assert not_a_tar.json()["message"].startswith("the artifact is not a tar archive")

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("../../etc/passwd")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    escaping = requests.post(
        f"{host}/api/v1/programs/upload/",
        data={"title": "escaping", "entrypoint": "main.py"},
        files={"artifact": ("artifact.tar", archive.getvalue())},
        headers=_headers(rest),
        timeout=30,
    )
    assert escaping.status_code == 400 and "outside its folder" in escaping.json()["message"]


def test_served_over_tls_with_health_and_metrics(
    cluster: dict[str, Any], rest: dict[str, Any]
) -> None:
    host = rest["host"]
    for _ in range(6):  # both replicas see some
        assert requests.get(f"{host}/api/v1/programs/", headers=_headers(rest), timeout=30).ok
    # Its certificate is the cluster CA's, not one the machine's public CAs vouch for.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(
            f"{host}/api/v1/programs/", verify="/etc/ssl/certs/ca-certificates.crt", timeout=30
        )
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(host.replace("https://", "http://") + "/api/v1/programs/", timeout=30)

    seen = 0.0
    for pod in pods(cluster, "gateway"):
        address = pod["status"]["podIP"]
        with urllib.request.urlopen(f"http://{address}:9090/readyz", timeout=10) as answer:
            assert json.load(answer) == {"status": "ready"}
        with urllib.request.urlopen(f"http://{address}:9090/metrics", timeout=10) as answer:
            for family in text_string_to_metric_families(answer.read().decode()):
                for sample in family.samples:
                    if (
                        sample.name == "qso_gateway_requests_total"
                        and sample.labels["route"] == "/api/{version}/programs/"
                        and sample.labels["status"] == "200"
                    ):
                        seen += sample.value
    assert seen >= 6


def test_the_catalog_client_cannot_be_pointed_at_the_gateway_alone(rest: dict[str, Any]) -> None:
    """qiskit_ibm_catalog.QiskitServerless(host=...) builds a QiskitRuntimeService for the
    token first, which authenticates with IBM Cloud: unreachable here, so it never gets to
    our host (docs/gateway.md, "qiskit_ibm_catalog"). If a release stops doing that, this
    test fails and the catalog client should join the walkthrough."""
    from qiskit_ibm_catalog import QiskitServerless
    from qiskit_ibm_runtime.accounts.exceptions import InvalidAccountError

    with pytest.raises(InvalidAccountError, match="Unable to retrieve instances"):
        QiskitServerless(token=rest["token"], instance=rest["namespace"], host=rest["host"])
    with pytest.raises(AttributeError, match="_account"):
        QiskitServerless(
            channel="local", token=rest["token"], instance=rest["namespace"], host=rest["host"]
        )
