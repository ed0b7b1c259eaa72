"""The in-cluster install, end to end: `kubectl apply -k manifests/overlays/local` on the real
cluster, two operator replicas Ready, the walkthrough against them (no operator started by the
test), with the active replica killed in the middle of it (the install: conftest.py)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from tests.cluster.install import DEPLOYMENT, NAMESPACE
from tests.e2e.test_walkthrough import check_walkthrough_record, load_walkthrough
from tests.in_cluster import active_replica, operator_pods, ready
from tests.kube import kubectl, run_examples, wait_until


def test_operator_pods_are_ready_non_root_and_read_only(
    cluster: dict[str, Any], in_cluster: list[str]
) -> None:
    # The tests before this one SIGKILL replicas (chaos, failover): one may still be in the
    # kubelet's restart back-off, so wait for the install's steady state, within a bound.
    pods = wait_until(
        lambda: (
            (found := operator_pods(cluster))
            and len(found) == 2
            and all(map(ready, found))
            and found
        ),
        timeout=180,
        what="both operator replicas Ready",
    )
    for pod in pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        (container,) = spec["containers"]
        assert container["image"] == cluster["images"]["operator"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        # What the process really gets, not only what the spec asks for.
        probe = kubectl(
            cluster,
            "-n",
            NAMESPACE,
            "exec",
            pod["metadata"]["name"],
            "--",
            "python3",
            "-c",
            "import os; print(os.getuid(), os.getgid()); open('/probe', 'w')",
            check=False,
        )
        assert probe.stdout.split() == ["1000", "1000"], probe
        assert "Read-only file system" in probe.stderr, probe.stderr
    # The PodDisruptionBudget sees both replicas and allows one voluntary disruption.
    pdb = json.loads(
        kubectl(cluster, "-n", NAMESPACE, "get", "pdb", DEPLOYMENT, "-o", "json").stdout
    )
    assert pdb["status"]["currentHealthy"] == 2 and pdb["status"]["disruptionsAllowed"] == 1


def test_kubectl_apply_examples_on_the_fresh_install(
    cluster: dict[str, Any], namespace: str, in_cluster: list[str]
) -> None:
    in_cluster.append(namespace)
    run_examples(cluster, namespace)
    table = kubectl(cluster, "-n", namespace, "get", "qiskit").stdout
    assert "qiskitfunction.serverless.qiskit.org/hello" in table
    assert "serverlessjob.serverless.qiskit.org/hello" in table
    job_line = next(line for line in table.splitlines() if line.startswith("serverlessjob"))
    assert "DONE" in job_line.split() and "hello" in job_line.split()
    explain = kubectl(cluster, "explain", "serverlessjobs.spec.function").stdout
    assert "GROUP:      serverless.qiskit.org" in explain
    assert "title" in explain.lower()


def test_walkthrough_against_the_in_cluster_operator_survives_a_killed_replica(
    cluster: dict[str, Any], namespace: str, in_cluster: list[str], monkeypatch
) -> None:
    in_cluster.append(namespace)
    monkeypatch.setenv("KUBECONFIG", cluster["kubeconfig"])
    monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)
    killed: dict[str, Any] = {}

    def kill_active_replica_once_a_job_runs() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            out = kubectl(cluster, "-n", namespace, "get", "sj", "-o", "json", check=False)
            phases = [
                (item.get("status") or {}).get("phase")
                for item in (json.loads(out.stdout)["items"] if out.returncode == 0 else [])
            ]
            if "RUNNING" in phases or "INITIALIZING" in phases:
                victim = active_replica(cluster)
                # SIGKILL, no goodbye: the peering record stays until its lifetime ends.
                kubectl(
                    cluster,
                    "-n",
                    NAMESPACE,
                    "delete",
                    "pod",
                    victim,
                    "--grace-period=0",
                    "--force",
                    check=False,
                )
                killed.update(pod=victim, phases=phases, at=time.monotonic())
                return
            time.sleep(0.3)

    killer = threading.Thread(target=kill_active_replica_once_a_job_runs, daemon=True)
    killer.start()
    record = load_walkthrough().main(namespace=namespace)
    killer.join(timeout=10)

    assert killed.get("pod"), "the active replica was never killed"
    check_walkthrough_record(record)
    # Another replica (the standby, or the one the Deployment made) acts now.
    successor = wait_until(
        lambda: (a := active_replica(cluster)) and a != killed["pod"] and a,
        timeout=120,
        what="a new active replica",
    )
    assert successor != killed["pod"]
    # Each ServerlessJob ran exactly one batch Job (no duplicate after the takeover).
    jobs = json.loads(kubectl(cluster, "-n", namespace, "get", "jobs", "-o", "json").stdout)
    owners = [
        ref["name"] for job in jobs["items"] for ref in job["metadata"].get("ownerReferences", [])
    ]
    assert len(owners) == len(set(owners)), owners
