"""The admission queue under load, on the local cluster, printed as tables.

    .venv/bin/python -m tests.cluster up
    .venv/bin/python benchmarks/queue_burst.py [--jobs 500] [--rounds 2] [--idle-jobs 10000]
        [--single 10] [--batch] [--wrapped] [--no-operator-jobs]

1. Burst: N ServerlessJobs of a tiny program submitted at once (threads, like many users).
   Reported: submit -> admitted and submit -> RUNNING percentiles (as a client watching
   the jobs sees them), throughput, the operator's CPU seconds and peak RSS; next to the
   reference, N bare pods of the same image and requests created on the same cluster
   (submit -> Running; no operator, no admission). All N jobs must end DONE. And where
   the CPU went, per job and per bare pod, by component (the operator, the API server,
   etcd, ..., the pods' own cgroup, the machine's busy time), from /proc. The two kinds
   alternate, mirrored (``--rounds 2``: jobs, pods, pods, jobs), so that a shared machine
   that gets busier or quieter during the run weighs on both alike. ``--batch`` adds a
   third kind between them (jobs, batch, pods, pods, batch, jobs): bare batch/v1 Jobs of
   the bare pod, made as the operator makes a job's, with no operator: the floor that
   DESIGN.md's "run each job as a batch/v1 Job" sets, and how much of a job's extra is
   Kubernetes' Job controller's rather than the operator's. ``--wrapped`` adds the job's
   own pod made the same way with no operator (jobspec.batch_job: the wrapper streaming and
   keeping the logs and storing the result through its runtime Secret's links): what a
   job's pod costs before any operator work. ``--no-operator-jobs`` leaves the
   ServerlessJobs out, to measure only such floors against bare pods.
2. Idle: M ServerlessJobs present at once, most QUEUED (one runs at a time: a per-user
   limit of 1), and the operator's RSS once it has handled every one of them and is idle
   again (CPU under a quarter of a core), and its peak. Then a new operator process with
   all of them present (a rollout or a crash): how long until it handles a new job, and
   the same two memory figures.
3. Single: one ServerlessJob at a time on an idle cluster, each followed by one bare pod of
   the same image: submit -> RUNNING of each, and the ratio.

The benchmark runs its own operator process (highest peering priority, so it is the one
acting; the others pause) with the operator image's packages only (a cached venv from
images/operator/requirements.txt), and measures it from /proc. Everything lives in namespaces it
deletes at the end. Ratios, not absolute times, are what compare across machines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qiskit_serverless_operator import constants as c  # noqa: E402
from qiskit_serverless_operator import storage  # noqa: E402
from qiskit_serverless_operator.config import OperatorConfig  # noqa: E402
from qiskit_serverless_operator.controller import jobspec  # noqa: E402
from tests.cluster.config import Paths  # noqa: E402
from tests.cluster.operator_local import apply_api, operator_env  # noqa: E402
from tests.kube import OperatorProcess  # noqa: E402

PROGRAM = "from qiskit_serverless import save_result\nsave_result({'ok': True})\n"
REQUESTS = {"cpu": "250m", "memory": "256Mi"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


class ProcWatch:
    """CPU seconds and peak RSS of one process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu0 = self.cpu()

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # MiB
        return 0.0


# The local cluster's processes by name (as /proc/PID/stat has it, 15 characters at most).
COMPONENTS = (
    "kube-apiserver",
    "etcd",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "containerd",
    "weed",
)


def component_cpu() -> dict[str, float]:
    """CPU seconds so far of each cluster component (all its processes), of the pods (the
    kubelet's cgroup, cgroup v1 or v2) and of the whole machine (its busy time)."""
    out: dict[str, float] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        name = next((n for n in COMPONENTS if comm == n[:15]), None)
        if comm.startswith("containerd-shim"):
            name = "containerd"
        if name:
            fields = stat.rsplit(")", 1)[1].split()
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    v1 = Path("/sys/fs/cgroup/cpuacct/kubepods/cpuacct.usage")
    v2 = Path("/sys/fs/cgroup/kubepods/cpu.stat")
    if v1.exists():
        out["pods"] = int(v1.read_text()) / 1e9
    elif v2.exists():
        usage = dict(line.split() for line in v2.read_text().splitlines())
        out["pods"] = int(usage["usage_usec"]) / 1e6
    ticks = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    out["machine"] = sum(int(t) for i, t in enumerate(ticks) if i not in (3, 4)) / CLK_TCK
    return out


def cpu_since(before: dict[str, float]) -> dict[str, float]:
    now = component_cpu()
    return {key: now[key] - before.get(key, 0.0) for key in now}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


