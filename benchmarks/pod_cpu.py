"""What a job's pod costs in CPU against a bare pod of the same image, one at a time.

    .venv/bin/python -m tests.cluster up
    .venv/bin/python benchmarks/pod_cpu.py [--repeats 6]

Runs one ServerlessJob of queue_burst.py's tiny program, then one bare pod of the same image
and requests (``python3 -c "import qiskit_serverless"``), alternating, on an idle cluster,
while a thread samples every pod's cgroup (cpuacct, cgroup v1) every 50 ms and keeps each
pod's last figure: the CPU seconds each pod used, its own processes only (the wrapper, the
program, the uploads; not the operator's or the API server's work). Prints both and the
difference. The namespace is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import queue_burst as qb  # noqa: E402

from tests.cluster.config import Paths  # noqa: E402
from tests.cluster.operator_local import apply_api  # noqa: E402

PODS = Path("/sys/fs/cgroup/cpuacct/kubepods")


class PodCpu:
    """Each pod's CPU seconds (by pod UID) as last seen: a pod's cgroup goes with the pod."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            for folder in [*PODS.glob("pod*"), *PODS.glob("*/pod*")]:
                try:
                    usage = int((folder / "cpuacct.usage").read_text()) / 1e9
                except OSError:
                    continue
                self.last[folder.name.removeprefix("pod")] = usage

    def stop(self) -> None:
        self._stop.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    if not PODS.exists():
        print(f"{PODS} not found: this benchmark reads cgroup v1's cpuacct", file=sys.stderr)
        return 1
    info = json.loads(Path("/var/lib/qso-cluster/cluster.json").read_text())
    config.load_kube_config(info["kubeconfig"])
    api_client = client.ApiClient()
    core = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    apply_api(Paths.from_env())
    operator = qb.benchmark_operator(
        info, "operator-benchmark-podcpu.log", QSO_FINISHED_POD_TTL_SECONDS="30"
    )
    operator.start()
    sampler = PodCpu()
    jobs: list[float] = []
    pods: list[float] = []
    try:
        namespace = qb.new_namespace(core, "podcpu")
        qb.make_function(custom, namespace)
        for i in range(args.repeats):
            name = f"one-{i:03d}"
            custom.create_namespaced_custom_object(
                qb.c.GROUP, qb.c.VERSION, namespace, qb.c.JOB_PLURAL, qb.job_body(name)
            )
            qb._poll(
                lambda n=name: qb.job_phase(custom, namespace, n),
                lambda phase: phase in ("DONE", "ERROR", "CANCELED"),
            )
            selector = f"{qb.c.LABEL_JOB}={name}"
            (pod,) = core.list_namespaced_pod(namespace, label_selector=selector).items
            bare = f"pod-{i:03d}"
            image = info["images"]["runtime"]
            made = core.create_namespaced_pod(namespace, qb.bare_pod(bare, image))
            qb._poll(
                lambda n=bare: core.read_namespaced_pod(n, namespace).status.phase,
                lambda phase: phase in ("Succeeded", "Failed"),
            )
            time.sleep(0.5)  # the last sample after the container ended
            jobs.append(sampler.last[pod.metadata.uid])
            pods.append(sampler.last[made.metadata.uid])
    finally:
        sampler.stop()
        while qb.CREATED:
            qb.remove_namespace(api_client, qb.CREATED.pop(), operator_running=True)
        operator.stop()
    print(f"\nCPU seconds of each pod, one at a time on an idle cluster ({args.repeats} of each)")
    print(f"{'measure':<28} {'job pod':>10} {'bare pod':>10} {'extra':>8}")
    print("-" * 59)
    for label, pick in (("mean", statistics.fmean), ("median", statistics.median)):
        a, b = pick(jobs), pick(pods)
        print(f"{label:<28} {a:>10.3f} {b:>10.3f} {a - b:>8.3f}")
    print(f"{'each job pod':<28} {' '.join(f'{v:.2f}' for v in jobs)}")
    print(f"{'each bare pod':<28} {' '.join(f'{v:.2f}' for v in pods)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
