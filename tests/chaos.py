"""A chaos run: many jobs of every kind while the operator, the API server, object storage
and the kubelet fail under them, and an account of what came of each job.

Used at two sizes: tests/e2e/in_cluster/test_chaos.py (small, in the suite) and
benchmarks/chaos.py (200 jobs, 20 operator kills). Both run against the in-cluster install
(two operator replicas), so "the operator dies" is a SIGKILL of the active replica's process.

The account: jobs submitted / terminal / DONE / ERROR (with reasons) / CANCELED, pods
created per job (from a watch of the namespace's pods: more than one is a duplicate, unless
the runtime failed to start the first one and the operator replaced it: status.startRetries),
results readable for every DONE job, the usage ledger holding every finished job, and for
each fault the time until the cluster admits a new job again (a probe job made right after
the fault ends).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from qiskit_serverless_operator import constants as c
from qiskit_serverless_operator.controller.jobspec import runtime_secret_name
from tests import faults
from tests.cluster.config import Paths
from tests.in_cluster import ready_replicas
from tests.kube import kubectl
from tests.serverless import (
    JobPodCounter,
    custom,
    make_function,
    read_object,
    wait_function_phase,
)

PROGRAM = """
import time, sys
from qiskit_serverless import get_arguments, save_result
args = get_arguments()
print("start", args["kind"], flush=True)
time.sleep(args["seconds"])
if args["kind"] == "fail":
    print("failing on purpose", flush=True)
    sys.exit(3)