CREATED: list[str] = []  # every namespace made, so a failed run still cleans up


def new_namespace(core: client.CoreV1Api, stem: str) -> str:
    name = f"bench-{stem}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    CREATED.append(name)
    return name


def job_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.JOB_KIND,
        "metadata": {"name": name},
        "spec": {"function": "tiny", "resources": {"requests": REQUESTS}, **spec},
    }


def make_function(custom: client.CustomObjectsApi, namespace: str) -> None:
    custom.create_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        namespace,
        c.FUNCTION_PLURAL,
        {
            "apiVersion": c.API_VERSION,
            "kind": c.FUNCTION_KIND,
            "metadata": {"name": "tiny"},
            "spec": {
                "title": "tiny",
                "entrypoint": "main.py",
                "source": {"files": {"main.py": PROGRAM}},
            },
        },
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        body = custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.FUNCTION_PLURAL, "tiny"
        )
        if (body.get("status") or {}).get("phase") == "Ready":
            return
        time.sleep(0.5)
    raise TimeoutError("function tiny did not become Ready")


def burst_jobs(api_client: client.ApiClient, count: int, op: ProcWatch) -> dict[str, Any]:
    core = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    namespace = new_namespace(core, "burst")
    make_function(custom, namespace)
    submitted: dict[str, float] = {}
    admitted: dict[str, float] = {}
    running: dict[str, float] = {}
    finished: dict[str, tuple[float, str]] = {}
    done = threading.Event()
    rss_peak = [op.status("VmRSS")]

    def observe() -> None:
        w = watch.Watch()
        while not done.is_set():
            for event in w.stream(
                custom.list_namespaced_custom_object,
                c.GROUP,
                c.VERSION,
                namespace,
                c.JOB_PLURAL,
                timeout_seconds=30,
            ):
                now = time.time()
                obj = event["object"]
                name, status = obj["metadata"]["name"], obj.get("status") or {}
                if status.get("admittedAt"):
                    admitted.setdefault(name, now)
                if status.get("phase") in ("RUNNING", "DONE", "ERROR"):
                    running.setdefault(name, now)
                if status.get("phase") in ("DONE", "ERROR", "CANCELED"):
                    finished.setdefault(name, (now, status["phase"]))
                rss_peak[0] = max(rss_peak[0], op.status("VmRSS"))
                if len(finished) >= count:
                    done.set()
                    return

    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()
    time.sleep(1)
    cpu0 = op.cpu()
    started = time.time()

    def submit(i: int) -> None:
        name = f"job-{i:05d}"
        submitted[name] = time.time()
        custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, job_body(name)
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(submit, range(count)))
    submit_seconds = time.time() - started
    done.wait(timeout=count * 10 + 600)
    elapsed = max((t for t, _ in finished.values()), default=time.time()) - started
    result = {
        "namespace": namespace,
        "submit_seconds": submit_seconds,
        "admit": [admitted[n] - submitted[n] for n in admitted if n in submitted],
        "running": [running[n] - submitted[n] for n in running if n in submitted],
        "elapsed": elapsed,
        "done": sum(1 for _, phase in finished.values() if phase == "DONE"),
        "finished": len(finished),
        "cpu": op.cpu() - cpu0,
        "rss_peak": max(rss_peak[0], op.status("VmHWM")),
    }
    return result


def burst_pods(api_client: client.ApiClient, count: int, image: str) -> dict[str, Any]:
    core = client.CoreV1Api(api_client)

    def create(namespace: str, name: str) -> None:
        core.create_namespaced_pod(namespace, bare_pod(name, image))

    # Like the jobs' TTL: finished pods do not hold the node's pod slots.
    return _pod_burst(core, count, "pods", create, lambda pod: pod.metadata.name, remove=True)


def burst_batch(api_client: client.ApiClient, count: int, image: str) -> dict[str, Any]:
    """N batch/v1 Jobs of the bare pod, as the operator makes them (one pod, no retry, a
    deadline, removed 5 s after they finish like the jobs' here) and no operator: what
    DESIGN.md's "run each job as a batch/v1 Job" costs by itself, the floor under a job."""
    batch = client.BatchV1Api(api_client)

    def create(namespace: str, name: str) -> None:
        spec = client.V1JobSpec(
            backoff_limit=0,
            completions=1,
            parallelism=1,
            pod_replacement_policy="Failed",
            active_deadline_seconds=3600,
            ttl_seconds_after_finished=5,
            template=client.V1PodTemplateSpec(spec=bare_pod(name, image).spec),
        )
        batch.create_namespaced_job(
            namespace, client.V1Job(metadata=client.V1ObjectMeta(name=name), spec=spec)
        )

    def owner(pod: Any) -> str | None:
        return (pod.metadata.labels or {}).get("batch.kubernetes.io/job-name")

    return _pod_burst(client.CoreV1Api(api_client), count, "batch", create, owner, remove=False)


