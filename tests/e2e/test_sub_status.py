"""update_status() from a program reaches the job's status through the operator's endpoint."""

from __future__ import annotations

import base64
import urllib.error
import urllib.parse
import urllib.request

import pytest
from kubernetes import client

from qiskit_serverless_operator.controller.jobspec import GATEWAY_TOKEN_KEY, runtime_secret_name
from tests.kube import kubectl, wait_until
from tests.serverless import custom, get_job, make_function, make_job, wait_job

PROGRAM = """
import time
from qiskit_serverless import update_status, Job
ok = update_status(Job.MAPPING)
print("mapping reported:", ok, flush=True)
time.sleep(20)
"""


def test_update_status_shows_as_sub_status(
    api_client: client.ApiClient, cluster: dict, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_function(api, namespace, "mapper", {"main.py": PROGRAM})
    make_job(api, namespace, "map-1", "mapper")
    _wait_sub_status(api, namespace, "map-1", "MAPPING")
    row = kubectl(cluster, "-n", namespace, "get", "sj", "map-1", "--no-headers").stdout.split()
    assert row[1:4] == ["mapper", "RUNNING", "MAPPING"]
    # With the job's own token, a value that is not a sub-status is a 400; the token is
    # checked first, so the same value from a stranger is a 403 (it learns nothing).
    sj = get_job(api, namespace, "map-1")
    secret = client.CoreV1Api(api_client).read_namespaced_secret(
        runtime_secret_name("map-1"), namespace
    )
    real = base64.b64decode(secret.data[GATEWAY_TOKEN_KEY]).decode()
    url = f"http://{cluster['node_ip']}:8000/api/v1/jobs/{sj['metadata']['uid']}/sub_status/"
    assert _patch(url, real, "DANCING") == 400
    assert _patch(url, f"{namespace}.map-1.not-the-token", "DANCING") == 403
    assert get_job(api, namespace, "map-1")["status"]["subStatus"] == "MAPPING"
    final = wait_job(api, namespace, "map-1", {"DONE", "ERROR"}, timeout=120)["status"]
    assert final["phase"] == "DONE" and "subStatus" not in final


SECRET_DELETED_PROGRAM = """
import time
from qiskit_serverless import save_result, update_status, Job
assert update_status(Job.MAPPING)
time.sleep(25)  # the test deletes the job's runtime Secret meanwhile
assert update_status(Job.POST_PROCESSING), "the job endpoint refused the pod"
save_result({"after": "secret deleted"})
"""


def test_a_deleted_runtime_secret_does_not_cut_the_pod_off(
    api_client: client.ApiClient, cluster: dict, namespace: str, operator
) -> None:
    """The pod keeps the token it started with; the job endpoint checks it against the
    digest in the job's status, so deleting the Secret under a running pod changes nothing."""
    api = custom(api_client)
    make_function(api, namespace, "keeps-on", {"main.py": SECRET_DELETED_PROGRAM})
    make_job(api, namespace, "keep-1", "keeps-on")
    _wait_sub_status(api, namespace, "keep-1", "MAPPING")
    status = get_job(api, namespace, "keep-1")["status"]
    assert len(status["tokenSha256"]) == 64
    client.CoreV1Api(api_client).delete_namespaced_secret(runtime_secret_name("keep-1"), namespace)
    # The program reports POST_PROCESSING only if the endpoint took its call; then it ends.
    final = wait_job(api, namespace, "keep-1", {"DONE", "ERROR"}, timeout=120)["status"]
    assert final["phase"] == "DONE", final
    assert final["result"]["size"] > 0, final


def _wait_sub_status(api: client.CustomObjectsApi, namespace: str, name: str, value: str) -> None:
    wait_until(
        lambda: (get_job(api, namespace, name).get("status") or {}).get("subStatus") == value,
        timeout=180,
        what=f"sub-status {value}",
    )


def _patch(url: str, token: str, value: str) -> int:
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode({"sub_status": value}).encode(),
        method="PATCH",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize(
    ("token", "value", "code"),
    [
        ("", "MAPPING", 401),
        ("ns.job.not-the-token", "MAPPING", 403),
        ("ns.job.x", "DANCING", 403),
    ],
)
def test_endpoint_refuses_bad_tokens_and_values(
    cluster: dict, operator, token: str, value: str, code: int
) -> None:
    url = f"http://{cluster['node_ip']}:8000/api/v1/jobs/0000/sub_status/"
    assert _patch(url, token, value) == code
