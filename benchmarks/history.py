"""Job history at scale, on the local cluster, printed as tables.

    .venv/bin/python -m tests.cluster up
    .venv/bin/python benchmarks/history.py [--live 10000] [--archived 1000000]
        [--requests 200] [--before-requests 30] [--kept 5000,10000] [--base 1d0769e]
        [--real 20] [--starts 2]

One run, everything measured side by side (ratios compare across machines, times do not):

1. Reads. A namespace whose user (a ServiceAccount that may edit it) has ``--live`` finished
   jobs kept in the API server (made finished directly: no pod runs), first with nothing
   archived, then with ``--archived`` more rows bulk-loaded into the archive, all of the
   same user (the worst case: every row is in that user's listing). Timed from a client
   process: ``jobs(limit=10)`` through PyPI's ``ServerlessClient`` and the REST gateway,
   and through our SDK (the history API behind the Kubernetes API server); ``job(id)`` of a
   live job and of an archived one. Goals: with the archive full, ``jobs(limit=10)`` at most
   1.5x the empty archive's (p50 and p99), p50 under 50 ms; an archived ``job(id)`` at most
   1.5x a live one's.
2. The code before the archive (``--base``, a git worktree): its REST gateway (a local
   process) and its SDK with ``--kept`` finished jobs kept in the API server, the only way
   it keeps history.
3. The operator: start-up (until it handles a new job) and settled RSS with the archive
   empty and full. Goal: full at most 1.1x empty.
4. Writes: every live job's TTL set to 0: how fast the operator archives and deletes them
   (at least 2,000 jobs), with ``--real`` jobs that really ran among them; then the API
   objects left per job (goal: 0).

The archive of this run is a schema of its own in the cluster's PostgreSQL (the in-cluster
operator and gateway are pointed at it for the run); it, the namespace and the worktree are
removed at the end.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from kubernetes import client

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._in_cluster import in_cluster  # noqa: E402
from benchmarks.queue_burst import (  # noqa: E402
    ProcWatch,
    benchmark_operator,
    percentile,
    settled_rss,
    wait_idle,
)
from qiskit_serverless_operator import constants as c  # noqa: E402
from tests.cluster.install import NAMESPACE, site_settings  # noqa: E402
from tests.in_cluster import operator_pods, service_account_token  # noqa: E402
from tests.kube import kubectl, wait_until  # noqa: E402

USER_SA = "bench"
SOURCE = "from qiskit_serverless import save_result\nprint('tiny')\nsave_result({'ok': True})\n"
T0 = 1_700_000_000.0  # archived rows are older than every live job
CA: list[str] = []  # the cluster CA's file, once known


# --------------------------------------------------------------------------- set-up


def archive_schema(dsn: str) -> tuple[str, str]:
    """A schema of this run's own; the DSN that makes it the archive's."""
    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return schema, f"{dsn}?options={urllib.parse.quote(f'-csearch_path={schema}')}"


def point_install_at(cluster: dict[str, Any], dsn: str) -> None:
    """The in-cluster operator and gateway with this DSN (their Secret, then a rollout)."""
    out = kubectl(cluster, "-n", NAMESPACE, "get", "secrets", "-o", "name").stdout.split()
    (secret,) = [s for s in out if "qiskit-serverless-archive" in s]
    value = base64.b64encode(dsn.encode()).decode()
    kubectl(
        cluster,
        "-n",
        NAMESPACE,
        "patch",
        secret,
        "--type=merge",
        "-p",
        json.dumps({"data": {"QSO_ARCHIVE_DSN": value}}),
    )
    for deployment in ("qiskit-serverless-operator", "qiskit-serverless-gateway"):
        kubectl(cluster, "-n", NAMESPACE, "rollout", "restart", f"deployment/{deployment}")
        kubectl(
            cluster,
            "-n",
            NAMESPACE,
            "rollout",
            "status",
            f"deployment/{deployment}",
            "--timeout=300s",
        )


def scale_operator(cluster: dict[str, Any], replicas: int) -> None:
    deployment = "deployment/qiskit-serverless-operator"
    kubectl(cluster, "-n", NAMESPACE, "scale", deployment, f"--replicas={replicas}")
    if replicas:
        kubectl(cluster, "-n", NAMESPACE, "rollout", "status", deployment, "--timeout=300s")
        return

    wait_until(
        lambda: not operator_pods(cluster),
        timeout=120,
        what="the in-cluster operator's pods gone",
    )


def token_client(api_client: client.ApiClient, token: str) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = api_client.configuration.host
    cfg.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


def make_function(custom: client.CustomObjectsApi, namespace: str) -> None:
    body = {
        "apiVersion": c.API_VERSION,
        "kind": c.FUNCTION_KIND,
        "metadata": {"name": "tiny"},
        "spec": {
            "title": "tiny",
            "entrypoint": "main.py",
            "source": {"files": {"main.py": SOURCE}},
        },
    }
    custom.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.FUNCTION_PLURAL, body)


def kept_jobs(
    admin: client.ApiClient,
    user: client.ApiClient,
    namespace: str,
    user_name: str,
    start: int,
    count: int,
) -> list[str]:
    """``count`` finished jobs kept in the API server: made by the user (the admission policy
    checks the submitter), suspended so nothing runs, then given a DONE status."""
    as_user, as_admin = client.CustomObjectsApi(user), client.CustomObjectsApi(admin)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def one(i: int) -> str:
        body = {
            "apiVersion": c.API_VERSION,
            "kind": c.JOB_KIND,
            "metadata": {
                "name": f"kept-{i:06d}",
                "annotations": {
                    c.ANNOTATION_SUBMITTER: user_name,
                    c.ANNOTATION_SUBMITTED_AT: f"{time.time():.6f}",
                },
            },
            # Kept: an hour is the default; the run must not lose them to their TTL.
            "spec": {"function": "tiny", "suspend": True, "ttlSecondsAfterFinished": 10**8},
        }
        made = as_user.create_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, body
        )
        uid = made["metadata"]["uid"]
        # No startTime: a started job gets the operator's finalizer (a write of its own).
        status = {
            "phase": "DONE",
            "jobId": uid,
            "reason": "Succeeded",
            "message": "kept",
            "completionTime": now,
            "accounted": True,
        }
        as_admin.patch_namespaced_custom_object_status(
            c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, f"kept-{i:06d}", {"status": status}
        )
        return uid

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(start, start + count)))


def bulk_archive(dsn: str, namespace: str, user_name: str, count: int) -> float:
    """``count`` archived rows of the user, as the operator writes them (body included), with
    their per-group counts; the seconds it took."""
    started = time.monotonic()
    columns = (
        "job_id, namespace, name, user_name, function, provider, task, phase, submitted_at, "
        "created_at, completed_at, archived_at, result_key, logs_key, body"
    )
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur, cur.copy(f"COPY qso_jobs ({columns}) FROM STDIN") as copy:
            for i in range(count):
                job_id = str(uuid.UUID(int=i + 1, version=4))
                moment = datetime.datetime.fromtimestamp(T0 + i, datetime.UTC)
                name = f"old-{i:07d}"
                body = {
                    "apiVersion": c.API_VERSION,
                    "kind": c.JOB_KIND,
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "uid": job_id,
                        "creationTimestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "annotations": {
                            c.ANNOTATION_SUBMITTER: user_name,
                            c.ANNOTATION_SUBMITTED_AT: f"{T0 + i:.6f}",
                        },
                    },
                    "spec": {"function": "tiny"},
                    "status": {
                        "phase": "DONE",
                        "jobId": job_id,
                        "reason": "Succeeded",
                        "result": {"key": f"{namespace}/{job_id}/result.json"},
                        "logs": {"key": f"{namespace}/{job_id}/logs.txt"},
                    },
                }
                copy.write_row(
                    (
                        job_id,
                        namespace,
                        name,
                        user_name,
                        "tiny",
                        "",
                        False,
                        "DONE",
                        moment,
                        moment,
                        moment,
                        moment,
                        f"{namespace}/{job_id}/result.json",
                        f"{namespace}/{job_id}/logs.txt",
                        json.dumps(body),
                    )
                )
        conn.execute(
            "INSERT INTO qso_job_counts AS c VALUES (%s, %s, 'tiny', '', 'DONE', false, %s) "
            "ON CONFLICT (namespace, user_name, function, provider, phase, task) "
            "DO UPDATE SET n = c.n + excluded.n",
            (namespace, user_name, count),
        )
        conn.execute("ANALYZE qso_jobs")
    return time.monotonic() - started


# --------------------------------------------------------------------------- reads


TIMER = r"""
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
spec = json.loads(sys.argv[1])
samples = []
if spec["kind"] == "rest":
    from qiskit_serverless import ServerlessClient
    rest = ServerlessClient(host=spec["host"], token=spec["token"], instance=spec["namespace"])
    if spec["what"] == "jobs":
        call = lambda: rest.jobs(limit=10)
    else:
        call = lambda: rest.job(spec["job_id"])