def burst_wrapped(api_client: client.ApiClient, count: int, image: str) -> dict[str, Any]:
    """N of the pod a job runs, made directly with no operator and no ServerlessJob: the
    batch/v1 Job jobspec.batch_job makes (the wrapper around the program, the source
    ConfigMap, an empty /data listing) and its runtime Secret with upload links for the logs
    and the result, which the wrapper stores. What DESIGN.md asks of a job's pod (logs
    streamed and kept, the result stored) costs this much before any operator work."""
    core = client.CoreV1Api(api_client)
    batch = client.BatchV1Api(api_client)
    env = operator_env(json.loads(Path("/var/lib/qso-cluster/cluster.json").read_text()))
    cfg = OperatorConfig.from_env({**env, "QSO_RUNTIME_IMAGE": image})
    store = storage.ObjectStore(cfg.s3)
    qf: dict[str, Any] = {}
    stored: list[str] = []  # the logs and results the pods store

    def unowned(body: dict[str, Any]) -> dict[str, Any]:
        # No ServerlessJob owns them here: an owner that does not exist would have the
        # garbage collector remove them at once.
        body["metadata"].pop("ownerReferences", None)
        return body

    def setup(namespace: str) -> None:
        """The function the pods run: its source ConfigMap, as the operator makes it."""
        files = {"main.py": PROGRAM}
        qf.update(
            metadata={"name": "tiny", "namespace": namespace, "uid": str(uuid.uuid4())},
            spec={"title": "tiny", "entrypoint": "main.py", "source": {"files": files}},
        )
        source = unowned(jobspec.source_configmap(qf))
        core.create_namespaced_config_map(namespace, source)
        qf["status"] = {"sourceConfigMap": source["metadata"]["name"]}

    def create(namespace: str, name: str) -> None:
        uid = str(uuid.uuid4())
        sj = {
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "spec": {"function": "tiny", "resources": {"requests": REQUESTS}},
        }
        lifetime = jobspec.timeout_seconds(sj, cfg) + cfg.url_grace_seconds
        keys = storage.result_key(namespace, uid), storage.logs_key(namespace, uid)
        stored.extend(keys)
        secret = unowned(
            jobspec.runtime_secret(
                sj,
                result_url=store.presign_put(keys[0], lifetime),
                logs_url=store.presign_put(keys[1], lifetime),
                gateway_token=uuid.uuid4().hex,
                files_listing=json.dumps({c.POD_DATA_DIR: []}),
                arguments_json="{}",
            )
        )
        core.create_namespaced_secret(namespace, secret)
        job = unowned(jobspec.batch_job(sj, qf, cfg, arguments_secret=secret["metadata"]["name"]))
        job["spec"]["ttlSecondsAfterFinished"] = 5  # as the jobs' here
        batch.create_namespaced_job(namespace, job)

    def owner(pod: Any) -> str | None:
        return (pod.metadata.labels or {}).get(c.LABEL_JOB)

    result = _pod_burst(core, count, "wrapped", create, owner, remove=False, setup=setup)
    # Run by main once the burst's CPU is read, as the namespaces are removed then.
    result["cleanup"] = lambda: store.delete(*stored)
    return result


