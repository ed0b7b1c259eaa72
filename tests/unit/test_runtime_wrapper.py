"""The in-pod wrapper, run for real as a subprocess against a loopback HTTP server."""

from __future__ import annotations

import ast
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
    objects: ClassVar[dict[str, bytes]] = {}

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).objects[self.path] = self.rfile.read(length)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def store():
    _Store.objects = {}
    server = HTTPServer(("127.0.0.1", 0), _Store)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, _Store.objects
    server.shutdown()


def _run(tmp_path: Path, store, program: str, entrypoint: str = "main.py"):
    server, _ = store
    source = tmp_path / "src"
    source.mkdir()
    (source / "main.py").write_text(program)
    runtime = tmp_path / "rt"
    runtime.mkdir()
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
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names, f"{path.name} imports {name}"
