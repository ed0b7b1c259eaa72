"""Job history on the real cluster (the in-cluster operator and gateway, the node's
PostgreSQL): a finished job is archived and deleted after its TTL, with its Secrets, and
reads the same afterwards through PyPI's ServerlessClient (REST) and through our SDK (the
history API behind the Kubernetes API server); another namespace's user reads none of it;
PostgreSQL stopped while jobs wait to be archived loses and duplicates nothing."""

from __future__ import annotations

import json
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client
from qiskit_serverless import QiskitFunction, ServerlessClient
from qiskit_serverless.exception import QiskitServerlessException

from qiskit_serverless_operator.client.kubernetes_client import KubernetesClient
from tests import faults
from tests.in_cluster import service_account_token
from tests.kube import kubectl, wait_until

warnings.filterwarnings("ignore", category=DeprecationWarning, module="qiskit_serverless")

PROGRAM = """\
from qiskit_serverless import get_arguments, save_result

args = get_arguments()
print(f"history line {args.get('n')}")
save_result({"n": args.get("n"), "squares": [i * i for i in range(4)]})
"""


def _upload(rest: ServerlessClient, title: str, folder: Path) -> Any:
    (folder / "main.py").write_text(PROGRAM)
    return rest.upload(QiskitFunction(title=title, entrypoint="main.py", working_dir=str(folder)))


def _token_client(api_client: client.ApiClient, token: str) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = api_client.configuration.host
    cfg.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


def _wait_done(job: Any, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = job.status()
        if status in ("DONE", "ERROR", "CANCELED"):
            return status
        time.sleep(0.5)
    pytest.fail(f"job {job.job_id} did not finish")


def _sj(cluster: dict[str, Any], namespace: str, job_id: str) -> dict[str, Any] | None:
    out = kubectl(
        cluster,
        "-n",
        namespace,
        "get",
        "sj",
        "--field-selector",
        f"status.jobId={job_id}",
        "-o",
        "json",
    ).stdout
    items = json.loads(out)["items"]
    return items[0] if items else None


def _secrets(cluster: dict[str, Any], namespace: str) -> list[str]:
    out = kubectl(cluster, "-n", namespace, "get", "secrets", "-o", "name").stdout
    return [name.split("/", 1)[1] for name in out.split()]


def _rows(cluster: dict[str, Any], job_ids: list[str]) -> list[str]:
    with psycopg.connect(cluster["archive"]["dsn"]) as conn:
        found = conn.execute(
            "SELECT job_id::text FROM qso_jobs WHERE job_id = ANY(%s::uuid[])", (job_ids,)
        ).fetchall()
    return [r[0] for r in found]


@pytest.fixture
def alice(
    cluster: dict[str, Any],
    namespace: str,
    in_cluster: list[str],
    api_client: client.ApiClient,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    in_cluster.append(namespace)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cluster["ca"])
    monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)
    token = service_account_token(api_client, namespace, "alice")
    return {
        "namespace": namespace,
        "token": token,
        "rest": ServerlessClient(host=cluster["gateway"], token=token, instance=namespace),
        "sdk": KubernetesClient(namespace, api_client=_token_client(api_client, token)),
    }


def test_an_archived_job_reads_the_same_through_rest_and_the_sdk(
    cluster: dict[str, Any],
    alice: dict[str, Any],
    api_client: client.ApiClient,
    tmp_path: Path,
) -> None:
    namespace, rest, sdk = alice["namespace"], alice["rest"], alice["sdk"]
    (tmp_path / "main.py").write_text(PROGRAM)
    fn = rest.upload(
        QiskitFunction(title="history", entrypoint="main.py", working_dir=str(tmp_path))
    )
    older = fn.run(n=1)
    job = fn.run(n=2)
    assert _wait_done(job) == "DONE" and _wait_done(older) == "DONE"
    before = {
        "rest": (job.status(), job.result(), job.logs()),
        "sdk": (sdk.status(job.job_id), sdk.result(job.job_id), sdk.logs(job.job_id)),
    }
    assert before["rest"][1] == {"n": 2, "squares": [0, 1, 4, 9]}
    assert "history line 2" in before["rest"][2]
    name = _sj(cluster, namespace, job.job_id)["metadata"]["name"]
    owned_secrets = [s for s in _secrets(cluster, namespace) if name in s]
    assert owned_secrets  # the runtime and read-link Secrets, until the job goes

    # A platform engineer shortens its TTL; the operator archives it and deletes it.
    kubectl(
        cluster, "-n", namespace, "patch", "sj", name, "--type=merge",
        "-p", '{"spec": {"ttlSecondsAfterFinished": 1}}',
    )  # fmt: skip
    wait_until(
        lambda: _sj(cluster, namespace, job.job_id) is None,
        timeout=60,
        what="the job archived and deleted after its TTL",
    )
    assert _rows(cluster, [job.job_id]) == [job.job_id]
    wait_until(
        lambda: not [s for s in _secrets(cluster, namespace) if name in s],
        timeout=60,
        what="the job's Secrets gone with it",
    )

    # The same answers, from the archive.
    again = rest.job(job.job_id)
    assert (again.status(), again.result(), again.logs()) == before["rest"]
    assert (sdk.status(job.job_id), sdk.result(job.job_id), sdk.logs(job.job_id)) == before["sdk"]
    assert [j.job_id for j in rest.jobs()][:2] == [job.job_id, older.job_id]
    assert [j.job_id for j in sdk.jobs()][:2] == [job.job_id, older.job_id]
    assert [j.job_id for j in sdk.jobs(limit=1, offset=1)] == [older.job_id]
    assert again.stop() in ("Job already in terminal state.", "Job has been stopped.")
    assert sdk.stop(job.job_id) == "Job is already DONE."
    table = kubectl(cluster, "-n", namespace, "get", "serverlessjobrecords").stdout
    line = next(row for row in table.splitlines() if row.startswith(job.job_id))
    assert name in line and "DONE" in line

    # Deleted for good: row, result and logs.
    sdk.delete_job(job.job_id)
    assert _rows(cluster, [job.job_id]) == []
    with pytest.raises(QiskitServerlessException):
        rest.job(job.job_id).status()