def _pod_burst(
    core: client.CoreV1Api,
    count: int,
    stem: str,
    create: Callable[[str, str], None],
    owner: Callable[[Any], str | None],
    remove: bool,
    setup: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """A burst of ``count`` things ``create`` makes, each of one pod (``owner``: the name
    of the thing a pod is of), timed from their pods' phases as a watching client sees them.
    ``setup`` makes what they share in the new namespace, before the clock starts."""
    namespace = new_namespace(core, stem)
    if setup is not None:
        setup(namespace)
    submitted: dict[str, float] = {}
    running: dict[str, float] = {}
    finished: dict[str, float] = {}
    succeeded: dict[str, bool] = {}
    done = threading.Event()

    def observe() -> None:
        w = watch.Watch()
        while not done.is_set():
            for event in w.stream(core.list_namespaced_pod, namespace, timeout_seconds=30):
                now = time.time()
                pod = event["object"]
                name, phase = owner(pod), pod.status.phase
                if name and phase in ("Running", "Succeeded", "Failed"):
                    running.setdefault(name, now)
                if name and phase in ("Succeeded", "Failed") and name not in finished:
                    finished[name] = now
                    succeeded[name] = phase == "Succeeded"
                    if remove:
                        threading.Thread(
                            target=core.delete_namespaced_pod,
                            args=(pod.metadata.name, namespace),
                            daemon=True,
                        ).start()
                if len(finished) >= count:
                    done.set()
                    return

    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()
    time.sleep(1)
    started = time.time()

    def submit(i: int) -> None:
        name = f"{stem}-{i:05d}"
        submitted[name] = time.time()
        create(namespace, name)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(submit, range(count)))
    submit_seconds = time.time() - started
    done.wait(timeout=count * 10 + 600)
    elapsed = max(finished.values(), default=time.time()) - started
    return {
        "namespace": namespace,
        "submit_seconds": submit_seconds,
        "running": [running[n] - submitted[n] for n in running if n in submitted],
        "elapsed": elapsed,
        "finished": len(finished),
        "succeeded": sum(succeeded.values()),
    }


def burst_order(rounds: int, kinds: tuple[str, ...] = ("jobs", "pods")) -> list[str]:
    """Jobs and bare pods alternate, mirrored (jobs, pods, pods, jobs, ...): a machine that
    gets slower or faster during the run (it is shared) weighs on both kinds alike, where
    one burst of each, one after the other, differed by up to 30% between two runs."""
    order: list[str] = []
    for i in range(rounds):
        order += list(kinds) if i % 2 == 0 else list(reversed(kinds))
    return order


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Bursts of one kind as one: times pooled, counts and seconds summed, peaks the max."""
    out: dict[str, Any] = {}
    for key in ("admit", "running"):
        if key in rounds[0]:
            out[key] = [v for r in rounds for v in r[key]]
    for key in ("elapsed", "finished", "succeeded", "done", "cpu", "submit_seconds"):
        if key in rounds[0]:
            out[key] = sum(r[key] for r in rounds)
    if "rss_peak" in rounds[0]:
        out["rss_peak"] = max(r["rss_peak"] for r in rounds)
    components: dict[str, float] = {}
    for r in rounds:
        for name, seconds in r["components"].items():
            components[name] = components.get(name, 0.0) + seconds
    out["components"] = components
    return out


def round_line(result: dict[str, Any]) -> str:
    return (
        f"{result['finished']} finished in {result['elapsed']:.0f} s, "
        f"RUNNING p50 {percentile(result['running'], 50):.1f} s"
    )


def _poll(read, done, timeout: float = 300.0) -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``done(read())`` holds (polled every 20 ms: the same for both sides)."""
    started = time.time()
    while time.time() - started < timeout:
        if done(read()):
            return time.time() - started
        time.sleep(0.02)
    raise TimeoutError("no answer in time")


def bare_pod(name: str, image: str) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            restart_policy="Never",
            automount_service_account_token=False,
            containers=[
                client.V1Container(
                    name="main",
                    image=image,
                    command=["python3", "-c", "import qiskit_serverless"],
                    # What a job's pod gets for the same requests: a memory limit equal to
                    # the request (jobspec.resources), so both kinds run under the same cap.
                    resources=client.V1ResourceRequirements(
                        requests=REQUESTS, limits={"memory": REQUESTS["memory"]}
                    ),
                )
            ],
        ),
    )


def single_runs(api_client: client.ApiClient, repeats: int, image: str) -> dict[str, list[float]]:
    """One job at a time on an idle cluster, each followed by one bare pod of the same image
    (alternating, so both see the same machine): submit -> RUNNING, as a client polls it."""
    core = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    namespace = new_namespace(core, "single")
    make_function(custom, namespace)
    jobs: list[float] = []
    pods: list[float] = []
    terminal = ("DONE", "ERROR", "CANCELED")
    for i in range(repeats):
        name = f"one-{i:03d}"
        custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, job_body(name)
        )
        jobs.append(
            _poll(
                lambda n=name: job_phase(custom, namespace, n),
                lambda phase: phase in ("RUNNING", *terminal),
            )
        )
        _poll(lambda n=name: job_phase(custom, namespace, n), lambda phase: phase in terminal)
        pod = f"pod-{i:03d}"
        core.create_namespaced_pod(namespace, bare_pod(pod, image))
        pods.append(
            _poll(
                lambda n=pod: core.read_namespaced_pod(n, namespace).status.phase,
                lambda phase: phase in ("Running", "Succeeded", "Failed"),
            )
        )
        _poll(
            lambda n=pod: core.read_namespaced_pod(n, namespace).status.phase,
            lambda phase: phase in ("Succeeded", "Failed"),
        )
        core.delete_namespaced_pod(pod, namespace)
    return {"jobs": jobs, "pods": pods}


