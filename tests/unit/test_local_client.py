"""Local mode and IBM's program conventions, without a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from qiskit import QuantumCircuit
from qiskit.circuit.random import random_circuit
from qiskit_serverless import QiskitFunction
from qiskit_serverless.serializers.program_serializers import (
    QiskitObjectsDecoder,
    QiskitObjectsEncoder,
)

from qiskit_serverless_operator import LocalClient

EXAMPLE = (
    Path(__file__).resolve().parents[2] / "examples" / "functions" / ("transpile_remote_serverless")
)


def _wait(job, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while not job.in_terminal_state() and time.monotonic() < deadline:
        time.sleep(0.2)
    return job.status()


def test_the_example_runs_unchanged_under_plain_qiskit_serverless_conventions(tmp_path):
    """No wrapper, no operator: only the env contract IBM's runner sets."""
    circuits = [random_circuit(3, 3, measure=True, seed=s) for s in range(3)]
    args = tmp_path / "arguments.json"
    args.write_text(
        json.dumps(
            {"circuits": circuits, "backend": "ibm_kyoto", "optimization_level": 1},
            cls=QiskitObjectsEncoder,
        )
    )
    env = {
        **os.environ,
        "ARGUMENTS_PATH": str(args),
        "RESULTS_PATH": str(tmp_path / "out" / "result.json"),
    }
    env.pop("ENV_JOB_GATEWAY_TOKEN", None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "transpile_remote.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Transpiling 3 circuits for fake_kyoto at level 1" in done.stdout
    result = json.loads((tmp_path / "out" / "result.json").read_text(), cls=QiskitObjectsDecoder)
    assert [qc.num_qubits for qc in result["transpiled_circuits"]] == [127] * 3


def test_local_client_runs_the_walkthrough_calls(tmp_path):
    serverless = LocalClient()
    serverless.upload(
        QiskitFunction(
            title="transpile_remote_serverless",
            entrypoint="transpile_remote.py",
            working_dir=str(EXAMPLE),
        )
    )
    assert [str(f) for f in serverless.functions()] == [
        "QiskitFunction(transpile_remote_serverless)"
    ]
    fn = serverless.function("transpile_remote_serverless")
    circuits = [random_circuit(3, 3, measure=True, seed=s) for s in range(2)]
    job = fn.run(circuits=circuits, backend="ibm_kyoto", optimization_level=1)
    assert _wait(job) == "DONE", job.logs()
    result = job.result()
    assert all(isinstance(qc, QuantumCircuit) for qc in result["transpiled_circuits"])
    assert "transpiled 2/2" in job.logs()


def test_local_client_error_and_stop(tmp_path):
    (tmp_path / "bad.py").write_text("raise RuntimeError('broken on purpose')\n")
    (tmp_path / "slow.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    serverless = LocalClient()
    bad = serverless.upload(
        QiskitFunction(title="bad", entrypoint="bad.py", working_dir=str(tmp_path))
    )
    job = bad.run()
    assert _wait(job) == "ERROR"
    assert "RuntimeError: broken on purpose" in job.logs()
    slow = serverless.upload(
        QiskitFunction(title="slow", entrypoint="slow.py", working_dir=str(tmp_path))
    )
    running = slow.run()
    deadline = time.monotonic() + 30
    while "started" not in running.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running.cancel() == "Job has been stopped."
    assert _wait(running) == "CANCELED"