save_result({"kind": args["kind"], "slept": args["seconds"]})
print("done", flush=True)
"""

# What each kind must end as (the ones sabotaged by hand are accounted apart).
EXPECTED = {
    "short": ("DONE", None),
    "long": ("DONE", None),
    "fail": ("ERROR", "ProgramFailed"),
    "stop": ("CANCELED", "StopRequested"),
    "timeout": ("ERROR", "Timeout"),
}
TERMINAL = {"DONE", "ERROR", "CANCELED"}


@dataclass
class Plan:
    jobs: int = 20
    operator_kills: int = 2
    apiserver_restarts: int = 1
    s3_outage_seconds: float = 15.0
    kubelet_restarts: int = 1
    delete_a_pod: bool = True
    delete_a_secret: bool = True
    long_seconds: float = 40.0
    gap_seconds: tuple[float, float] = (3.0, 8.0)
    seed: int = 7


@dataclass
class Report:
    submitted: int = 0
    phases: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    not_terminal: list[str] = field(default_factory=list)
    pods_per_job: Counter = field(default_factory=Counter)
    duplicates: list[str] = field(default_factory=list)
    start_retries: int = 0
    unreadable_results: list[str] = field(default_factory=list)
    unaccounted: list[str] = field(default_factory=list)
    # (fault, what else held at that moment or "", seconds until the probe got through)
    recoveries: list[tuple[str, str, float]] = field(default_factory=list)
    sabotaged: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _job_body(name: str, kind: str, seconds: float) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "function": "chaos",
        "arguments": {"inline": {"kind": kind, "seconds": seconds}},
        "resources": {"requests": {"cpu": "50m", "memory": "160Mi"}},
    }
    if kind == "timeout":
        spec["timeoutSeconds"] = 8
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.JOB_KIND,
        "metadata": {"name": name, "labels": {"chaos/kind": kind}},
        "spec": spec,
    }


def _kinds(plan: Plan, rng: random.Random) -> list[str]:
    """The mix, every kind in it from ten jobs on (and two long ones to sabotage), in a
    random order: half short, a fifth long, a tenth each failing, stopped, timing out."""
    cycle = ["long", "short", "fail", "short", "stop", "short", "timeout", "short", "long", "short"]
    kinds = [cycle[i % len(cycle)] for i in range(plan.jobs)]
    rng.shuffle(kinds)
    return kinds


def _get(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return api.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, name)
    except Exception:  # the API server is down for a moment: ask again later
        return None


def _retrying(action, attempts: int = 60):  # type: ignore[no-untyped-def]
    """Through an API server restart; a 404 or 409 on a retry means the first try landed."""
    for attempt in range(attempts):
        try:
            return action()
        except client.ApiException as exc:
            if attempt and exc.status in (404, 409):
                return None
            if attempt == attempts - 1:
                raise
            time.sleep(1)
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(1)
    return None


# What a probe job must reach to show the cluster works again after each fault: the operator
# and the API server admit it; the kubelet starts its pod; object storage keeps its result.
_PROBE_MILESTONE = {
    "operator": "admitted",
    "apiserver": "admitted",
    "kubelet": "RUNNING",
    "s3": "DONE",
}
_PAST_RUNNING = {"RUNNING", "DONE", "ERROR", "CANCELED"}


def _probe(
    api: client.CustomObjectsApi, namespace: str, what: str, report: Report, circumstance: str = ""
) -> None:
    """Right after a fault ends: how long until a new job gets as far as the fault hindered."""
    started = time.monotonic()
    name = f"probe-{what}-{uuid.uuid4().hex[:6]}"
    _retrying(
        lambda: api.create_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, _job_body(name, "short", 0.1)
        )
    )
    milestone = _PROBE_MILESTONE[what]
    while time.monotonic() - started < 300:
        status = (_get(api, namespace, name) or {}).get("status") or {}
        phase = status.get("phase")
        reached = {
            "admitted": bool(status.get("admittedAt")),
            "RUNNING": phase in _PAST_RUNNING,
            "DONE": phase in TERMINAL,
        }[milestone]
        if reached:
            if milestone == "DONE" and phase != "DONE":
                report.unexpected.append(f"{name}: {phase} {status.get('reason')}")
            report.recoveries.append((what, circumstance, time.monotonic() - started))
            return
        time.sleep(0.3)
    report.recoveries.append((what, circumstance, float("inf")))


def run(
    cluster: dict[str, Any],
    api_client: client.ApiClient,
    namespace: str,
    plan: Plan,
    log=print,  # type: ignore[no-untyped-def]
) -> Report:
    """The run, its jobs in ``namespace``; the probes in a namespace of their own (another
    user, so that fair sharing puts a probe ahead of the run's queue: it measures the
    cluster's recovery, not the queue's length), removed at the end."""
    core = client.CoreV1Api(api_client)
    probes = f"probe-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=probes)))
    try:
        return _run(cluster, api_client, namespace, probes, plan, log)
    finally:
        kubectl(
            cluster,
            "-n",
            probes,
            "delete",
            "sj,qf",
            "--all",
            "--wait",
            "--timeout=120s",
            check=False,
        )
        kubectl(cluster, "delete", "namespace", probes, "--wait=false", check=False)


def _run(
    cluster: dict[str, Any],
    api_client: client.ApiClient,
    namespace: str,
    probes: str,
    plan: Plan,
    log,  # type: ignore[no-untyped-def]
) -> Report:
    rng = random.Random(plan.seed)
    api, core = custom(api_client), client.CoreV1Api(api_client)
    paths = Paths.from_env()
    report = Report()
    for where in (namespace, probes):
        make_function(api, where, "chaos", {"main.py": PROGRAM})
    for where in (namespace, probes):
        wait_function_phase(api, where, "chaos", "Ready", timeout=300)
    counter = JobPodCounter(core, namespace)
    counter.start()
    started = time.monotonic()

    names: dict[str, str] = {}
    for i, kind in enumerate(_kinds(plan, rng)):
        # A stopped job is stopped once RUNNING: it runs long enough that the stop must win
        # even when no operator replica is up for minutes (a stop is never lost, only late).
        seconds = {
            "short": rng.uniform(1, 3),
            "long": plan.long_seconds,
            "fail": 1.0,
            "stop": 600.0,
        }.get(kind, 60.0)
        name = f"job-{i:04d}"
        api.create_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, _job_body(name, kind, seconds)
        )
        names[name] = kind
    report.submitted = len(names)
    log(f"submitted {len(names)} jobs")

    stop_pending = {n for n, k in names.items() if k == "stop"}
    finished = threading.Event()

    def phase_of(name: str) -> str | None:
        return ((_get(api, namespace, name) or {}).get("status") or {}).get("phase")

    def stopper() -> None:
        # Until every one is stopped or the run ends: with a namespace limit, the last
        # ones start late in a long run (a fixed budget once left them unstopped).
        while stop_pending and not finished.is_set():
            for name in sorted(stop_pending):
                if phase_of(name) == "RUNNING":
                    _retrying(
                        lambda name=name: api.patch_namespaced_custom_object(
                            c.GROUP,
                            c.VERSION,
                            namespace,
                            c.JOB_PLURAL,
                            name,
                            {"spec": {"stop": True}},
                        )
                    )
                    stop_pending.discard(name)
            time.sleep(1)

    stopping = threading.Thread(target=stopper, daemon=True)
    stopping.start()

    def sabotage(how: str) -> None:
        """By hand, as a careless admin would: a running long job's pod, or its runtime
        Secret (the one its pod mounts)."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            for name in sorted(n for n, k in names.items() if k == "long"):
                if name in report.sabotaged or phase_of(name) != "RUNNING":
                    continue
                if how == "pod":
                    listed = _retrying(
                        lambda name=name: core.list_namespaced_pod(
                            namespace, label_selector=f"{c.LABEL_JOB}={name}"
                        )
                    )
                    for pod in listed.items:
                        _retrying(
                            lambda pod=pod: core.delete_namespaced_pod(pod.metadata.name, namespace)
                        )
                else:
                    _retrying(
                        lambda name=name: core.delete_namespaced_secret(
                            runtime_secret_name(name), namespace
                        )
                    )
                report.sabotaged[name] = how
                log(f"deleted {name}'s {how} by hand")
                return
            time.sleep(0.5)
        log(f"no long job was running to delete its {how}")

    # The deletions by hand, at random moments while the faults happen.
    by_hand = (["pod"] if plan.delete_a_pod else []) + (["secret"] if plan.delete_a_secret else [])
    gaps = [rng.uniform(*plan.gap_seconds) for _ in by_hand]

    def vandal() -> None:
        for how, gap in zip(by_hand, gaps, strict=True):
            time.sleep(gap)
            sabotage(how)

    vandalism = threading.Thread(target=vandal, daemon=True)
    vandalism.start()

    # The faults, spread over the run, in a random order.
    events: list[str] = (
        ["operator"] * plan.operator_kills
        + ["apiserver"] * plan.apiserver_restarts
        + (["s3"] if plan.s3_outage_seconds else [])
        + ["kubelet"] * plan.kubelet_restarts
    )
    rng.shuffle(events)
    for what in events:
        circumstance = ""
        time.sleep(rng.uniform(*plan.gap_seconds))
        if what == "operator":
            # Whether another replica was Ready to take over decides the recovery: a
            # container SIGKILLed again and again is held in the kubelet's CrashLoopBackOff
            # (10 s, doubling to 5 min), so after many kills neither may be up.
            standby = ready_replicas(cluster) >= 2
            pod = faults.sigkill_active_operator(cluster, paths)
            log(f"SIGKILL the active operator replica {pod} (a standby Ready: {standby})")
            circumstance = "standby Ready" if standby else "no standby Ready"
        elif what == "apiserver":
            faults.restart(paths, "kube-apiserver", down_seconds=2)
            faults.wait_apiserver(cluster)
            log("restarted kube-apiserver")
        elif what == "s3":
            with faults.s3_down(paths):
                log(f"object storage down for {plan.s3_outage_seconds:.0f} s")
                time.sleep(plan.s3_outage_seconds)
            faults.wait_s3(cluster)
        elif what == "kubelet":
            faults.restart(paths, "kubelet")
            log("restarted the kubelet")
        _probe(api, probes, what, report, circumstance)

    vandalism.join()

    # Every job ends.
    deadline = time.monotonic() + 600 + plan.long_seconds
    pending = set(names)
    finals: dict[str, dict[str, Any]] = {}
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            body = _get(api, namespace, name)
            status = (body or {}).get("status") or {}
            if status.get("phase") in TERMINAL:
                finals[name] = body
                pending.discard(name)
        time.sleep(1)
    report.not_terminal = sorted(pending)
    finished.set()
    report.seconds = time.monotonic() - started
    time.sleep(5)
    counter.stop.set()

    for name, kind in names.items():
        body = finals.get(name)
        if body is None:
            continue
        status = body["status"]
        phase, reason = status["phase"], status.get("reason")
        report.phases[phase] += 1
        if phase == "ERROR":
            report.errors[f"{reason}: {kind}"] += 1
        if name in report.sabotaged:
            if phase == "ERROR" and not status.get("message"):
                report.unexpected.append(f"{name} ({report.sabotaged[name]} deleted): no reason")
        else:
            want_phase, want_reason = EXPECTED[kind]
            if phase != want_phase or (want_reason and reason != want_reason):
                report.unexpected.append(
                    f"{name} ({kind}): {phase} {reason}: {status.get('message', '')[:200]}"
                )
        pods = len(counter.pods.get(name, ()))
        report.pods_per_job[pods] += 1
        # The one documented exception: a pod whose container the runtime never started is
        # replaced (status.startRetries; docs/operator.md, "Under faults").
        retries = int(status.get("startRetries") or 0)
        report.start_retries += retries
        if pods > 1 + retries:
            report.duplicates.append(f"{name}: {pods} pods ({retries} start retries)")
        if phase == "DONE":
            try:
                result = json.loads(read_object(cluster, status["result"]))
                assert result["kind"] == kind
            except Exception as exc:
                report.unreadable_results.append(f"{name}: {exc}")
    # The ledger: every finished job that ran is accounted (a few jobs per ledger write,
    # every few seconds), within half a minute of the last end.
    deadline = time.monotonic() + 30
    while True:
        report.unaccounted = []
        for name in finals:
            status = (_get(api, namespace, name) or {}).get("status") or {}
            ran = status.get("admittedAt") and status.get("startTime")
            if ran and not status.get("accounted"):
                report.unaccounted.append(name)
        if not report.unaccounted or time.monotonic() > deadline:
            break
        time.sleep(2)
    return report


