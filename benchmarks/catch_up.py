"""What the safety net's check for missed watch events costs with many jobs present.

    .venv/bin/python -m tests.cluster up
    .venv/bin/python benchmarks/catch_up.py [--jobs 10000] [--rounds 3]

Makes N ServerlessJobs in a namespace of its own (no operator acts on them), fills a job
store from a full listing as the operator's is, then runs the catch-up (a metadata-only,
paged listing of the jobs compared with the store: `scheduler._catch_up`) a few times in
this process and prints its wall and CPU seconds and the RSS it adds. The operator runs it
every 30 s while no ServerlessJob event has come for 10 s; a full listing of the same jobs
(what kopf and the store's resync do) is printed next to it as the reference. The namespace
is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qiskit_serverless_operator import constants as c  # noqa: E402
from qiskit_serverless_operator import memory  # noqa: E402
from qiskit_serverless_operator.controller import scheduler  # noqa: E402
from qiskit_serverless_operator.controller.context import Context, set_context  # noqa: E402
from qiskit_serverless_operator.controller.jobstore import JobStore  # noqa: E402
from qiskit_serverless_operator.kube import Kube  # noqa: E402
from tests.cluster.config import Paths  # noqa: E402
from tests.cluster.operator_local import apply_api  # noqa: E402


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def make_jobs(api: client.CustomObjectsApi, namespace: str, count: int) -> float:
    def make(i: int) -> None:
        body = {
            "apiVersion": c.API_VERSION,
            "kind": c.JOB_KIND,
            "metadata": {"name": f"job-{i:05d}"},
            "spec": {
                "function": "f",
                "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}},
            },
        }
        api.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, body)

    began = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(make, range(count)))
    return time.monotonic() - began


async def measure(namespace: str, rounds: int) -> list[tuple[str, float, float, float]]:
    # Only its API access is used by the listing and the catch-up.
    set_context(Context(config=None, kube=Kube(), store=None))  # type: ignore[arg-type]
    scheduler.watched_namespaces = (namespace,)
    scheduler.store = JobStore()
    ctx = scheduler.get_context()

    async def listing() -> None:
        await scheduler.sync_store(ctx)

    async def catch_up() -> None:
        missed = await scheduler._catch_up(ctx)
        assert missed == [], missed  # nothing changed: nothing may be reported missed

    rows = []
    for label, step in (("full listing", listing), ("catch-up", catch_up)):
        for i in range(rounds):
            before, wall, cpu = rss_mib(), time.perf_counter(), time.process_time()
            await step()
            rows.append(
                (
                    f"{label} {i + 1}",
                    time.perf_counter() - wall,
                    time.process_time() - cpu,
                    rss_mib() - before,
                )
            )
            memory.release()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    paths = Paths.from_env()
    os.environ["KUBECONFIG"] = str(paths.kubeconfig)  # lightkube's, like the operator's
    apply_api(paths)
    api_client = config.new_client_from_config(config_file=str(paths.kubeconfig))
    core = client.CoreV1Api(api_client)
    namespace = f"bench-catch-up-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        created = make_jobs(client.CustomObjectsApi(api_client), namespace, args.jobs)
        rows = asyncio.run(measure(namespace, args.rounds))
    finally:
        core.delete_namespace(namespace)
    print(f"\n{args.jobs} ServerlessJobs present (created in {created:.1f} s)")
    print(f"{'measure':<20} {'wall (s)':>9} {'CPU (s)':>9} {'RSS added (MiB)':>16}")
    print("-" * 57)
    for label, wall, cpu, rss in rows:
        print(f"{label:<20} {wall:>9.2f} {cpu:>9.2f} {rss:>16.1f}")


if __name__ == "__main__":
    main()