else:
    from kubernetes import client as k8s
    from qiskit_serverless_operator.client.kubernetes_client import KubernetesClient
    cfg = k8s.Configuration()
    cfg.host, cfg.ssl_ca_cert = spec["server"], spec["ca"]
    cfg.api_key = {"authorization": "Bearer " + spec["token"]}
    sdk = KubernetesClient(spec["namespace"], api_client=k8s.ApiClient(cfg))
    if spec["what"] == "jobs":
        call = lambda: sdk.jobs(limit=10)
    else:
        # A new client each time: what it remembers of a job would spare the lookup.
        fresh = lambda: KubernetesClient(spec["namespace"], api_client=k8s.ApiClient(cfg))
        call = lambda: fresh().status(spec["job_id"])
import qiskit_serverless_operator
print(qiskit_serverless_operator.__file__, file=sys.stderr)
# Several ids take turns, so that a machine getting busier weighs on each alike.
ids = spec.get("job_ids") or [None]
samples = {str(i): [] for i in ids}
for i in range(spec["warmup"] + spec["requests"]):
    for job_id in ids:
        spec["job_id"] = job_id
        started = time.perf_counter()
        out = call()
        if i >= spec["warmup"]:
            samples[str(job_id)].append((time.perf_counter() - started) * 1000)
        assert out, "an empty answer"
