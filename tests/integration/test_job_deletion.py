"""Deleting a job that never started (apiserver + operator only): it carries no finalizer,
so it goes at once, without waiting on the operator (jobs.needs_cleanup; a started job's
finalizer and clean-up are tests/e2e/test_job_lifecycle.py's)."""

from __future__ import annotations

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from qiskit_serverless_operator import constants as c
from tests.kube import session_operator_paused, wait_until
from tests.serverless import custom, get_job, make_job


def _gone(api: client.CustomObjectsApi, namespace: str, name: str) -> bool:
    try:
        get_job(api, namespace, name)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def test_a_waiting_job_has_no_finalizer_and_is_deleted_at_once(
    api_client: client.ApiClient, namespace: str, operator
) -> None:
    api = custom(api_client)
    make_job(api, namespace, "held", "some_function", suspend=True)
    status = wait_until(
        lambda: get_job(api, namespace, "held").get("status"), timeout=60, what="a status"
    )
    assert (status["phase"], status["reason"]) == ("QUEUED", "Suspended")
    job = get_job(api, namespace, "held")
    assert c.FINALIZER not in (job["metadata"].get("finalizers") or []), job["metadata"]
    # With no operator running the deletion still goes through: nothing waits on it.
    with session_operator_paused():
        api.delete_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.JOB_PLURAL, "held")
        wait_until(lambda: _gone(api, namespace, "held"), timeout=10, what="the job to be gone")
