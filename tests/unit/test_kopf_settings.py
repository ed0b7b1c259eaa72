"""kopf's settings (controller/kopf_settings.py): what the watch-streams ask the API server."""

from __future__ import annotations

import kopf
import pytest

from qiskit_serverless_operator import constants as c
from qiskit_serverless_operator.config import OperatorConfig
from qiskit_serverless_operator.controller.kopf_settings import configure
from tests.unit.operator_env import REQUIRED

pytestmark = pytest.mark.unit


def _configured() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    configure(settings, OperatorConfig.from_env({**REQUIRED, "QSO_JOB_ENDPOINT_URL": "http://g"}))
    return settings


def test_pods_and_batch_jobs_are_filtered_by_the_api_server_to_our_own() -> None:
    selectors = _configured().watching.label_selectors
    own = f"{c.LABEL_MANAGED_BY}={c.MANAGER}"
    assert selectors.collect(kopf.Resource("", "v1", "pods")) == [own]
    assert selectors.collect(kopf.Resource("batch", "v1", "jobs")) == [own]


@pytest.mark.parametrize("plural", [c.JOB_PLURAL, c.FUNCTION_PLURAL, c.QUEUE_PLURAL])
def test_our_own_kinds_are_not_filtered(plural: str) -> None:
    """Jobs and functions come from users: no label of ours is on them."""
    selectors = _configured().watching.label_selectors
    assert selectors.collect(kopf.Resource(c.GROUP, c.VERSION, plural)) == []


def test_other_kinds_named_like_ours_are_not_filtered() -> None:
    """The selector keys name group and version: a CRD's "jobs" elsewhere is left alone."""
    selectors = _configured().watching.label_selectors
    assert selectors.collect(kopf.Resource("example.org", "v1", "jobs")) == []


def _body(kind: str, status: dict | None = None) -> kopf.Body:
    raw = {
        "apiVersion": c.API_VERSION,
        "kind": kind,
        "metadata": {"name": "a", "namespace": "ns", "uid": "u", "annotations": {}},
        "spec": {"function": "f"},
    }
    if status is not None:
        raw["status"] = status
    return kopf.Body(raw)


def test_jobs_have_no_diff_base_written_and_count_as_handled_once_they_have_a_status() -> None:
    storage = _configured().persistence.diffbase_storage
    new_job, handled_job = _body(c.JOB_KIND), _body(c.JOB_KIND, {"phase": "QUEUED"})
    assert storage.fetch(body=new_job) is None  # kopf's creation handlers run
    # Handled: its own diff-base, so kopf sees no change (no update cause, no write).
    assert storage.fetch(body=handled_job) == storage.build(body=handled_job)
    # Nothing of a job is copied to diff: its spec's changes are seen by generation.
    assert storage.build(body=_body(c.JOB_KIND, {"phase": "RUNNING"})) == {}
    patch = kopf.Patch()
    storage.store(body=handled_job, patch=patch, essence=storage.build(body=handled_job))
    assert not patch
    # Functions keep kopf's diff-base annotation.
    function = _body(c.FUNCTION_KIND)
    storage.store(body=function, patch=patch, essence=storage.build(body=function))
    assert f"{c.GROUP}/last-handled-configuration" in patch["metadata"]["annotations"]


def test_a_job_handler_that_succeeds_at_once_leaves_kopf_nothing_to_write() -> None:
    storage = _configured().persistence.progress_storage
    record = {"started": "2026-12-06T00:00:00", "success": True}
    for kind, written in ((c.JOB_KIND, False), (c.FUNCTION_KIND, True)):
        body, patch = _body(kind), kopf.Patch()
        storage.store(key="job_changed", record=record, body=body, patch=patch)
        storage.purge(key="job_changed", body=body, patch=patch)
        marker = f"{c.GROUP}/kopf-managed"
        assert (marker in (patch.get("metadata") or {}).get("annotations", {})) is written, patch
        if not written:
            assert not patch