print(json.dumps(samples))
"""


def timed(spec: dict[str, Any], package: Path = REPO / "operator") -> dict[str, list[float]]:
    """Milliseconds per call, from a client process of its own (``package``: whose SDK), per
    job id (``job_ids``, taking turns), or under "None"."""
    # The gateway's certificate is the cluster CA's (only the client trusts it: pip, in the
    # benchmark's own process, must keep trusting the package index).
    env = {**os.environ, "PYTHONPATH": str(package), "REQUESTS_CA_BUNDLE": CA[0]}
    out = subprocess.run(
        [sys.executable, "-c", TIMER, json.dumps({"warmup": 5, **spec})],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"timing {spec['kind']} {spec['what']} failed: {out.stderr[-2000:]}")
    # The package of the code measured, not the one installed in the environment.
    assert str(package) in out.stderr, out.stderr[-500:]
    return json.loads(out.stdout)


def reads(ctx: dict[str, Any], requests: int, live_id: str, archived_id: str | None) -> dict:
    rest = {
        "kind": "rest",
        "host": ctx["gateway"],
        "token": ctx["token"],
        "namespace": ctx["namespace"],
        "requests": requests,
    }
    sdk = {
        "kind": "sdk",
        "server": ctx["server"],
        "ca": ctx["ca"],
        "token": ctx["token"],
        "namespace": ctx["namespace"],
        "requests": requests,
    }
    wait_quiet()
    found = {
        "rest jobs(limit=10)": timed({**rest, "what": "jobs"})["None"],
        "sdk jobs(limit=10)": timed({**sdk, "what": "jobs"})["None"],
    }
    ids = [live_id, *([archived_id] if archived_id else [])]
    for kind, spec in (("rest job(id)", rest), ("sdk status(id)", sdk)):
        by_id = timed({**spec, "what": "job", "job_ids": ids})
        found[f"{kind} live"] = by_id[live_id]
        if archived_id:
            found[f"{kind} archived"] = by_id[archived_id]
    return found


def wait_quiet(timeout: float = 300.0) -> None:
    """Until the machine's CPU stays under half a core for 5 s: the operator done
    with what the set-up gave it to do, so that it weighs on no measurement."""
    cores = os.cpu_count() or 1

    def busy() -> tuple[float, float]:
        ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = ticks[3] + ticks[4]
        return sum(ticks) - idle, sum(ticks)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        used0, all0 = busy()
        time.sleep(5)
        used1, all1 = busy()
        if (used1 - used0) / max(1, all1 - all0) * cores < 0.5:
            return
    print("the machine did not go quiet; measuring anyway", flush=True)


# --------------------------------------------------------------------------- the code before


def base_tree(commit: str) -> Path:
    where = Path(tempfile.mkdtemp(prefix="qso-history-base-"))
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), commit],
        check=True,
        capture_output=True,
    )
    return where


def base_gateway(cluster: dict[str, Any], tree: Path) -> subprocess.Popen[bytes]:
    """The earlier code's REST gateway as a local process (plain HTTP on loopback)."""
    env = {
        **os.environ,
        **{k: v for k, v in site_settings(cluster).items() if v},
        "KUBECONFIG": cluster["kubeconfig"],
        "PYTHONPATH": str(tree / "operator"),
        "QSO_GATEWAY_BIND": "127.0.0.1",
        "QSO_GATEWAY_PORT": "18443",
        "QSO_GATEWAY_HEALTH_BIND": "127.0.0.1",
        "QSO_GATEWAY_HEALTH_PORT": "19099",
    }
    env.pop("QSO_ARCHIVE_DSN", None)
    log = open(Path(cluster["logs"]) / "gateway-history-base.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "qiskit_serverless_operator.gateway"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    import urllib.request

    def up() -> bool:
        try:
            with urllib.request.urlopen("http://127.0.0.1:19099/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    wait_until(up, timeout=60, what="the earlier code's gateway")
    return proc


def before_reads(ctx: dict[str, Any], tree: Path, requests: int) -> dict[str, list[float]]:
    rest = {
        "kind": "rest",
        "host": "http://127.0.0.1:18443",
        "token": ctx["token"],
        "namespace": ctx["namespace"],
        "requests": requests,
        "what": "jobs",
    }
    sdk = {
        "kind": "sdk",
        "server": ctx["server"],
        "ca": ctx["ca"],
        "token": ctx["token"],
        "namespace": ctx["namespace"],
        "requests": requests,
        "what": "jobs",
    }
    wait_quiet()
    return {
        "rest jobs(limit=10)": timed(rest, tree / "operator")["None"],
        "sdk jobs(limit=10)": timed(sdk, tree / "operator")["None"],
    }


# --------------------------------------------------------------------------- the operator


def operator_start(cluster: dict[str, Any], dsn: str, namespace: str, label: str) -> dict:
    """A new operator process with every job present: until it handles a new job (its first
    status), and its memory once idle."""
    custom = client.CustomObjectsApi(client.ApiClient())
    operator = benchmark_operator(cluster, f"operator-history-{label}.log", QSO_ARCHIVE_DSN=dsn)
    started = time.monotonic()
    operator.start()
    assert operator.proc is not None
    op = ProcWatch(operator.proc.pid)
    sentinel = f"sentinel-{label}"
    custom.create_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        namespace,
        c.JOB_PLURAL,
        {
            "apiVersion": c.API_VERSION,
            "kind": c.JOB_KIND,
            "metadata": {"name": sentinel},
            "spec": {"function": "tiny", "suspend": True},
        },
    )

    def handled() -> bool:
        body = custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, sentinel
        )
        return bool((body.get("status") or {}).get("phase"))

    wait_until(handled, timeout=900, what="the new operator handling a new job", interval=0.2)
    handled_seconds = time.monotonic() - started
    wait_idle(op)
    memory = settled_rss(op)
    # Only a start that is still running measured anything (a dead one's job was handled by
    # some other operator).
    if operator.proc.poll() is not None:
        raise RuntimeError(f"the measured operator exited; see {operator.log_path}")
    operator.stop()
    custom.delete_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, sentinel)
    return {"start_seconds": handled_seconds, **memory}


