"""The operator's API requests per job during a burst of ServerlessJobs, by kind.

    .venv/bin/python -m tests.cluster up
    .venv/bin/python benchmarks/api_requests.py [--jobs 60]

Runs its own operator (highest peering priority; the operator image's packages) with
benchmarks/request_counter/ first on its PYTHONPATH, whose sitecustomize counts every
request the operator makes (the reconciles' and kopf's), submits a burst of N jobs of the
tiny program of queue_burst.py, waits until all are finished and prints the requests per
job, most first (a status write with the fields it sets). Each request is API server and
etcd work a bare pod does not cause; the namespace is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import queue_burst as qb  # noqa: E402

from tests.cluster.config import Paths  # noqa: E402
from tests.cluster.operator_local import apply_api  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=60)
    args = parser.parse_args()
    info = json.loads(Path("/var/lib/qso-cluster/cluster.json").read_text())
    config.load_kube_config(info["kubeconfig"])
    api_client = client.ApiClient()
    apply_api(Paths.from_env())
    out = Path(tempfile.mkdtemp()) / "requests.json"
    counter = REPO / "benchmarks" / "request_counter"
    operator = qb.benchmark_operator(
        info,
        "operator-benchmark-requests.log",
        (str(counter),),
        QSO_FINISHED_POD_TTL_SECONDS="5",
        QSO_COUNT_OUT=str(out),
    )
    operator.start()
    assert operator.proc is not None
    try:
        time.sleep(5)  # start-up's own requests are not the jobs'
        before = json.loads(out.read_text()) if out.exists() else {}
        jobs = qb.burst_jobs(api_client, args.jobs, qb.ProcWatch(operator.proc.pid))
        time.sleep(5)
        after = json.loads(out.read_text())
    finally:
        while qb.CREATED:
            qb.remove_namespace(api_client, qb.CREATED.pop(), operator_running=True)
        operator.stop()
    per_job = {k: (after.get(k, 0) - before.get(k, 0)) / args.jobs for k in after}
    shown = sorted(((v, k) for k, v in per_job.items() if v >= 0.05), reverse=True)
    print(f"\nThe operator's API requests per job, burst of {args.jobs} ({jobs['done']} DONE)")
    print(f"{'per job':>8}  request")
    print("-" * 80)
    for value, key in shown:
        print(f"{value:>8.2f}  {key}")
    print("-" * 80)
    # "KEY -> 409" lines are answers to requests already counted under KEY.
    made = [v for v, k in shown if not k.startswith("kopf WATCH") and " -> " not in k]
    print(f"{sum(made):>8.2f}  in all")
    print(f"operator CPU per job: {jobs['cpu'] / args.jobs:.3f} s")
    return 0 if jobs["done"] == args.jobs else 1


if __name__ == "__main__":
    sys.exit(main())