def image_python(cache: Path) -> str:
    """A Python with the operator image's packages only (images/operator/requirements.txt,
    pinned by requirements/constraints.txt; cached), the operator package from the source
    tree: the process measured imports what the deployed one does. From the project's own
    environment kopf would also import the SDK's `kubernetes` client (15 MiB more)."""
    requirements = REPO / "images" / "operator" / "requirements.txt"
    constraints = REPO / "requirements" / "constraints.txt"
    key = hashlib.sha256(requirements.read_bytes() + constraints.read_bytes()).hexdigest()[:12]
    venv = cache / f"benchmark-operator-venv-{key}"
    python = venv / "bin" / "python"
    if not python.exists():
        staging = venv.with_suffix(".staging")
        shutil.rmtree(staging, ignore_errors=True)
        print("preparing the operator image's packages for the benchmark ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True)
        subprocess.run(
            [
                *(str(staging / "bin" / "python"), "-m", "pip", "install", "--quiet"),
                *("-r", str(requirements), "-c", str(constraints)),
            ],
            check=True,
        )
        staging.rename(venv)  # the venv's scripts name the staging path; only python is used
    return str(python)


def benchmark_operator(
    info: dict[str, Any], log_name: str, first_on_path: tuple[str, ...] = (), **env: str
) -> OperatorProcess:
    """The benchmark's own operator: the highest peering priority (the one acting; the
    others pause), the operator image's packages (image_python) and this tree's operator
    package, with ``env`` (and ``first_on_path`` ahead of the package: a sitecustomize)."""
    return OperatorProcess(
        info,
        Path(info["logs"]) / log_name,
        priority=10_000_000,
        python=image_python(Paths.from_env().cache),
        extra_env={"PYTHONPATH": os.pathsep.join([*first_on_path, str(REPO / "operator")]), **env},
    )


def wait_idle(op: ProcWatch, timeout: float = 900.0) -> float:
    """Seconds until the operator's CPU stays under a quarter of a core for 10 s: it has
    worked through every event (the admission tick over 10,000 jobs costs less than that)."""
    started = time.time()
    while time.time() - started < timeout:
        cpu0 = op.cpu()
        time.sleep(10)
        if (op.cpu() - cpu0) / 10 < 0.25:
            break
    return time.time() - started


# The operator hands freed heap back to the system every 5 s (memory.release, run by the
# admission loop): the RSS right when it goes idle may still hold the burst's freed pages.
SETTLE_SECONDS = 40.0


def settled_rss(op: ProcWatch) -> dict[str, float]:
    """RSS when the operator has just gone idle, again after one heap release, and its peak."""
    on_idle = op.status("VmRSS")
    time.sleep(SETTLE_SECONDS)
    return {"rss_on_idle": on_idle, "rss": op.status("VmRSS"), "rss_peak": op.status("VmHWM")}


def job_phase(custom: client.CustomObjectsApi, namespace: str, name: str) -> str | None:
    body = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, name)
    return (body.get("status") or {}).get("phase")


def idle_jobs(api_client: client.ApiClient, count: int, op: ProcWatch) -> dict[str, Any]:
    core = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    namespace = new_namespace(core, "idle")
    make_function(custom, namespace)
    rss_before = op.status("VmRSS")
    started = time.time()

    def submit(i: int) -> None:
        custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, job_body(f"idle-{i:05d}")
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(submit, range(count)))
    submit_seconds = time.time() - started
    # Seen: every job has a status from the operator (QUEUED and waiting, or further).
    deadline = time.time() + 1800
    seen = queued = 0
    while time.time() < deadline:
        items = custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL)[
            "items"
        ]
        seen = sum(1 for item in items if (item.get("status") or {}).get("phase"))
        queued = sum(1 for item in items if (item.get("status") or {}).get("phase") == "QUEUED")
        del items
        if seen >= count:
            break
        time.sleep(5)
    seen_seconds = time.time() - started
    settle_seconds = wait_idle(op)
    return {
        "namespace": namespace,
        "count": count,
        "seen": seen,
        "queued": queued,
        "submit_seconds": submit_seconds,
        "seen_seconds": seen_seconds,
        "settle_seconds": settle_seconds,
        "rss_before": rss_before,
        **settled_rss(op),
    }