# --------------------------------------------------------------------------- writes


def real_jobs(ctx: dict[str, Any], count: int) -> list[str]:
    from qiskit_serverless import ServerlessClient

    os.environ["REQUESTS_CA_BUNDLE"] = ctx["ca"]
    try:
        rest = ServerlessClient(host=ctx["gateway"], token=ctx["token"], instance=ctx["namespace"])
        jobs = [rest.function("tiny").run() for _ in range(count)]
        return _finished(jobs)
    finally:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)


def _finished(jobs: list[Any]) -> list[str]:
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if all(j.status() in ("DONE", "ERROR", "CANCELED") for j in jobs):
            return [j.job_id for j in jobs]
        time.sleep(2)
    raise RuntimeError("the real jobs did not finish in 15 minutes")


def objects_left(cluster: dict[str, Any], namespace: str) -> dict[str, int]:
    """What is left of the jobs: ServerlessJobs, their Secrets (sj-...), batch Jobs, pods."""
    counts = {}
    for kind, stem in (
        ("serverlessjobs", ""),
        ("secrets", "sj-"),
        ("jobs.batch", ""),
        ("pods", ""),
    ):
        out = kubectl(cluster, "-n", namespace, "get", kind, "-o", "name").stdout.split()
        counts[kind] = len([o for o in out if o.split("/", 1)[1].startswith(stem)])
    return counts


