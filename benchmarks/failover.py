"""Standby takeover on the local cluster, printed as a table.

    .venv/bin/python -m tests.cluster up
    .venv/bin/python benchmarks/failover.py [--kills 10]

The in-cluster install runs two operator replicas (kopf peering: the live one with the
highest priority acts). Each round kills the active replica for good (SIGKILL of its
process, its pod force-deleted: no goodbye to the peering) and makes a job at once; the
time until the job is admitted, and by which replica, is recorded. The bound to compare
with is the peering lifetime (QSO_PEERING_LIFETIME_SECONDS, 10 s in manifests/base): the
standby acts once the dead peer's last keep-alive is that old, plus a second or two of
resuming its watches.
"""

from __future__ import annotations

import argparse

from _in_cluster import in_cluster

from tests.failover import PROGRAM, takeover
from tests.serverless import custom, make_function, wait_function_phase


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    with in_cluster("failover") as (cluster, api_client, namespace):
        api = custom(api_client)
        make_function(api, namespace, "quick", {"main.py": PROGRAM})
        wait_function_phase(api, namespace, "quick", "Ready", timeout=300)
        rounds = []
        for i in range(args.kills):
            t = takeover(cluster, api, namespace, "quick")
            rounds.append(t)
            print(f"kill {i + 1}: {t.killed} -> admitted by {t.admitted_by} in {t.seconds:.1f} s")
    seconds = sorted(t.seconds for t in rounds)
    other = sum(t.admitted_by not in (None, t.killed) for t in rounds)
    print()
    print(f"{'measure':<40}  value")
    print("-" * 56)
    print(f"{'kills of the active replica':<40}  {len(rounds)}")
    print(f"{'admitted by another replica':<40}  {other}")
    print(f"{'kill -> new job admitted, p50 (s)':<40}  {seconds[len(seconds) // 2]:.1f}")
    print(f"{'kill -> new job admitted, max (s)':<40}  {seconds[-1]:.1f}")
    print(f"{'min (s)':<40}  {seconds[0]:.1f}")
    return 0 if other == len(rounds) else 1


if __name__ == "__main__":
    raise SystemExit(main())
