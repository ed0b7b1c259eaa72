"""Jobs under faults on the local cluster, printed as a table (docs/operator.md, "Under
faults", shows one run).

    .venv/bin/python -m tests.cluster up
    .venv/bin/python benchmarks/chaos.py [--jobs 200] [--kills 20] [--seed 7]

On the in-cluster install (two operator replicas): 200 jobs (half short, a fifth long, a
tenth each failing, stopped by the user, timing out) while, at random moments, the active
operator replica's process is SIGKILLed 20 times, the kube-apiserver is restarted twice,
object storage is down for 60 s, the kubelet is restarted once, and a running job's pod and
another's runtime Secret are deleted by hand. The run's namespace may run 20 jobs at once
(QSO_MAX_RUNNING_PER_NAMESPACE, set on the install for the run), so that a probe job made
after each fault in a namespace of its own measures the cluster's recovery rather than the
queue's length. The account and its rules: tests/chaos.py; the
same run, smaller, is tests/e2e/in_cluster/test_chaos.py. Exit status 1 if any job was lost,
doubled, stuck or ended other than its kind says.
"""

from __future__ import annotations

import argparse

from _in_cluster import in_cluster

from tests.chaos import Plan, run, table
from tests.cluster.install import DEPLOYMENT, NAMESPACE
from tests.failover import both_replicas_ready
from tests.kube import kubectl


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--namespace-limit", type=int, default=20)
    args = parser.parse_args()
    plan = Plan(
        jobs=args.jobs,
        operator_kills=args.kills,
        apiserver_restarts=2,
        s3_outage_seconds=60,
        kubelet_restarts=1,
        long_seconds=60,
        gap_seconds=(4.0, 15.0),
        seed=args.seed,
    )
    with in_cluster("chaos") as (cluster, api_client, namespace):
        # A namespace may run --namespace-limit jobs at once, as an admin would set it: the
        # probes (another namespace) then measure recovery, not a queue 200 jobs long.
        kubectl(
            cluster,
            "-n",
            NAMESPACE,
            "set",
            "env",
            f"deployment/{DEPLOYMENT}",
            f"QSO_MAX_RUNNING_PER_NAMESPACE={args.namespace_limit}",
        )
        kubectl(cluster, "-n", NAMESPACE, "rollout", "status", f"deployment/{DEPLOYMENT}")
        both_replicas_ready(cluster)
        report = run(cluster, api_client, namespace, plan)
    print()
    print(table(report, plan))
    clean = not (
        report.not_terminal
        or report.unexpected
        or report.duplicates
        or report.unreadable_results
        or report.unaccounted
    )
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
