"""The Qiskit Serverless walkthrough, on the Kubernetes cluster in your kubeconfig.

    python examples/walkthrough.py            # through our SDK (kubeconfig)
    python examples/walkthrough.py --rest     # through qiskit_serverless.ServerlessClient
                                              # and the REST gateway: QSO_GATEWAY_HOST,
                                              # QSO_GATEWAY_TOKEN, QSO_NAMESPACE
    (./scripts/walkthrough sets everything up and runs both)

Each step prints what IBM's documentation shows for it. Offline, ``ibm_kyoto`` is served by
qiskit_ibm_runtime's fake_kyoto; with QISKIT_IBM_TOKEN set, the least busy real backend.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from qiskit.circuit.random import random_circuit
from qiskit_serverless import QiskitFunction

from qiskit_serverless_operator import QiskitServerless

# qiskit_serverless marks list()/get()/get_jobs()/stop() deprecated; IBM's guide uses them.
warnings.filterwarnings("ignore", category=DeprecationWarning, module="qiskit_serverless")

FUNCTION_DIR = Path(__file__).resolve().parent / "functions" / "transpile_remote_serverless"
TERMINAL = ("DONE", "ERROR", "CANCELED")


def step(title: str) -> float:
    print(f"\n# {title}", flush=True)
    return time.monotonic()


def backend_name() -> str:
    if os.environ.get("QISKIT_IBM_TOKEN"):
        from qiskit_ibm_runtime import QiskitRuntimeService

        return QiskitRuntimeService().least_busy(operational=True, simulator=False).name
    return "ibm_kyoto"


def watch(job, timeout: float = 900, name: str = "job", seen: list[str] | None = None) -> list[str]:
    """Print each status as it changes, until the job ends; return the sequence seen."""
    seen = list(seen or [])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = job.status()
        if not seen or seen[-1] != status:
            seen.append(status)
            print(f">>> {name}.status()\n'{status}'", flush=True)
        if status in TERMINAL:
            return seen
        time.sleep(0.5)
    raise TimeoutError(f"job {job.job_id} did not finish in {timeout:.0f} s: {seen}")


def connect_rest(host: str, token: str, namespace: str):
    """Unchanged Qiskit Serverless client code, pointed at the REST gateway: the token is
    any the cluster accepts (a ServiceAccount's), the instance is the namespace."""
    import logging

    from qiskit_serverless import ServerlessClient

    # stop() first tries to make a QiskitRuntimeService of the token (to cancel the job's
    # Qiskit Runtime jobs) and warns that it cannot: an IBM Quantum token is not ours.
    warnings.filterwarnings("ignore", message="No QiskitRuntimeService", category=UserWarning)
    logging.getLogger("qiskit_ibm_runtime").setLevel(logging.ERROR)

    return ServerlessClient(host=host, token=token, instance=namespace)


def main(
    count: int = 30,
    seconds_per_circuit_for_stop: float = 2.0,
    namespace: str | None = None,
    rest: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """``rest``: (gateway URL, token) to go through qiskit_serverless.ServerlessClient."""
    record: dict[str, Any] = {"timings": {}}
    if rest is None:
        t = step("Connect (kubeconfig or in-cluster config; namespace from the context)")
        serverless = QiskitServerless(namespace)
        print(f">>> serverless = QiskitServerless()\n{serverless!r}")
    else:
        t = step("Connect to the REST gateway with qiskit_serverless' own client")
        serverless = connect_rest(rest[0], rest[1], namespace or "default")
        print(
            f">>> serverless = ServerlessClient(host={rest[0]!r}, token=..., "
            f"instance={namespace or 'default'!r})\n{serverless!r}"
        )
    record["timings"]["connect"] = time.monotonic() - t

    t = step("Upload the function (a provider does this once)")
    uploaded = serverless.upload(
        QiskitFunction(
            title="transpile_remote_serverless",
            entrypoint="transpile_remote.py",
            working_dir=str(FUNCTION_DIR),
        )
    )
    print(f">>> serverless.upload(...)\n{uploaded}")
    record["timings"]["upload"] = time.monotonic() - t

    t = step("List functions and get one")
    functions = serverless.list()
    print(f">>> serverless.list()\n{functions}")
    function = serverless.get("transpile_remote_serverless")
    print(f">>> serverless.get('transpile_remote_serverless')\n{function}")
    record["functions"] = [str(f) for f in functions]
    record["timings"]["list_get"] = time.monotonic() - t

    t = step(f"Run it on {count} random circuits")
    circuits = [random_circuit(4, 4, measure=True, seed=seed) for seed in range(count)]
    backend = backend_name()
    job = function.run(circuits=circuits, backend=backend, optimization_level=3)
    # At once: a job on an idle cluster is admitted within a second.
    first = job.status()
    print(
        f">>> job = function.run(circuits=circuits, backend={backend!r}, "
        f"optimization_level=3)\n>>> job.job_id\n'{job.job_id}'\n>>> job.status()\n'{first}'"
    )
    record["job_id"] = job.job_id
    record["logs_before"] = job.logs()
    print(f">>> job.logs()\n'{record['logs_before']}'")
    record["timings"]["submit"] = time.monotonic() - t

    t = step("Watch it run")
    record["statuses"] = watch(job, seen=[first])
    record["timings"]["run"] = time.monotonic() - t

    t = step("Logs and result")
    record["logs"] = job.logs()
    print(f">>> print(job.logs())\n{record['logs']}")
    result = job.result()
    record["result"] = result
    circuits_out = result["transpiled_circuits"]
    print(
        f">>> result = job.result()\n>>> len(result['transpiled_circuits'])\n"
        f"{len(circuits_out)}\n>>> result['transpiled_circuits'][0].num_qubits\n"
        f"{circuits_out[0].num_qubits}"
    )
    record["timings"]["result"] = time.monotonic() - t

    t = step("Stop a second, longer job while it runs")
    slow = function.run(
        circuits=circuits,
        backend=backend,
        optimization_level=3,
        seconds_per_circuit=seconds_per_circuit_for_stop,
    )
    deadline = time.monotonic() + 600
    while not slow.status().startswith("RUNNING") and time.monotonic() < deadline:
        time.sleep(0.5)
    record["stop_status_before"] = slow.status()
    record["stop_message"] = slow.stop()
    print(
        f">>> job2.status()\n'{record['stop_status_before']}'\n>>> job2.stop()\n"
        f"'{record['stop_message']}'"
    )
    record["stop_statuses"] = watch(slow, timeout=120, name="job2")
    record["timings"]["stop"] = time.monotonic() - t

    t = step("List jobs, newest first")
    jobs = serverless.get_jobs()
    print(f">>> serverless.get_jobs()\n{jobs[:5]}")
    record["jobs"] = [j.job_id for j in jobs]
    record["slow_job_id"] = slow.job_id
    record["timings"]["jobs"] = time.monotonic() - t

    print("\n# Wall time per step (s)")
    for name, seconds in record["timings"].items():
        print(f"{name:<10} {seconds:7.1f}")
    return record


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rest",
        action="store_true",
        help="go through qiskit_serverless.ServerlessClient and the REST gateway",
    )
    args = parser.parse_args()
    gateway = None
    if args.rest:
        missing = [n for n in ("QSO_GATEWAY_HOST", "QSO_GATEWAY_TOKEN") if not os.environ.get(n)]
        if missing:
            sys.exit(f"--rest needs {', '.join(missing)} (./scripts/walkthrough sets them)")
        gateway = (os.environ["QSO_GATEWAY_HOST"], os.environ["QSO_GATEWAY_TOKEN"])
    outcome = main(namespace=os.environ.get("QSO_NAMESPACE") or None, rest=gateway)
    sys.exit(0 if outcome["statuses"][-1] == "DONE" else 1)