def drain(cluster: dict[str, Any], admin: client.ApiClient, namespace: str, total: int) -> dict:
    """Every job's TTL set to 0; how long until the operator archived and deleted them."""
    custom = client.CustomObjectsApi(admin)
    names = [
        i["metadata"]["name"]
        for i in custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL)[
            "items"
        ]
    ]
    started = time.monotonic()

    def zero(name: str) -> None:
        custom.patch_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            namespace,
            c.JOB_PLURAL,
            name,
            {"spec": {"ttlSecondsAfterFinished": 0}},
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(zero, names))

    def remaining() -> int:
        return len(
            custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL)[
                "items"
            ]
        )

    while remaining():
        if time.monotonic() - started > 3600:
            raise RuntimeError("jobs still waiting for their TTL after an hour")
        time.sleep(5)
    seconds = time.monotonic() - started
    time.sleep(20)  # the garbage collector removes what the jobs owned
    return {"jobs": len(names), "seconds": seconds, "left": objects_left(cluster, namespace)}


# --------------------------------------------------------------------------- tables


def pcts(samples: list[float]) -> tuple[float, float]:
    return percentile(samples, 50), percentile(samples, 99)


def print_reads(empty: dict, full: dict, live: int, archived: int) -> None:
    print(f"\nReads: {live} live jobs; archive empty, then {archived} archived rows (ms)")
    print(
        f"{'call':<26}{'empty p50':>10}{'p99':>8}{'full p50':>10}{'p99':>8}"
        f"{'p50 x':>8}{'p99 x':>8}  goal"
    )
    for key in (
        "rest jobs(limit=10)",
        "sdk jobs(limit=10)",
        "rest job(id) live",
        "sdk status(id) live",
    ):
        a50, a99 = pcts(empty[key])
        b50, b99 = pcts(full[key])
        goal = "<= 1.5x, p50 <= 50 ms" if "jobs(" in key else ""
        print(
            f"{key:<26}{a50:>10.1f}{a99:>8.1f}{b50:>10.1f}{b99:>8.1f}"
            f"{b50 / a50:>8.2f}{b99 / a99:>8.2f}  {goal}"
        )
    for kind in ("rest job(id)", "sdk status(id)"):
        live50, live99 = pcts(full[f"{kind} live"])
        arch50, arch99 = pcts(full[f"{kind} archived"])
        print(
            f"{kind + ' archived':<26}{'':>10}{'':>8}{arch50:>10.1f}{arch99:>8.1f}"
            f"{arch50 / live50:>8.2f}{arch99 / live99:>8.2f}  <= 1.5x live"
        )


