"""python -m qiskit_serverless_operator.runtime: run the function's entrypoint in the job pod.

- Runs ``$QSO_SOURCE_DIR/$QSO_ENTRYPOINT`` with the same Python, passing its output through
  (so ``kubectl logs`` shows it) and keeping a bounded tail that is uploaded to object storage
  every few seconds and at the end, through the presigned URL in the runtime Secret; for a
  provider's function two, split as Qiskit Serverless splits them (logsplit.py).
- Before the program starts, fills ``/data`` and ``/function_data`` from the files API's
  folders, and after it ends keeps what it wrote there (folders.py).
- After a successful run, uploads the file the program wrote with ``save_result()``.
- Exits with the program's exit code (2: entrypoint missing, 3: the result could not be
  stored, 4: the job's files could not be fetched or kept).
- Forwards SIGTERM/SIGINT to the program, so a stopped job ends promptly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import logsplit
from .folders import FolderError, Folders

UPLOAD_EVERY_SECONDS = 5.0
EXIT_ENTRYPOINT_MISSING = 2
EXIT_RESULT_NOT_STORED = 3
EXIT_FILES_FAILED = 4


def note(message: str) -> None:
    print(f"[qiskit-serverless] {message}", file=sys.stderr, flush=True)


class LogTail:
    """The newest ``limit`` bytes of a log (after the cap's marker once it was cut), and
    whether it changed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._data = bytearray()
        self._lock = threading.Lock()
        self.version = 0
        # Kept past the limit, so that a snapshot knows it was cut (and says so).
        self._slack = max(4096, min(limit, 1 << 20))

    def add(self, chunk: bytes) -> None:
        with self._lock:
            self._data += chunk
            if len(self._data) > self.limit + self._slack:
                del self._data[: len(self._data) - self.limit - 1]
            self.version += 1

    def snapshot(self) -> tuple[int, bytes]:
        with self._lock:
            return self.version, logsplit.capped(bytes(self._data), self.limit)


class Logs:
    """Where each line of output goes: one log (the user's) for a user's own function; for a
    provider's function the [PUBLIC] lines to the user's log, the rest to the provider's."""

    def __init__(self, limit: int, user_url: str | None, provider_url: str | None) -> None:
        self.user = LogTail(limit)
        self.provider = LogTail(limit) if provider_url else None
        self.targets = [(self.user, user_url)] if user_url else []
        if self.provider is not None:
            self.targets.append((self.provider, provider_url))

    def add(self, chunk: bytes) -> None:
        if self.provider is None:
            self.user.add(chunk)
            return
        line = chunk.decode(errors="replace")
        public = logsplit.public_line(line)
        if public is not None:
            self.user.add(public.encode())
        else:
            self.provider.add((logsplit.private_line(line) or "").encode())

    def upload(self, final: bool = False) -> None:
        for tail, url in self.targets:
            _, data = tail.snapshot()
            for attempt in range(1, 4 if final else 2):
                try:
                    put(url, data, "text/plain; charset=utf-8")
                    break
                except (OSError, urllib.error.URLError) as exc:
                    if not final:
                        note(f"log upload failed (will retry): {exc}")
                    elif attempt == 3:
                        # The operator still keeps the pod's own log (read from the API).
                        note(f"final log upload failed: {exc}")
                    else:
                        time.sleep(attempt)


def put(url: str, data: bytes, content_type: str) -> None:
    request = urllib.request.Request(
        url, data=data, method="PUT", headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        if response.status >= 300:
            raise OSError(f"storage answered HTTP {response.status}")


def put_patiently(url: str, data: bytes, content_type: str) -> bool:
    """Store the result, waiting out an object store that is down (a restart, an outage):
    a finished program's result is never given up before ``QSO_UPLOAD_PATIENCE_SECONDS``
    (10 minutes by default). A refusal (4xx: the link expired, say) is final."""
    patience = float(os.environ.get("QSO_UPLOAD_PATIENCE_SECONDS", "600"))
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            put(url, data, content_type)
            if attempt > 1:
                note(f"the result is stored (attempt {attempt})")
            return True
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                note(f"object storage refused the result: HTTP {exc.code}")
                return False
            error: Exception = exc
        except (OSError, urllib.error.URLError) as exc:
            error = exc
        waited = time.monotonic() - started
        if waited > patience:
            note(f"the result could not be stored in {waited:.0f} s: {error}")
            return False
        if attempt == 1 or attempt % 10 == 0:
            note(f"storing the result failed ({error}); trying again for up to {patience:.0f} s")
        time.sleep(min(2.0 * attempt, 10.0))


def read_secret(runtime_dir: Path, key: str) -> str | None:
    path = runtime_dir / key
    return path.read_text().strip() if path.exists() else None


def _pump(stream, logs: Logs) -> None:
    for chunk in iter(lambda: stream.readline(), b""):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        logs.add(chunk)


def _uploader(logs: Logs, stop: threading.Event) -> None:
    sent = (-1, -1)
    while not stop.wait(UPLOAD_EVERY_SECONDS):
        versions = (logs.user.version, logs.provider.version if logs.provider else 0)
        if versions != sent:
            logs.upload()
            sent = versions


def main() -> int:
    source_dir = Path(os.environ.get("QSO_SOURCE_DIR", "/function"))
    entrypoint = os.environ.get("QSO_ENTRYPOINT", "main.py")
    runtime_dir = Path(os.environ.get("QSO_RUNTIME_DIR", "/run/qso/runtime"))
    results_path = Path(os.environ.get("RESULTS_PATH", "/results/result.json"))
    logs_url = read_secret(runtime_dir, "logs-url")
    logs = Logs(
        int(os.environ.get("QSO_MAX_LOG_BYTES", str(50 * 1024 * 1024))),
        logs_url,
        read_secret(runtime_dir, "provider-logs-url"),
    )
    result_url = read_secret(runtime_dir, "result-url")

    program = source_dir / entrypoint
    workdir = source_dir
    runner = Path(os.environ.get("QSO_RUNNER_PATH", "/runner")) / "runner.py"
    # A task of another job (tasks.py): the pickled call is the program.
    task_payload_url = read_secret(runtime_dir, "task-payload-url")
    if not task_payload_url and not program.is_file() and runner.is_file():
        # An image built for IBM's service: its Runner().run(arguments) is the program.
        program, workdir = Path(__file__).with_name("runner_entry.py"), runner.parent
    if not task_payload_url and not program.is_file():
        present = (
            sorted(str(p.relative_to(source_dir)) for p in source_dir.rglob("*.py"))
            if source_dir.is_dir()
            else []
        )
        note(
            f"entrypoint {entrypoint!r} not found in the function's source "
            f"(Python files: {', '.join(present) or 'none'}), and no {runner} "
            "(Qiskit Serverless' custom-image Runner)"
        )
        return EXIT_ENTRYPOINT_MISSING

    folders = Folders.from_env(runtime_dir)
    if folders is not None:
        try:
            fetched = folders.download()
        except FolderError as exc:
            note(f"the job's files could not be fetched, so the program was not started: {exc}")
            return EXIT_FILES_FAILED
        if fetched:
            note(f"{fetched} file(s) in {', '.join(sorted(folders.fetched))}")

    env = dict(os.environ)
    # The source first (the program's own modules), this package last (launch.py, tasks.py:
    # a prebuilt image may not hold it but for the wrapper's copy).
    ours = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(source_dir), env.get("PYTHONPATH"), ours])
    )
    launch = [sys.executable, "-m", f"{__package__}.launch"]
    argv = (
        [*launch, "--task", task_payload_url, str(results_path)]
        if task_payload_url
        else [*launch, str(program)]
    )
    child = subprocess.Popen(
        argv,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    def forward(signum, _frame) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    stop = threading.Event()
    pump = threading.Thread(target=_pump, args=(child.stdout, logs), daemon=True)
    pump.start()
    uploader = threading.Thread(target=_uploader, args=(logs, stop), daemon=True)
    uploader.start()
    code = child.wait()
    pump.join(timeout=10)
    stop.set()
    uploader.join(timeout=5)
    logs.upload(final=True)

    files_failed = False
    if folders is not None:
        try:
            kept = folders.upload()
            if kept:
                note(f"kept {', '.join(kept)}")
        except FolderError as exc:
            note(f"the files the program wrote could not all be kept: {exc}")
            files_failed = True

    stored = (
        code != 0
        or not results_path.exists()
        or not result_url
        or put_patiently(
            result_url,
            results_path.read_bytes(),
            "application/octet-stream" if task_payload_url else "application/json",
        )
    )
    if not stored:
        return EXIT_RESULT_NOT_STORED
    if code < 0:
        note(f"the program was ended by signal {-code}")
        return 128 - code
    if code == 0 and files_failed:
        return EXIT_FILES_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
