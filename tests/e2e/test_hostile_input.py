"""Bad and hostile input at the API edge, by class: wrong types, huge fields, unicode, path
traversal, and programs that go after what is not theirs. Each case must end in a clear,
specific message (the API server's, naming the field; a job's or function's status; an SDK
exception), and nothing else may be lost: the good jobs next to the bad ones still finish.

Each class is one test that runs all of its cases and reports every case that failed, so
one run shows the whole picture. (The REST gateway's own bad input, path traversal in the
files API included: tests/e2e/in_cluster/test_rest_gateway.py.)"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from qiskit_serverless import QiskitFunction
from qiskit_serverless.exception import QiskitServerlessException

from qiskit_serverless_operator import KubernetesClient
from qiskit_serverless_operator import constants as c
from tests.serverless import (
    TERMINAL,
    custom,
    get_job,
    make_function,
    make_job,
    read_object,
    wait_function_phase,
    wait_job,
)

ECHO = "from qiskit_serverless import get_arguments, save_result\nsave_result(get_arguments())\n"


def _api_message(call: Callable[[], Any]) -> str:
    """What the API server answered a refused request with (status code and message)."""
    try:
        call()
    except ApiException as exc:
        try:
            message = json.loads(exc.body)["message"]
        except (ValueError, KeyError, TypeError):
            message = str(exc.body or exc.reason)
        return f"{exc.status} {message}"
    return "accepted"


def _sdk_message(call: Callable[[], Any]) -> str:
    try:
        call()
    except QiskitServerlessException as exc:
        return f"QiskitServerlessException {exc}"
    return "accepted"


def _check(cases: dict[str, tuple[Callable[[], str], list[str]]]) -> None:
    """Run every case; each message must hold every expected fragment."""
    failures = []
    for label, (run, fragments) in cases.items():
        try:
            message = run()
        except Exception as exc:  # a crash is a failed case too, with what crashed
            message = f"crashed: {type(exc).__name__}: {exc}"
        missing = [f for f in fragments if f not in message]
        if missing:
            failures.append(f"{label}: missing {missing} in {message[:400]!r}")
    assert not failures, "\n".join(failures)


def _job_end(api: client.CustomObjectsApi, namespace: str, name: str) -> str:
    status = wait_job(api, namespace, name, TERMINAL, timeout=240)["status"]
    return f"{status['phase']} {status.get('reason')}: {status.get('message', '')}"


def _function_end(api: client.CustomObjectsApi, namespace: str, name: str) -> str:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = (
            api.get_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.FUNCTION_PLURAL, name
            ).get("status")
            or {}
        )
        if status.get("phase") in ("Ready", "Failed"):
            return f"{status['phase']} {status.get('reason')}: {status.get('message', '')}"
        time.sleep(0.5)
    return "no end"


def _cr(kind: str, name: str, spec: Any) -> dict[str, Any]:
    return {"apiVersion": c.API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def ready_echo(api_client: client.ApiClient, namespace: str, operator) -> str:
    api = custom(api_client)
    make_function(api, namespace, "echo", {"main.py": ECHO})
    wait_function_phase(api, namespace, "echo", "Ready", timeout=240)
    return "echo"


def _made_then_ended(api: client.CustomObjectsApi, namespace: str, name: str, **spec: Any) -> str:
    """A job the schemas accept: how it ended (or the refusal, if it was refused)."""
    made = _api_message(lambda: make_job(api, namespace, name, "echo", **spec))
    return made if made != "accepted" else _job_end(api, namespace, name)


def _made_function_end(
    api: client.CustomObjectsApi, namespace: str, name: str, files: dict[str, str], **spec: Any
) -> str:
    made = _api_message(lambda: make_function(api, namespace, name, files, **spec))
    return made if made != "accepted" else _function_end(api, namespace, name)


def _good_job_still_finishes(api: client.CustomObjectsApi, namespace: str, name: str) -> None:
    make_job(api, namespace, name, "echo", arguments={"inline": {"ok": True}})
    body = wait_job(api, namespace, name, TERMINAL, timeout=240)
    assert body["status"]["phase"] == "DONE", body["status"]


def test_wrong_types_are_refused_with_the_field(
    api_client: client.ApiClient, namespace: str, ready_echo: str
) -> None:
    api = custom(api_client)

    def job(name: str, **spec: Any) -> Callable[[], str]:
        body = _cr(c.JOB_KIND, name, {"function": "echo", **spec})
        return lambda: _api_message(
            lambda: api.create_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, body
            )
        )

    def function(name: str, **spec: Any) -> Callable[[], str]:
        body = _cr(c.FUNCTION_KIND, name, {"title": name, "entrypoint": "main.py", **spec})
        return lambda: _api_message(
            lambda: api.create_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.FUNCTION_PLURAL, body
            )
        )

    sdk = KubernetesClient(namespace=namespace, api_client=api_client)
    files = {"main.py": ECHO}
    _check(
        {
            "job function a number": (job("t1", function=42), ["422", "spec.function"]),
            "job timeout a word": (job("t2", timeoutSeconds="soon"), ["spec.timeoutSeconds"]),
            "job arguments a list": (job("t3", arguments=[1, 2]), ["spec.arguments"]),
            "job inline arguments a string": (
                job("t4", arguments={"inline": "a=1"}),
                ["spec.arguments.inline"],
            ),
            "job stop a word": (job("t5", stop="yes"), ["spec.stop"]),
            "job priority a fraction": (job("t6", priority=1.5), ["spec.priority"]),
            "job cpu not a quantity": (
                job("t7", resources={"requests": {"cpu": "lots"}}),
                ["spec.resources.requests.cpu"],
            ),
            "job without a function": (
                lambda: _api_message(
                    lambda: api.create_namespaced_custom_object(
                        c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, _cr(c.JOB_KIND, "t8", {})
                    )
                ),
                ["spec.function", "Required"],
            ),
            "function entrypoint not python": (
                function("f1", entrypoint="main.sh", source={"files": files}),
                ["spec.entrypoint"],
            ),
            "function file content a number": (
                function("f2", source={"files": {"main.py": 12}}),
                ["spec.source.files"],
            ),
            "function dependencies a string": (
                function("f3", dependencies="qiskit", source={"files": files}),
                ["spec.dependencies"],
            ),
            "function env a list": (
                function("f4", env=["A=1"], source={"files": files}),
                ["spec.env"],
            ),
            "function with neither image nor source": (
                function("f5"),
                ["exactly one of image (prebuilt) or source"],
            ),
            "sdk arguments not a dict": (
                lambda: _sdk_message(lambda: sdk.run("echo", ["not", "a", "dict"])),  # type: ignore[arg-type]
                ["arguments must be a dict"],
            ),
            "sdk function given as a number": (
                lambda: _sdk_message(lambda: sdk.run(7, {})),  # type: ignore[arg-type]
                ["a function's title or a QiskitFunction", "got int 7"],
            ),
            "job arguments secretRef without a name": (
                job("t10", arguments={"secretRef": {"key": "a.json"}}),
                ["spec.arguments.secretRef.name", "Required"],
            ),
            "function arguments schema that is no JSON schema": (
                lambda: _made_function_end(
                    api, namespace, "f6", {"main.py": ECHO}, argumentsSchema={"type": "nonsense"}
                ),
                ["Failed InvalidArgumentsSchema"],
            ),
            "sdk status of a job id that is a path": (
                lambda: _sdk_message(lambda: sdk.status("../../etc/passwd")),
                ["QiskitServerlessException", "../../etc/passwd"],
            ),
            "sdk job() of an unknown id": (
                lambda: str(sdk.job("00000000-0000-0000-0000-000000000000")),
                ["None"],
            ),
            "job resource with a name Kubernetes refuses": (
                lambda: _made_then_ended(
                    api,
                    namespace,
                    "t9",
                    resources={"requests": {"cpu": "100m", "not a resource": "1"}},
                ),
                ["ERROR InvalidPodSpec", "not a resource"],
            ),
        }
    )
    _good_job_still_finishes(api, namespace, "after-wrong-types")


def test_huge_fields_are_refused_before_they_hurt(
    api_client: client.ApiClient, namespace: str, ready_echo: str, tmp_path: Path
) -> None:
    api = custom(api_client)
    sdk = KubernetesClient(namespace=namespace, api_client=api_client)

    def create_job(name: str, **spec: Any) -> str:
        return _api_message(lambda: make_job(api, namespace, name, "echo", **spec))

    def big_source() -> str:
        make_function(api, namespace, "big", {"main.py": ECHO, "data.py": "x" * 1_200_000})
        return _function_end(api, namespace, "big")

    def many_files() -> str:
        folder = tmp_path / "many"
        folder.mkdir()
        (folder / "main.py").write_text(ECHO)
        for i in range(300):
            (folder / f"m{i:03d}.py").write_text(f"X = {i}\n")
        fn = sdk.upload(QiskitFunction(title="many", entrypoint="main.py", working_dir=str(folder)))
        assert fn is not None
        job = fn.run(n=1)
        result = job.result()
        return f"{job.status()} {result}"

    def deep() -> Any:
        value: Any = 1
        for _ in range(5000):
            value = [value]
        return value

    _check(
        {
            "inline arguments of 4 MB": (
                lambda: create_job("h1", arguments={"inline": {"blob": "x" * 4_000_000}}),
                ["413", "too large"],
            ),
            "sdk arguments of 2 MB": (
                lambda: _sdk_message(lambda: sdk.run("echo", {"blob": "x" * 2_000_000})),
                ["2000012 bytes", "object storage"],
            ),
            "sdk arguments nested 5000 deep": (
                lambda: _sdk_message(lambda: sdk.run("echo", {"deep": deep()})),
                ["arguments cannot be sent"],
            ),
            "job name of 100 characters": (
                lambda: create_job("j" * 100),
                ["at most 63 characters"],
            ),
            "title of 64 characters": (
                lambda: _api_message(
                    lambda: make_function(
                        api, namespace, "long-title", {"main.py": ECHO}, title="t" * 64
                    )
                ),
                ["spec.title", "63"],
            ),
            "source over the object limit": (big_source, ["Failed SourceTooLarge", "archive"]),
            "sdk folder of 300 files (sent as an archive)": (many_files, ["DONE {'n': 1}"]),
        }
    )
    _good_job_still_finishes(api, namespace, "after-huge")


UNICODE = {
    "greek": "καλημέρα κόσμε",
    "cjk": "量子计算",
    "emoji": "⚛️🧪🌍",
    "rtl override": "abc\u202edcba",
    "nul": "a\u0000b",
    "zero width": "a\u200bb",
    "combining": "e\u0301",
    "lone surrogate escaped": "\\ud800",
    "key ünïcødé": "value",
}

NOISY = """
import sys
print("καλημέρα 🌍", flush=True)
sys.stdout.buffer.write(b"not utf-8: \\xff\\xfe end\\n")
sys.stdout.flush()
"""


def test_unicode_round_trips_or_is_refused_clearly(
    cluster: dict[str, Any],
    api_client: client.ApiClient,
    namespace: str,
    ready_echo: str,
    tmp_path: Path,
) -> None:
    api = custom(api_client)
    sdk = KubernetesClient(namespace=namespace, api_client=api_client)

    def echoed() -> str:
        job = sdk.run("echo", UNICODE)
        result = job.result()
        return "same" if result == UNICODE else f"changed: {result!r}"

    def inline_echoed() -> str:
        make_job(api, namespace, "uni-inline", "echo", arguments={"inline": UNICODE})
        status = wait_job(api, namespace, "uni-inline", TERMINAL, timeout=240)["status"]
        if status["phase"] != "DONE":
            return f"{status['phase']}: {status.get('message')}"
        got = json.loads(read_object(cluster, status["result"]))
        return "same" if got == UNICODE else f"changed: {got!r}"

    def noisy_logs() -> str:
        (tmp_path / "noisy.py").write_text(NOISY)
        fn = sdk.upload(
            QiskitFunction(title="noisy", entrypoint="noisy.py", working_dir=str(tmp_path))
        )
        assert fn is not None
        job = fn.run()
        job.result()
        return job.logs()

    def unicode_file_name() -> str:
        make_function(api, namespace, "uni-file", {"main.py": ECHO, "données.py": "X = 1\n"})
        return _function_end(api, namespace, "uni-file")

    _check(
        {
            "sdk arguments in every script": (echoed, ["same"]),
            "inline arguments in every script": (inline_echoed, ["same"]),
            "logs with unicode and bytes that are not utf-8": (
                noisy_logs,
                ["καλημέρα 🌍", "not utf-8: \ufffd\ufffd end"],
            ),
            "a source file named in unicode": (unicode_file_name, ["Ready"]),
            "sdk title in unicode": (
                lambda: _sdk_message(
                    lambda: sdk.upload(QiskitFunction(title="qubit-\u03b1", image="x:1"))
                ),
                ["qubit-\u03b1", "letters, digits"],
            ),
            "job name in unicode": (
                lambda: _api_message(lambda: make_job(api, namespace, "jöb", "echo")),
                ["422", "RFC 1123"],
            ),
        }
    )
    _good_job_still_finishes(api, namespace, "after-unicode")


def _crafted_archive(member: str) -> tuple[bytes, str]:
    """A tar.gz whose one member is named ``member`` (as a hostile user would PUT it)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in ((member, b"print('escaped')\n"), ("main.py", ECHO.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    data = gzip.compress(raw.getvalue(), mtime=0)
    return data, hashlib.sha256(data).hexdigest()


def test_path_traversal_is_refused(
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    namespace: str,
    ready_echo: str,
    tmp_path: Path,
) -> None:
    api = custom(api_client)
    sdk = KubernetesClient(namespace=namespace, api_client=api_client)

    def source(name: str, files: dict[str, str], entrypoint: str = "main.py") -> str:
        return _api_message(
            lambda: make_function(api, namespace, name, files, entrypoint=entrypoint)
        )

    def archive(name: str, member: str) -> str:
        data, sha = _crafted_archive(member)
        make_function(api, namespace, name, None, source={"archive": {"sha256": sha}})
        deadline = time.monotonic() + 60
        while True:
            try:
                secret = core.read_namespaced_secret(f"qf-upload-{name}", namespace)
                break
            except ApiException:
                if time.monotonic() > deadline:
                    return "no upload link"
                time.sleep(0.5)
        url = base64.b64decode(secret.data["upload-url"]).decode()
        request = urllib.request.Request(url, data=data, method="PUT")
        urllib.request.urlopen(request, timeout=60).close()
        return _function_end(api, namespace, name)

    def sdk_entrypoint_outside() -> str:
        (tmp_path / "inside").mkdir()
        (tmp_path / "outside.py").write_text(ECHO)
        return _sdk_message(
            lambda: sdk.upload(
                QiskitFunction(
                    title="outside",
                    entrypoint="../outside.py",
                    working_dir=str(tmp_path / "inside"),
                )
            )
        )

    def secret_ref(name: str) -> str:
        made = _api_message(
            lambda: make_job(api, namespace, "ref", "echo", arguments={"secretRef": {"name": name}})
        )
        return made if made != "accepted" else _job_end(api, namespace, "ref")

    _check(
        {
            "source file ../evil.py": (
                lambda: source("p1", {"main.py": ECHO, "../evil.py": "x"}),
                ["422", "spec.source.files"],
            ),
            "source file /etc/evil.py": (
                lambda: source("p2", {"main.py": ECHO, "/etc/evil.py": "x"}),
                ["spec.source.files"],
            ),
            "source file a/../../evil.py": (
                lambda: source("p3", {"main.py": ECHO, "a/../../evil.py": "x"}),
                ["spec.source.files"],
            ),
            "entrypoint ../main.py": (
                lambda: source("p4", {"main.py": ECHO}, entrypoint="../main.py"),
                ["spec.entrypoint"],
            ),
            "entrypoint a/../../main.py": (
                lambda: source("p8", {"main.py": ECHO}, entrypoint="a/../../main.py"),
                ["spec.entrypoint", "without '..'"],
            ),
            "entrypoint /main.py": (
                lambda: source("p5", {"main.py": ECHO}, entrypoint="/main.py"),
                ["spec.entrypoint"],
            ),
            "archive member ../../escape.py": (
                lambda: archive("p6", "../../escape.py"),
                ["Failed", "../../escape.py"],
            ),
            "archive member /tmp/escape.py": (
                lambda: archive("p7", "/tmp/escape.py"),
                ["Failed", "/tmp/escape.py"],
            ),
            "sdk entrypoint outside working_dir": (
                sdk_entrypoint_outside,
                ["QiskitServerlessException", "../outside.py"],
            ),
            "arguments secretRef ../other": (
                lambda: secret_ref("../other"),
                ["spec.arguments.secretRef.name"],
            ),
        }
    )
    _good_job_still_finishes(api, namespace, "after-traversal")


HOSTILE = r"""
import json, os, ssl, urllib.request, urllib.error
from qiskit_serverless import get_arguments, save_result
args = get_arguments()
seen = {}
seen["token_file"] = os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")
seen["secrets_dir"] = os.path.exists("/var/run/secrets/kubernetes.io")
def status(request):
    try:
        context = ssl._create_unverified_context()
        with urllib.request.urlopen(request, timeout=10, context=context) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:
        return type(e).__name__
secret_url = (
    "https://kubernetes.default.svc/api/v1/namespaces/" + args["namespace"]
    + "/secrets/" + args["other_secret"]
)
seen["api_anonymous"] = status(secret_url)
# The job's own token, sent to the API server and to the job endpoint for another job.
own = os.environ.get("ENV_JOB_GATEWAY_TOKEN", "")
seen["api_with_job_token"] = status(
    urllib.request.Request(secret_url, headers={"Authorization": "Bearer " + own})
)
seen["endpoint_other_job"] = status(urllib.request.Request(
    os.environ["ENV_JOB_GATEWAY_HOST"] + "/api/v1/jobs/" + args["other_uid"] + "/sub_status/",
    data=b"sub_status=MAPPING", method="PATCH",
    headers={"Authorization": "Bearer " + own,
             "Content-Type": "application/x-www-form-urlencoded"},
))
try:
    open("/usr/lib/evil", "w").write("x")
    seen["root_write"] = "written"
except OSError as e:
    seen["root_write"] = e.strerror
seen["env"] = dict(os.environ)
seen["uid"] = os.getuid()
save_result(seen)
"""


def test_a_hostile_program_reaches_nothing_that_is_not_its_own(
    cluster: dict[str, Any],
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    namespace: str,
    ready_echo: str,
) -> None:
    api = custom(api_client)
    # The victim: another job in the same namespace, with arguments in its Secret.
    victim_secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="victim-args"),
        string_data={c.ARGUMENTS_FILE: json.dumps({"password": "hunter2"})},
    )
    core.create_namespaced_secret(namespace, victim_secret)
    victim = make_job(
        api, namespace, "victim", "echo", arguments={"secretRef": {"name": "victim-args"}}
    )
    assert wait_job(api, namespace, "victim", TERMINAL, timeout=240)["status"]["phase"] == "DONE"

    make_function(api, namespace, "hostile", {"main.py": HOSTILE})
    wait_function_phase(api, namespace, "hostile", "Ready", timeout=240)
    make_job(
        api,
        namespace,
        "hostile",
        "hostile",
        arguments={
            "inline": {
                "namespace": namespace,
                "other_secret": "victim-args",
                "other_uid": victim["metadata"]["uid"],
            }
        },
    )
    status = wait_job(api, namespace, "hostile", TERMINAL, timeout=240)["status"]
    assert status["phase"] == "DONE", status
    seen = json.loads(read_object(cluster, status["result"]))
    env_values = "\n".join(seen.pop("env").values())

    _check(
        {
            "no service account token in the pod": (
                lambda: f"token file {seen['token_file']}, dir {seen['secrets_dir']}",
                ["token file False, dir False"],
            ),
            "the API server refuses an anonymous read of another job's Secret": (
                lambda: "refused" if seen["api_anonymous"] in (401, 403) else str(seen),
                ["refused"],
            ),
            "the job's own token is no Kubernetes credential": (
                lambda: str(seen["api_with_job_token"]),
                ["401"],
            ),
            "the job endpoint refuses the token for another job": (
                lambda: str(seen["endpoint_other_job"]),
                ["403"],
            ),
            "the root filesystem is read-only": (
                lambda: str(seen["root_write"]),
                ["Read-only file system"],
            ),
            "no object-storage keys or other job's data in the environment": (
                lambda: (
                    "clean"
                    if cluster["s3"]["secret_key"] not in env_values and "hunter2" not in env_values
                    else "leaked"
                ),
                ["clean"],
            ),
            "not root": (lambda: "root" if seen["uid"] == 0 else "not root", ["not root"]),
        }
    )
    # The victim's job and result are untouched.
    assert get_job(api, namespace, "victim")["status"]["phase"] == "DONE"