def test_another_namespace_reads_no_archived_job(
    cluster: dict[str, Any],
    alice: dict[str, Any],
    api_client: client.ApiClient,
    tmp_path: Path,
) -> None:
    namespace, rest = alice["namespace"], alice["rest"]
    (tmp_path / "main.py").write_text(PROGRAM)
    fn = rest.upload(
        QiskitFunction(title="private", entrypoint="main.py", working_dir=str(tmp_path))
    )
    job = fn.run(n=3)
    assert _wait_done(job) == "DONE"
    name = _sj(cluster, namespace, job.job_id)["metadata"]["name"]
    kubectl(
        cluster, "-n", namespace, "patch", "sj", name, "--type=merge",
        "-p", '{"spec": {"ttlSecondsAfterFinished": 0}}',
    )  # fmt: skip
    wait_until(lambda: _sj(cluster, namespace, job.job_id) is None, timeout=60, what="archived")

    other = f"{namespace}-bob"
    kubectl(cluster, "create", "namespace", other)
    try:
        bob_token = service_account_token(api_client, other, "bob")
        # REST: bob's namespace has no such job (existence is not revealed).
        bob_rest = ServerlessClient(host=cluster["gateway"], token=bob_token, instance=other)
        with pytest.raises(QiskitServerlessException):
            bob_rest.job(job.job_id).status()
        # Naming alice's namespace: not his to use (the client checks at once).
        with pytest.raises(QiskitServerlessException, match="may not list"):
            ServerlessClient(host=cluster["gateway"], token=bob_token, instance=namespace)
        # The SDK through the history API: the cluster's RBAC refuses him.
        bob_sdk = KubernetesClient(namespace, api_client=_token_client(api_client, bob_token))
        with pytest.raises(QiskitServerlessException, match="not allowed"):
            bob_sdk.jobs()
        with pytest.raises(QiskitServerlessException):
            bob_sdk.result(job.job_id)
        # kubectl as bob (a kubeconfig of his own: the admin one would present its certificate).
        kubeconfig = tmp_path / "bob.kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "c",
                            "cluster": {
                                "server": api_client.configuration.host,
                                "certificate-authority": cluster["ca"],
                            },
                        }
                    ],
                    "users": [{"name": "bob", "user": {"token": bob_token}}],
                    "contexts": [{"name": "bob", "context": {"cluster": "c", "user": "bob"}}],
                    "current-context": "bob",
                }
            )
        )
        denied = subprocess.run(
            [f"{cluster['tools']}/kubectl", f"--kubeconfig={kubeconfig}", "-n", namespace,
             "get", "serverlessjobrecords"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied
        # Alice still reads it.
        assert json.loads(alice["sdk"].result(job.job_id)) == {"n": 3, "squares": [0, 1, 4, 9]}
    finally:
        kubectl(cluster, "delete", "namespace", other, "--wait=false", check=False)


def _queue_archive(cluster: dict[str, Any]) -> dict[str, Any]:
    out = kubectl(cluster, "get", "sq", "default", "-o", "json").stdout
    return (json.loads(out).get("status") or {}).get("archive") or {}


def test_postgres_down_while_jobs_wait_loses_and_duplicates_nothing(
    cluster: dict[str, Any], alice: dict[str, Any], tmp_path: Path
) -> None:
    namespace, rest = alice["namespace"], alice["rest"]
    (tmp_path / "main.py").write_text(PROGRAM)
    fn = rest.upload(
        QiskitFunction(title="outage", entrypoint="main.py", working_dir=str(tmp_path))
    )
    with faults.postgres_down():
        jobs = [fn.run(n=n) for n in range(3)]
        # Jobs still run and finish while the archive is down.
        assert [_wait_done(j) for j in jobs] == ["DONE"] * 3
        names = [_sj(cluster, namespace, j.job_id)["metadata"]["name"] for j in jobs]
        for name in names:
            kubectl(
                cluster, "-n", namespace, "patch", "sj", name, "--type=merge",
                "-p", '{"spec": {"ttlSecondsAfterFinished": 0}}',
            )  # fmt: skip
        wait_until(
            lambda: _queue_archive(cluster).get("available") is False,
            timeout=60,
            what="the queue's status saying the archive is unavailable",
        )
        time.sleep(5)  # a few more retention passes: nothing may be deleted meanwhile
        assert all(_sj(cluster, namespace, j.job_id) is not None for j in jobs)
        events = kubectl(cluster, "get", "events", "-A", "-o", "json").stdout
        assert "ArchiveUnavailable" in events
    faults.wait_postgres(cluster)
    wait_until(
        lambda: all(_sj(cluster, namespace, j.job_id) is None for j in jobs),
        timeout=120,
        what="the backlog archived and deleted once PostgreSQL is back",
    )
    ids = [j.job_id for j in jobs]
    assert sorted(_rows(cluster, ids)) == sorted(ids)  # each once
    assert _queue_archive(cluster).get("available") is True
    for job in jobs:
        assert rest.job(job.job_id).status() == "DONE"
