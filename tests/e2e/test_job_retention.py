"""Retention on the real cluster, with the session's operator and the node's PostgreSQL: a
finished job leaves the API server after its TTL, once archived, with its Secrets and its
batch Job; its result stays in object storage; a copy restored from a backup without its
status never runs again."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from kubernetes import client

from qiskit_serverless_operator import constants as c
from tests.kube import kubectl, wait_until
from tests.serverless import custom, make_function, make_job, read_object, wait_job

PROGRAM = "from qiskit_serverless import save_result\nprint('kept')\nsave_result({'v': 1})\n"


def _gone(api: client.CustomObjectsApi, namespace: str, name: str) -> bool:
    try:
        api.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, name)
    except client.ApiException as exc:
        return exc.status == 404
    return False


def _rows(cluster: dict[str, Any], *job_ids: str) -> list[tuple[str, str]]:
    with psycopg.connect(cluster["archive"]["dsn"]) as conn:
        return conn.execute(
            "SELECT job_id::text, phase FROM qso_jobs WHERE job_id = ANY(%s::uuid[])",
            (list(job_ids),),
        ).fetchall()


def _owned(cluster: dict[str, Any], namespace: str, kind: str, uid: str) -> list[str]:
    out = kubectl(cluster, "-n", namespace, "get", kind, "-o", "json").stdout
    return [
        item["metadata"]["name"]
        for item in json.loads(out)["items"]
        if any(ref.get("uid") == uid for ref in item["metadata"].get("ownerReferences") or [])
    ]


def test_a_finished_job_is_archived_then_deleted_with_its_secrets(
    api_client: client.ApiClient, cluster: dict, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "kept", {"main.py": PROGRAM})
    make_job(api, namespace, "short", "kept", ttlSecondsAfterFinished=3)
    make_job(api, namespace, "long", "kept", ttlSecondsAfterFinished=3600)
    short = wait_job(api, namespace, "short", {"DONE", "ERROR"})
    long = wait_job(api, namespace, "long", {"DONE", "ERROR"})
    assert short["status"]["phase"] == long["status"]["phase"] == "DONE"
    uid = short["metadata"]["uid"]
    # The start wrote the job's id where a restored copy keeps it.
    assert short["metadata"]["annotations"][c.ANNOTATION_JOB_ID] == uid
    assert _owned(cluster, namespace, "secrets", uid)

    wait_until(lambda: _gone(api, namespace, "short"), timeout=60, what="the short TTL")
    assert _rows(cluster, uid) == [(uid, "DONE")]
    wait_until(
        lambda: (
            not _owned(cluster, namespace, "secrets", uid)
            and not _owned(cluster, namespace, "jobs.batch", uid)
        ),
        timeout=60,
        what="its Secrets and batch Job gone with it",
    )
    # The fair-share ledger kept its run: usage outlives the job it came from.
    queue = api.get_cluster_custom_object(c.GROUP, c.VERSION, c.QUEUE_PLURAL, c.QUEUE_NAME)
    assert uid in queue["status"]["accountedJobs"]
    annotations = short["metadata"]["annotations"]
    user = annotations.get(c.ANNOTATION_SUBMITTER) or c.namespace_user(namespace)
    assert queue["status"]["ledger"][user]["seconds"] > 0
    # Its result stays for the archive; the job with the long TTL stays live.
    assert json.loads(read_object(cluster, short["status"]["result"])) == {"v": 1}
    assert not _gone(api, namespace, "long")
    assert _rows(cluster, long["metadata"]["uid"]) == []


def test_a_restored_copy_of_an_archived_job_never_runs_again(
    api_client: client.ApiClient, cluster: dict, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "once", {"main.py": PROGRAM})
    make_job(api, namespace, "once", "once", ttlSecondsAfterFinished=2)
    original = wait_job(api, namespace, "once", {"DONE", "ERROR"})
    assert original["status"]["phase"] == "DONE"
    old = original["metadata"]["uid"]
    wait_until(lambda: _gone(api, namespace, "once"), timeout=60, what="archived and deleted")

    # A backup restored as backup tools do: the object without its status and UID.
    meta = original["metadata"]
    copy = {
        "apiVersion": c.API_VERSION,
        "kind": c.JOB_KIND,
        "metadata": {"name": meta["name"], "annotations": meta["annotations"]},
        "spec": original["spec"],
    }
    made = api.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, copy)
    new = made["metadata"]["uid"]
    assert new != old
    ended = wait_job(api, namespace, "once", {"DONE", "ERROR", "CANCELED"})
    assert ended["metadata"]["uid"] == new
    assert ended["status"]["phase"] == "DONE"
    assert ended["status"]["reason"] == "AlreadyArchived"
    assert old in ended["status"]["message"]
    # It never ran: no batch Job or pod of its own, and it is not archived a second time.
    assert not _owned(cluster, namespace, "jobs.batch", new)
    wait_until(lambda: _gone(api, namespace, "once"), timeout=60, what="the copy removed")
    assert _rows(cluster, old, new) == [(old, "DONE")]