def print_before(before: dict[int, dict], after: dict) -> None:
    print("\nThe code before the archive: finished jobs kept in the API server (ms)")
    print(f"{'jobs kept':<12}{'call':<24}{'p50':>8}{'p99':>8}")
    for kept, found in before.items():
        for key, samples in found.items():
            p50, p99 = pcts(samples)
            print(f"{kept:<12}{key:<24}{p50:>8.1f}{p99:>8.1f}")
    for key in ("rest jobs(limit=10)", "sdk jobs(limit=10)"):
        p50, p99 = pcts(after[key])
        print(f"{'now, full':<12}{key:<24}{p50:>8.1f}{p99:>8.1f}")


def mean_of(runs: list[dict]) -> dict:
    return {key: sum(run[key] for run in runs) / len(runs) for key in runs[0]} | {"runs": runs}


def print_operator(empty: dict, full: dict) -> None:
    print(
        f"\nThe operator with every job present (a new process; the mean of "
        f"{len(empty['runs'])} starts of each, taking turns)"
    )
    print(f"{'':<22}{'empty':>10}{'full':>10}{'x':>7}  goal")
    for key, label in (
        ("start_seconds", "start-up (s)"),
        ("rss", "settled RSS (MiB)"),
        ("rss_peak", "peak RSS (MiB)"),
    ):
        each = ", ".join(
            f"{e[key]:.1f}/{f[key]:.1f}" for e, f in zip(empty["runs"], full["runs"], strict=True)
        )
        print(
            f"{label:<22}{empty[key]:>10.1f}{full[key]:>10.1f}"
            f"{full[key] / empty[key]:>7.2f}  <= 1.1x  (empty/full: {each})"
        )


