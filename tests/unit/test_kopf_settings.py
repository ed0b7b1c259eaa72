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