def restart_with_jobs(
    api_client: client.ApiClient, namespace: str, operator: OperatorProcess
) -> dict[str, Any]:
    """A new operator process while all the jobs are present (a rollout, a crash): how long
    until it handles a new job, and its memory once it has gone through all of them."""
    custom = client.CustomObjectsApi(api_client)
    started = time.time()
    operator.start()
    assert operator.proc is not None
    op = ProcWatch(operator.proc.pid)
    # A job whose function does not exist: its first status (QUEUED, FunctionNotFound: it
    # waits QSO_FUNCTION_WAIT_SECONDS for the function, then ERROR) comes as soon as the
    # operator gets to it, behind the events of every job kopf's listing dispatched.
    custom.create_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        namespace,
        c.JOB_PLURAL,
        {**job_body("sentinel"), "spec": {"function": "missing"}},
    )
    deadline = time.time() + 900
    handled = None
    while time.time() < deadline:
        if job_phase(custom, namespace, "sentinel") in ("QUEUED", "ERROR"):
            handled = time.time() - started
            break
        time.sleep(1)
    wait_idle(op)
    return {
        "handled_seconds": handled,
        "settle_seconds": time.time() - started,
        **settled_rss(op),
    }


def remove_namespace(api_client: client.ApiClient, namespace: str, operator_running: bool) -> None:
    """Delete a benchmark namespace and wait until it is gone (with the operator running, its
    finalizers do the cleanup; without one, the jobs' finalizers are dropped first)."""
    core = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    if not operator_running:
        items = custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL)

        def strip(item: dict[str, Any]) -> None:
            custom.patch_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                namespace,
                c.JOB_PLURAL,
                item["metadata"]["name"],
                {"metadata": {"finalizers": None}},
            )

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(strip, items["items"]))
    core.delete_namespace(namespace)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        try:
            core.read_namespace(namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(2)
    print(f"namespace {namespace} is still terminating", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--idle-jobs", type=int, default=10_000)
    parser.add_argument(
        "--single", type=int, default=10, help="single jobs on an idle cluster (0: skip)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="bursts of each kind, alternating: 2 runs jobs, pods, pods, jobs",
    )
    parser.add_argument(
        "--batch",
        action="store_true",
        help="also bursts of bare batch/v1 Jobs of the same pod (no operator): the floor",
    )
    parser.add_argument(
        "--wrapped",
        action="store_true",
        help="also bursts of a job's own pod and Secret, made with no operator: its floor",
    )
    parser.add_argument(
        "--no-operator-jobs",
        dest="with_jobs",
        action="store_false",
        help="leave out the ServerlessJobs' bursts (with --batch or --wrapped)",
    )
    args = parser.parse_args()
    floors = [kind for kind in FLOORS if getattr(args, kind)]
    kinds = (*(["jobs"] if args.with_jobs or not floors else []), *floors, "pods")
    info = json.loads(Path("/var/lib/qso-cluster/cluster.json").read_text())
    config.load_kube_config(info["kubeconfig"])
    api_client = client.ApiClient()
    apply_api(Paths.from_env())  # a fresh cluster has no CRDs until a test or install ran
    image = info["images"]["runtime"]

    if args.jobs:
        operator = benchmark_operator(
            info, "operator-benchmark.log", QSO_FINISHED_POD_TTL_SECONDS="5"
        )
        operator.start()
        assert operator.proc is not None
        rounds: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        without_operator = {"batch": burst_batch, "wrapped": burst_wrapped, "pods": burst_pods}
        try:
            op = ProcWatch(operator.proc.pid)
            for kind in burst_order(args.rounds, kinds):
                before = component_cpu()
                if kind == "jobs":
                    result = burst_jobs(api_client, args.jobs, op)
                else:
                    result = without_operator[kind](api_client, args.jobs, image)
                result["components"] = {**cpu_since(before), "operator": result.get("cpu", 0.0)}
                result.pop("cleanup", lambda: None)()
                rounds[kind].append(result)
                print(f"burst of {args.jobs} {kind}: {round_line(result)}", flush=True)
                # The next burst starts on a cluster without this one's objects.
                while CREATED:
                    remove_namespace(api_client, CREATED.pop(), operator_running=True)
        finally:
            while CREATED:
                remove_namespace(api_client, CREATED.pop(), operator_running=True)
            operator.stop()
        pods = combine(rounds["pods"])
        if rounds.get("jobs"):
            print_burst(args.jobs, combine(rounds["jobs"]), pods, args.rounds, kinds)
        for kind in floors:
            print_floor(args.jobs * args.rounds, kind, combine(rounds[kind]), pods)

    if args.single:
        single_op = benchmark_operator(
            info, "operator-benchmark-single.log", QSO_FINISHED_POD_TTL_SECONDS="5"
        )
        single_op.start()
        try:
            single = single_runs(api_client, args.single, image)
        finally:
            while CREATED:
                remove_namespace(api_client, CREATED.pop(), operator_running=True)
            single_op.stop()
        print_single(single)

    idle: dict[str, Any] = {}
    restart: dict[str, Any] = {}
    if args.idle_jobs:
        idle_op, restarted = (
            benchmark_operator(
                info,
                f"operator-benchmark-{part}.log",
                QSO_MAX_RUNNING_PER_USER="1",
                QSO_FINISHED_POD_TTL_SECONDS="5",
            )
            for part in ("idle", "restart")
        )
        idle_op.start()
        assert idle_op.proc is not None
        try:
            idle = idle_jobs(api_client, args.idle_jobs, ProcWatch(idle_op.proc.pid))
            idle_op.stop()
            restart = restart_with_jobs(api_client, idle["namespace"], restarted)
        finally:
            idle_op.stop()
            restarted.stop()
            while CREATED:
                remove_namespace(api_client, CREATED.pop(), operator_running=False)
        print_idle(idle, restart)
        if restart.get("handled_seconds") is None:
            print("the restarted operator handled nothing within 15 minutes", file=sys.stderr)
            return 1
    if args.jobs:
        everything = args.jobs * args.rounds
        # Every job DONE, every pod of the others Succeeded.
        ended = all(
            sum(r.get("succeeded", r["finished"]) for r in rounds[kind]) == everything
            for kind in kinds
        )
        done = sum(r["done"] for r in rounds.get("jobs", []))
        return 0 if ended and done == (everything if "jobs" in kinds else 0) else 1
    return 0


def pct(values: list[float]) -> str:
    return " / ".join(f"{percentile(values, q):.1f}" for q in (50, 90, 99))


def print_burst(
    n: int,
    jobs: dict[str, Any],
    pods: dict[str, Any],
    rounds: int = 1,
    kinds: tuple[str, ...] = ("jobs", "pods"),
) -> None:
    print()
    order = ", ".join(burst_order(rounds, kinds))
    print(f"Bursts of {n} on one node ({os.cpu_count()} CPUs), requests {REQUESTS}")
    print(f"{rounds} of each kind ({order}); times pooled, seconds and counts summed")
    total = n * rounds
    print(f"{'measure':<34} {'ServerlessJobs':>18} {'bare pods (ref.)':>18} {'ratio':>7}")
    print("-" * 80)
    table: list[Row] = [
        (
            "submit: all created (s, summed)",
            f"{jobs['submit_seconds']:.1f}",
            f"{pods['submit_seconds']:.1f}",
            jobs["submit_seconds"] / max(pods["submit_seconds"], 1e-9),
        ),
        ("submit -> admitted p50/p90/p99 (s)", pct(jobs["admit"]), "-", None),
        running_row(jobs, pods),
        (
            "all finished (s, summed)",
            f"{jobs['elapsed']:.1f}",
            f"{pods['elapsed']:.1f}",
            jobs["elapsed"] / max(pods["elapsed"], 1e-9),
        ),
        throughput_row(jobs, pods),
        (
            "DONE / finished / submitted",
            f"{jobs['done']}/{jobs['finished']}/{total}",
            f"-/{pods['finished']}/{total}",
            None,
        ),
        ("operator CPU (s)", f"{jobs['cpu']:.1f}", "-", None),
        ("operator peak RSS (MiB)", f"{jobs['rss_peak']:.0f}", "-", None),
    ]
    print_rows(table)
    print_components(total, jobs, pods)
    sys.stdout.flush()


Row = tuple[str, str, str, float | None]


def running_row(a: dict[str, Any], b: dict[str, Any]) -> Row:
    return (
        "submit -> RUNNING p50/p90/p99 (s)",
        pct(a["running"]),
        pct(b["running"]),
        percentile(a["running"], 50) / max(percentile(b["running"], 50), 1e-9),
    )


def throughput_row(a: dict[str, Any], b: dict[str, Any]) -> Row:
    return (
        "throughput (per minute)",
        f"{60 * a['finished'] / a['elapsed']:.1f}",
        f"{60 * b['finished'] / b['elapsed']:.1f}",
        (a["finished"] / a["elapsed"]) / max(b["finished"] / b["elapsed"], 1e-9),
    )


def print_rows(rows: list[Row]) -> None:
    for label, a, b, ratio in rows:
        print(f"{label:<34} {a:>18} {b:>18} {'' if ratio is None else f'{ratio:.2f}':>7}")


# The bursts made with no operator under a job's: (one of them, its title).
FLOORS = {
    "batch": ("batch Job", "The floor: bare batch/v1 Jobs of the same pod, no operator"),
    "wrapped": ("job's pod", "The pod's floor: a job's own pod and Secret, no operator"),
}


def print_floor(n: int, kind: str, floor: dict[str, Any], pods: dict[str, Any]) -> None:
    """A burst made with no operator (FLOORS) against bare pods: the share of a job's cost
    that is Kubernetes' Job controller's (batch) or its pod's (wrapped), not the operator's."""
    one, title = FLOORS[kind]
    print()
    print(f"{title} (times pooled)")
    print(f"{'measure':<34} {one + 's':>18} {'bare pods (ref.)':>18} {'ratio':>7}")
    print("-" * 80)
    print_rows(
        [
            running_row(floor, pods),
            throughput_row(floor, pods),
            (
                "Succeeded / finished / submitted",
                f"{floor['succeeded']}/{floor['finished']}/{n}",
                f"{pods['succeeded']}/{pods['finished']}/{n}",
                None,
            ),
        ]
    )
    print_components(n, floor, pods, one)
    sys.stdout.flush()


def print_components(
    n: int, jobs: dict[str, Any], pods: dict[str, Any], kind: str = "ServerlessJob"
) -> None:
    """Where the CPU went, per job and per bare pod: on a machine the burst keeps busy, the
    throughput ratio is about the ratio of these totals (the machine's busy time)."""
    a, b = jobs.get("components"), pods.get("components")
    if not a or not b:
        return
    print()
    print(f"CPU seconds per {kind} / per bare pod, by component ({os.cpu_count()} CPUs)")
    print(f"{'component':<34} {kind:>18} {'bare pod (ref.)':>18} {'extra':>7}")
    print("-" * 80)
    order = ["operator", *COMPONENTS, "pods", "machine"]
    for key in [k for k in order if k in a or k in b]:
        x, y = a.get(key, 0.0) / n, b.get(key, 0.0) / n
        label = {"pods": "pods (their cgroup)", "machine": "machine (all busy time)"}.get(key, key)
        print(f"{label:<34} {x:>18.3f} {y:>18.3f} {x - y:>7.3f}")


def print_single(single: dict[str, list[float]]) -> None:
    jobs, pods = single["jobs"], single["pods"]
    print()
    print(f"One at a time on an idle cluster ({len(jobs)} of each, alternating)")
    print(f"{'measure':<34} {'ServerlessJob':>18} {'bare pod (ref.)':>18} {'ratio':>7}")
    print("-" * 80)
    for label, q in (("submit -> RUNNING p50 (s)", 50), ("submit -> RUNNING max (s)", 100)):
        a, b = percentile(jobs, q), percentile(pods, q)
        print(f"{label:<34} {a:>18.2f} {b:>18.2f} {a / max(b, 1e-9):>7.2f}")
    sys.stdout.flush()


def print_idle(idle: dict[str, Any], restart: dict[str, Any]) -> None:
    if idle:
        print()
        print(f"{idle['count']} ServerlessJobs present ({idle['queued']} QUEUED)")
        print(f"{'measure':<46} {'value':>10}")
        print("-" * 57)
        rows = [
            ("created in (s)", idle["submit_seconds"]),
            ("all have a status after (s)", idle["seen_seconds"]),
            ("operator idle again after (s)", idle["seen_seconds"] + idle["settle_seconds"]),
            ("operator RSS before (MiB)", idle["rss_before"]),
            ("operator RSS with them, on going idle (MiB)", idle["rss_on_idle"]),
            (f"operator RSS with them, {SETTLE_SECONDS:.0f} s later (MiB)", idle["rss"]),
            ("operator peak RSS (MiB)", idle["rss_peak"]),
        ]
        if restart:
            handled = restart["handled_seconds"]
            rows += [
                ("restart: a new job handled after (s)", handled if handled else float("nan")),
                ("restart: idle again after (s)", restart["settle_seconds"]),
                ("restart: RSS on going idle (MiB)", restart["rss_on_idle"]),
                (f"restart: RSS {SETTLE_SECONDS:.0f} s later (MiB)", restart["rss"]),
                ("restart: peak RSS (MiB)", restart["rss_peak"]),
            ]
        for label, value in rows:
            print(f"{label:<46} {value:>10.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