def print_writes(result: dict, real: int) -> None:
    rate = result["jobs"] / result["seconds"]
    print(f"\nWrites: {result['jobs']} finished jobs ({real} of them really ran) through TTL 0")
    print(f"archived and deleted in {result['seconds']:.0f} s: {rate:.1f} jobs/s")
    left = result["left"]
    print(
        "API objects left per job: "
        + ", ".join(f"{k} {v / result['jobs']:.3f}" for k, v in left.items())
        + "  (goal: 0)"
    )


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--live", type=int, default=10_000)
    parser.add_argument("--archived", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--before-requests", type=int, default=30, help="the earlier code's (seconds each)"
    )
    parser.add_argument("--kept", default="5000,10000", help="the earlier code's job counts")
    parser.add_argument("--base", default="1d0769e", help="the commit before the archive")
    parser.add_argument("--real", type=int, default=20, help="jobs that really run")
    parser.add_argument("--starts", type=int, default=2, help="operator starts of each kind")
    args = parser.parse_args()
    kept_steps = sorted(int(k) for k in args.kept.split(",") if k)
    with in_cluster("history") as (cluster, admin, namespace):
        schema, dsn = archive_schema(cluster["archive"]["dsn"])
        schemas = [schema]
        tree = base_tree(args.base)
        gateway = None
        try:
            point_install_at(cluster, dsn)
            token = service_account_token(admin, namespace, USER_SA)
            user = token_client(admin, token)
            user_name = f"system:serviceaccount:{namespace}:{USER_SA}"
            CA.append(cluster["ca"])
            ctx = {
                "gateway": cluster["gateway"],
                "token": token,
                "namespace": namespace,
                "server": admin.configuration.host,
                "ca": cluster["ca"],
            }
            make_function(client.CustomObjectsApi(admin), namespace)
            made = 0
            live_ids: list[str] = []
            before: dict[int, dict] = {}
            gateway = base_gateway(cluster, tree)
            for target in [*kept_steps, args.live]:
                if target > made:
                    print(f"making {target - made} finished jobs ...", flush=True)
                    live_ids += kept_jobs(admin, user, namespace, user_name, made, target - made)
                    made = target
                if target in kept_steps:
                    time.sleep(5)  # the watch caches catch up
                    before[target] = before_reads(ctx, tree, args.before_requests)
            gateway.terminate()
            gateway = None
            live_id = live_ids[len(live_ids) // 2]
            empty = reads(ctx, args.requests, live_id, None)
            # The first operator to see the new jobs does their first-look work (the
            # in-cluster one, paused meanwhile, too): once, before the measured starts.
            operator_start(cluster, dsn, namespace, "warm-up")
            print(f"loading {args.archived} archived rows ...", flush=True)
            load_seconds = bulk_archive(dsn, namespace, user_name, args.archived)
            print(f"loaded in {load_seconds:.0f} s", flush=True)
            archived_id = str(uuid.UUID(int=args.archived // 2, version=4))
            full = reads(ctx, args.requests, live_id, archived_id)
            # The operator's starts take turns between an empty archive (a schema of its
            # own) and the full one: a start with 10,000 jobs varies by seconds with the
            # machine, so one of each would compare the machine, not the archive.
            empty_schema, empty_dsn = archive_schema(cluster["archive"]["dsn"])
            schemas.append(empty_schema)
            starts: dict[str, list[dict]] = {"empty": [], "full": []}
            # Only the measured operator runs: the in-cluster replicas, paused by its higher
            # priority, would resume and re-list every job between two starts.
            scale_operator(cluster, 0)
            try:
                for label in ("empty", "full") * args.starts:
                    wait_quiet()
                    dsn_of = empty_dsn if label == "empty" else dsn
                    starts[label].append(operator_start(cluster, dsn_of, namespace, label))
            finally:
                scale_operator(cluster, 2)
            op_empty, op_full = (mean_of(starts[k]) for k in ("empty", "full"))
            real = real_jobs(ctx, args.real) if args.real else []
            writes = drain(cluster, admin, namespace, made + len(real))
            print_reads(empty, full, args.live, args.archived)
            print_before(before, full)
            print_operator(op_empty, op_full)
            print_writes(writes, len(real))
            with psycopg.connect(dsn) as conn:
                rows = conn.execute("SELECT count(*) FROM qso_jobs").fetchone()[0]
            expected = args.archived + made + len(real)
            print(f"\narchive rows: {rows} (expected {expected}: every job once)")
            return 0 if rows == expected and not any(writes["left"].values()) else 1
        finally:
            if gateway is not None:
                gateway.terminate()
            point_install_at(cluster, cluster["archive"]["dsn"])
            with psycopg.connect(cluster["archive"]["dsn"], autocommit=True) as conn:
                for name in schemas:
                    conn.execute(f"DROP SCHEMA {name} CASCADE")
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                check=False,
                capture_output=True,
            )


if __name__ == "__main__":
    raise SystemExit(main())
