"""The in-pod wrapper, run for real as a subprocess against a loopback HTTP server."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

import qiskit_serverless_operator

PACKAGE = Path(qiskit_serverless_operator.__file__).parent


class _Store(BaseHTTPRequestHandler):
    """Object storage's presigned URLs and the operator's job endpoint for files, in one."""

    objects: ClassVar[dict[str, bytes]] = {}
    folders: ClassVar[dict[str, list[str]]] = {}  # mount -> names stored under /files/
    refuse_uploads: ClassVar[bool] = False

    def _send(self, code: int, body: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).objects[self.path] = self.rfile.read(length)
        self._send(200)

    def do_GET(self) -> None:
        base = f"http://127.0.0.1:{self.server.server_port}"
        if self.path.endswith("/files/"):
            assert self.headers["Authorization"] == "Bearer job-token"
            listing = {
                mount: [{"name": n, "size": 1, "url": f"{base}/files/{n}"} for n in names]
                for mount, names in type(self).folders.items()
            }
            self._send(200, json.dumps({"folders": listing}).encode())
        else:
            self._send(200, type(self).objects[self.path])

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if type(self).refuse_uploads:
            self._send(413, json.dumps({"message": "over the quota"}).encode())
            return
        url = f"http://127.0.0.1:{self.server.server_port}/files/{body['name']}"
        self._send(200, json.dumps({"url": url, "name": body["name"]}).encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def store():
    _Store.objects, _Store.folders, _Store.refuse_uploads = {}, {}, False
    server = HTTPServer(("127.0.0.1", 0), _Store)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, _Store.objects
    server.shutdown()


def _run(tmp_path: Path, store, program: str, entrypoint: str = "main.py", **extra_env: str):
    server, _ = store
    source = tmp_path / "src"
    source.mkdir()
    (source / "main.py").write_text(program)
    runtime = tmp_path / "rt"
    runtime.mkdir(exist_ok=True)
    base = f"http://127.0.0.1:{server.server_port}"
    (runtime / "result-url").write_text(f"{base}/result")
    (runtime / "logs-url").write_text(f"{base}/logs")
    env = {
        "PATH": "/usr/bin:/bin",
        "QSO_SOURCE_DIR": str(source),
        "QSO_ENTRYPOINT": entrypoint,
        "QSO_RUNTIME_DIR": str(runtime),
        "RESULTS_PATH": str(tmp_path / "results" / "result.json"),
        "PYTHONPATH": str(PACKAGE.parent),
        **extra_env,
    }
    return subprocess.run(
        [sys.executable, "-m", "qiskit_serverless_operator.runtime"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_output_passes_through_and_result_and_logs_are_uploaded(tmp_path, store):
    program = (
        "import json, os\n"
        "print('step 1')\n"
        "os.makedirs(os.path.dirname(os.environ['RESULTS_PATH']), exist_ok=True)\n"
        "open(os.environ['RESULTS_PATH'], 'w').write(json.dumps({'x': 1}))\n"
        "print('step 2')\n"
    )
    done = _run(tmp_path, store, program)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["step 1", "step 2"]
    objects = store[1]
    assert objects["/result"] == b'{"x": 1}'
    assert objects["/logs"] == b"step 1\nstep 2\n"


def test_failure_keeps_the_exit_code_and_stores_logs_but_no_result(tmp_path, store):
    done = _run(tmp_path, store, "print('before');raise SystemExit(5)")
    assert done.returncode == 5
    assert store[1]["/logs"] == b"before\n"
    assert "/result" not in store[1]


def test_missing_entrypoint_is_named_with_what_exists(tmp_path, store):
    done = _run(tmp_path, store, "print(1)", entrypoint="nope.py")
    assert done.returncode == 2
    assert "entrypoint 'nope.py' not found" in done.stderr
    assert "main.py" in done.stderr


def _with_folders(tmp_path: Path, store) -> dict[str, str]:
    server, _ = store
    return {
        "QSO_FILES_SYNC": "1",
        "ENV_JOB_GATEWAY_HOST": f"http://127.0.0.1:{server.server_port}",
        "ENV_JOB_ID_GATEWAY": "job-1",
        "ENV_JOB_GATEWAY_TOKEN": "job-token",
        "DATA": str(tmp_path / "data"),
    }


def test_data_folder_is_filled_before_and_kept_after(tmp_path, store):
    data = str(tmp_path / "data")
    _Store.folders = {data: ["input.txt", "same.txt"]}
    _Store.objects.update({"/files/input.txt": b"hello", "/files/same.txt": b"unchanged"})
    program = (
        "import os\n"
        "d = os.environ['DATA']\n"
        "print(sorted(os.listdir(d)))\n"
        "text = open(os.path.join(d, 'input.txt')).read()\n"
        "open(os.path.join(d, 'output.txt'), 'w').write(text.upper())\n"
        "open(os.path.join(d, 'input.txt'), 'a').write('!')\n"
    )
    done = _run(tmp_path, store, program, **_with_folders(tmp_path, store))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['input.txt', 'same.txt']"]
    assert _Store.objects["/files/output.txt"] == b"HELLO"
    assert _Store.objects["/files/input.txt"] == b"hello!"  # changed: stored again
    assert f"kept {data}/input.txt, {data}/output.txt" in done.stderr  # not same.txt


def test_the_listing_in_the_runtime_secret_needs_no_job_endpoint(tmp_path, store):
    """The operator lists the folders when it starts the job (files.json): a job that writes
    nothing back runs while no operator answers."""
    server, _ = store
    data = str(tmp_path / "data")
    _Store.objects["/files/input.txt"] = b"from the secret"
    listing = {
        data: [
            {
                "name": "input.txt",
                "size": 15,
                "url": f"http://127.0.0.1:{server.server_port}/files/input.txt",
            }
        ]
    }
    env = _with_folders(tmp_path, store)
    env["ENV_JOB_GATEWAY_HOST"] = "http://127.0.0.1:9"  # nothing listens there
    runtime = tmp_path / "rt"
    runtime.mkdir()
    (runtime / "files.json").write_text(json.dumps(listing))
    program = "import os\nprint(open(os.path.join(os.environ['DATA'], 'input.txt')).read())\n"
    done = _run(tmp_path, store, program, **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "from the secret"


def test_files_that_cannot_be_kept_fail_the_job_with_the_reason(tmp_path, store):
    data = str(tmp_path / "data")
    _Store.folders = {data: []}
    _Store.refuse_uploads = True
    program = "import os\nopen(os.path.join(os.environ['DATA'], 'big.bin'), 'wb').write(b'x')\n"
    done = _run(tmp_path, store, program, **_with_folders(tmp_path, store))
    assert done.returncode == 4
    assert "could not all be kept" in done.stderr and "over the quota" in done.stderr


def test_runtime_imports_only_the_standard_library():
    files = [PACKAGE / "__init__.py", PACKAGE / "constants.py", *(PACKAGE / "runtime").glob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            # The custom-image adapter imports what the image brings: its Runner, and its
            # own qiskit_serverless (optional there); tasks take the image's cloudpickle
            # (qiskit-serverless' own dependency), on first use only.
            image_modules = {
                "runner_entry.py": {"runner", "qiskit_serverless"},
                "tasks.py": {"cloudpickle"},
            }.get(path.name, set())
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names | image_modules, f"{path.name} imports {name}"