def table(report: Report, plan: Plan) -> str:
    recoveries: dict[str, list[float]] = defaultdict(list)
    for what, circumstance, seconds in report.recoveries:
        recoveries[f"{what}, {circumstance}" if circumstance else what].append(seconds)
    rows = [
        ("jobs submitted", str(report.submitted)),
        ("terminal", str(sum(report.phases.values()))),
        ("not terminal (stuck)", str(len(report.not_terminal))),
        ("DONE", str(report.phases["DONE"])),
        ("ERROR", str(report.phases["ERROR"])),
        ("CANCELED", str(report.phases["CANCELED"])),
        ("outcome not the kind's", str(len(report.unexpected))),
        (
            "pods per job (count: jobs)",
            ", ".join(f"{k}: {v}" for k, v in sorted(report.pods_per_job.items())),
        ),
        ("jobs with a duplicate pod", str(len(report.duplicates))),
        ("pods replaced: never started (startRetries)", str(report.start_retries)),
        ("DONE results unreadable", str(len(report.unreadable_results))),
        ("finished, not in the ledger", str(len(report.unaccounted))),
        ("run time (s)", f"{report.seconds:.0f}"),
    ]
    for what, values in sorted(recoveries.items()):
        values.sort()
        median = values[len(values) // 2]
        rows.append(
            (
                f"recovery after {what} (s) p50/max",
                f"{median:.1f} / {max(values):.1f} (n={len(values)})",
            )
        )
    width = max(len(r[0]) for r in rows)
    lines = [f"{'measure':<{width}}  value", "-" * (width + 24)]
    lines += [f"{label:<{width}}  {value}" for label, value in rows]
    if report.errors:
        lines.append(
            "ERROR reasons (reason: kind): "
            + ", ".join(f"{k} x{v}" for k, v in sorted(report.errors.items()))
        )
    for name, how in report.sabotaged.items():
        lines.append(f"{how} deleted by hand: {name}")
    for entry in report.unexpected + report.duplicates + report.unreadable_results:
        lines.append(f"  ! {entry}")
    return "\n".join(lines)
