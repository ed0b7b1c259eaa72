"""Local mode: the same SDK calls, no cluster. For quick iteration on a laptop.

``LocalClient`` runs each job's entrypoint in a subprocess of this machine, through the same
in-pod wrapper and with the same environment contract as a cluster job (``ARGUMENTS_PATH``,
``RESULTS_PATH``, ``DATA_PATH``), so a program that works here works in the cluster. What it
does not do: isolation, resource limits, queueing, images or dependencies (the program uses
this Python environment), and ``update_status()`` (no gateway: the call returns False).
Functions and jobs live in this process's memory only.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qiskit_serverless.core.client import BaseClient
from qiskit_serverless.core.function import QiskitFunction, RunnableQiskitFunction
from qiskit_serverless.core.job import Configuration, Job
from qiskit_serverless.exception import QiskitServerlessException

from .kubernetes_client import (
    NO_LOGS,
    STOPPED,
    NeedsArchive,
    encode_arguments,
    read_program_files,
)

PACKAGE_PARENT = Path(__file__).resolve().parents[2]


@dataclass
class _LocalJob:
    job_id: str
    function: str
    folder: Path
    process: subprocess.Popen[str] | None = None
    status: str = "QUEUED"
    output: list[str] = field(default_factory=list)
    stopped: bool = False


class LocalClient(BaseClient):
    """Runs functions as local subprocesses (see the module docstring for the limits)."""

    def __init__(self) -> None:
        super().__init__(host="local")
        self._functions: dict[str, RunnableQiskitFunction] = {}
        self._sources: dict[str, Path] = {}
        self._jobs: dict[str, _LocalJob] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_dict(cls, dictionary: dict) -> LocalClient:
        return cls()

    # functions
    def upload(self, program: QiskitFunction) -> RunnableQiskitFunction:
        # The same entrypoint check as on the cluster; size does not matter when run in place.
        with contextlib.suppress(NeedsArchive):
            read_program_files(program)
        runnable = RunnableQiskitFunction(
            client=self,
            title=program.title,
            provider=program.provider,
            entrypoint=program.entrypoint,
            working_dir=program.working_dir,
        )
        self._functions[program.title] = runnable
        self._sources[program.title] = Path(program.working_dir or ".").resolve()
        return runnable

    def functions(self, provider: str | None = None, **kwargs: Any) -> list[RunnableQiskitFunction]:
        return [
            f
            for _, f in sorted(self._functions.items())
            if provider is None or f.provider == provider
        ]

    def function(self, title: str, provider: str | None = None) -> RunnableQiskitFunction | None:
        return self._functions.get(title)

    # running
    def run(
        self,
        program: QiskitFunction | str,
        arguments: dict[str, Any] | None = None,
        config: Configuration | None = None,
        provider: str | None = None,
        *,
        function_size: str | None = None,
    ) -> Job:
        title = program if isinstance(program, str) else program.title
        function = self._functions.get(title)
        if function is None:
            raise QiskitServerlessException(
                f"function {title!r} not found; upload() it to the LocalClient first"
            )
        encoded = encode_arguments(arguments)
        job = _LocalJob(str(uuid.uuid4()), title, Path(tempfile.mkdtemp(prefix="qso-local-")))
        (job.folder / "arguments.json").write_text(encoded)
        env = {
            "ARGUMENTS_PATH": str(job.folder / "arguments.json"),
            "RESULTS_PATH": str(job.folder / "results" / "result.json"),
            "DATA_PATH": str(job.folder / "data"),
            "QSO_SOURCE_DIR": str(self._sources[title]),
            "QSO_ENTRYPOINT": function.entrypoint or "main.py",
            "QSO_RUNTIME_DIR": str(job.folder / "runtime"),
            "ENV_JOB_ID_GATEWAY": job.job_id,
            "PYTHONUNBUFFERED": "1",
        }
        (job.folder / "data").mkdir()
        job.process = subprocess.Popen(
            [sys.executable, "-m", "qiskit_serverless_operator.runtime"],
            env={
                **os.environ,
                **env,
                "PYTHONPATH": os.pathsep.join(
                    [str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")]
                ),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        job.status = "RUNNING"
        self._jobs[job.job_id] = job
        threading.Thread(target=self._follow, args=(job,), daemon=True).start()
        return Job(job.job_id, job_service=self)

    def _follow(self, job: _LocalJob) -> None:
        assert job.process is not None and job.process.stdout is not None
        for line in job.process.stdout:
            with self._lock:
                job.output.append(line)
        code = job.process.wait()
        with self._lock:
            job.status = "CANCELED" if job.stopped else ("DONE" if code == 0 else "ERROR")

    def validate_arguments(
        self, title: str, arguments: dict[str, Any] | None = None, provider: str | None = None
    ) -> dict:
        encode_arguments(arguments)
        return {"valid": True}

    # jobs
    def _job(self, job_id: str) -> _LocalJob:
        if job_id not in self._jobs:
            raise QiskitServerlessException(f"no job {job_id}")
        return self._jobs[job_id]

    def jobs(self, function: QiskitFunction | None = None, **kwargs: Any) -> list[Job]:
        selected = [
            j for j in self._jobs.values() if function is None or j.function == function.title
        ]
        return [Job(j.job_id, job_service=self) for j in reversed(selected)]

    def job(self, job_id: str) -> Job | None:
        return Job(job_id, job_service=self) if job_id in self._jobs else None

    def status(self, job_id: str) -> str:
        return self._job(job_id).status

    def stop(self, job_id: str, service: Any = None) -> str:
        job = self._job(job_id)
        if job.status in ("DONE", "ERROR", "CANCELED"):
            return f"Job is already {job.status}."
        job.stopped = True
        if job.process is not None:
            job.process.terminate()
        return STOPPED

    def result(self, job_id: str) -> Any:
        job = self._job(job_id)
        if job.status == "ERROR":
            return "".join(job.output[-10:])
        path = job.folder / "results" / "result.json"
        return path.read_text() if path.exists() else "{}"

    def logs(self, job_id: str) -> str:
        with self._lock:
            text = "".join(self._job(job_id).output)
        return text or NO_LOGS

    def provider_logs(self, job_id: str) -> str:
        return self.logs(job_id)

    def filtered_logs(self, job_id: str, **kwargs: Any) -> str:
        include, exclude = kwargs.get("include"), kwargs.get("exclude")
        return "\n".join(
            line
            for line in self.logs(job_id).splitlines()
            if (not include or re.search(include, line))
            and (not exclude or not re.search(exclude, line))
        )

    def runtime_jobs(self, job_id: str, runtime_session: str | None = None) -> list[str]:
        return []

    def runtime_sessions(self, job_id: str) -> list[str]:
        return []

    def events(self, job_id: str, **kwargs: Any) -> list:
        return []
