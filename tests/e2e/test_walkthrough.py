"""The walkthrough from DESIGN.md, end to end on the cluster, through the SDK."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from qiskit import QuantumCircuit

from tests.kube import REPO_ROOT

PHASE_RANK = {"QUEUED": 0, "INITIALIZING": 1, "RUNNING": 2, "DONE": 3}


def load_walkthrough():
    spec = importlib.util.spec_from_file_location(
        "walkthrough", REPO_ROOT / "examples" / "walkthrough.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["walkthrough"] = module
    spec.loader.exec_module(module)
    return module


def check_walkthrough_record(record: dict[str, Any]) -> None:
    """What examples/walkthrough.py must have seen (DESIGN.md's walkthrough contract)."""
    assert record["functions"] == ["QiskitFunction(transpile_remote_serverless)"]
    statuses = record["statuses"]
    assert statuses[0] == "QUEUED" and statuses[-1] == "DONE", statuses
    ranks = [PHASE_RANK[s.split(":")[0]] for s in statuses]
    assert ranks == sorted(ranks), statuses
    assert "RUNNING: MAPPING" in statuses or "RUNNING" in statuses

    assert record["logs_before"] == "No logs yet."
    logs = record["logs"]
    assert "Transpiling 30 circuits for fake_kyoto at level 3" in logs
    assert "transpiled 30/30" in logs and logs.rstrip().endswith("Done")

    circuits = record["result"]["transpiled_circuits"]
    assert len(circuits) == 30
    assert all(isinstance(qc, QuantumCircuit) for qc in circuits)
    assert {qc.num_qubits for qc in circuits} == {127}

    assert record["stop_status_before"].startswith("RUNNING")
    assert record["stop_message"] == "Job has been stopped."
    assert record["stop_statuses"][-1] == "CANCELED"

    assert record["jobs"][:2] == [record["slow_job_id"], record["job_id"]]


def test_walkthrough(cluster: dict, namespace: str, operator, monkeypatch) -> None:
    monkeypatch.setenv("KUBECONFIG", cluster["kubeconfig"])
    monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)
    check_walkthrough_record(load_walkthrough().main(namespace=namespace))
