"""Two operator replicas never both act: the lower priority one stands by, then takes over."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from tests.kube import OperatorProcess, wait_until
from tests.serverless import custom, make_function, wait_function_phase


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_standby_replica_pauses_and_takes_over_when_the_active_one_dies(
    api_client: client.ApiClient, cluster: dict, namespace: str, operator, tmp_path: Path
) -> None:
    api = custom(api_client)
    standby = OperatorProcess(
        cluster, tmp_path / "standby.log", priority=10, ports=(8001, 8081, 9091)
    )
    standby.start()
    try:
        wait_until(
            lambda: "Pausing operations in favour of" in _log(standby.log_path),
            timeout=30,
            what="the standby replica to pause",
        )
        make_function(api, namespace, "while-paused", {"main.py": "print(1)"})
        wait_function_phase(api, namespace, "while-paused", "Ready")
        # The active replica did that; the standby did not touch the function.
        assert "while-paused" not in _log(standby.log_path)

        operator.kill()
        wait_until(
            lambda: "Resuming operations after the pause" in _log(standby.log_path),
            timeout=60,
            what="the standby replica to take over",
        )
        make_function(api, namespace, "after-takeover", {"main.py": "print(2)"})
        wait_function_phase(api, namespace, "after-takeover", "Ready")
        assert "after-takeover" in _log(standby.log_path)
    finally:
        if operator.proc is None or operator.proc.poll() is not None:
            operator.start()
        standby.stop()
