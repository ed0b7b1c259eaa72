"""The README's first install, on a cluster that never had our CRDs.

Every other test cluster already holds the CRDs (the session's `crds` fixture), which is how
an install that sent a CRD and an object of it in one `kubectl apply -k` passed every test
and failed a new user's first `./scripts/walkthrough`. This test takes the API away first
(`python -m tests.cluster uninstall --api`: CRDs, their objects, the admission policy), then
installs exactly as the walkthrough does (`python -m tests.cluster install`, i.e.
`kubectl apply --server-side -k manifests/overlays/local`) and runs a job. It runs first of
the e2e tier (pytest collects this folder before the others), while nothing is in flight.
"""

from __future__ import annotations

import json
from typing import Any

from tests.in_cluster import PEERING, operator_pods
from tests.kube import (
    OUR_CRDS,
    delete_jobs_and_functions,
    harness,
    kubectl,
    run_examples,
    served_crds,
    session_operator_paused,
    wait_until,
)


def test_first_install_on_a_cluster_without_our_crds_runs_a_job(
    cluster: dict[str, Any], crds: None, namespace: str
) -> None:
    with session_operator_paused():
        removed = harness("uninstall", "--api")
        assert removed.returncode == 0, removed.stderr
        assert not served_crds(cluster) & set(OUR_CRDS)
        policies = kubectl(cluster, "get", "validatingadmissionpolicies", "-o", "name").stdout
        assert "serverlessjob-submitter" not in policies

        try:
            installed = harness("install")
            assert installed.returncode == 0, installed.stderr + installed.stdout
            assert set(OUR_CRDS) <= served_crds(cluster)

            # The operator made its peering object, and both replicas take part in it.
            def both_peers() -> dict[str, Any] | None:
                out = kubectl(cluster, "get", "clusterkopfpeering", PEERING, "-o", "json")
                peering = json.loads(out.stdout)
                peers = set(peering.get("status") or {})
                pods = {pod["metadata"]["name"] for pod in operator_pods(cluster)}
                return peering if len(pods) == 2 and pods <= peers else None

            peering = wait_until(both_peers, timeout=120, what="two replicas in the peering")
            labels = peering["metadata"].get("labels") or {}
            assert labels.get("app.kubernetes.io/managed-by") == "qiskit-serverless-operator"

            sj = run_examples(cluster, namespace)
            assert sj["status"]["result"]["key"], sj["status"]
        finally:
            delete_jobs_and_functions(cluster, namespace)
            harness("uninstall")
