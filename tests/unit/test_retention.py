"""Retention (controller/retention.py): which finished jobs are due to leave the API server,
and the settings that decide it (config.py)."""

from __future__ import annotations

import pytest

from qiskit_serverless_operator.config import ConfigError, OperatorConfig
from qiskit_serverless_operator.controller.jobstore import JobRecord
from qiskit_serverless_operator.controller.retention import due, ttl_of
from tests.unit.operator_env import REQUIRED

pytestmark = pytest.mark.unit

BASE = {**REQUIRED, "QSO_JOB_ENDPOINT_URL": "http://ep:8000"}
ARCHIVE = {**BASE, "QSO_ARCHIVE_DSN": "postgresql://u:p@db/qso"}


def record(
    name: str,
    phase: str | None,
    end: float | None,
    ttl: int | None = None,
    task_parent: str | None = None,
) -> JobRecord:
    return JobRecord(
        namespace="ns",
        name=name,
        uid=f"uid-{name}",
        resource_version="1",
        user="alice",
        phase=phase,
        reason=None,
        admitted=True,
        priority=0,
        submitted=0.0,
        cpu=0,
        memory=0,
        start=None,
        end=end,
        accounted=True,
        position=None,
        message=None,
        task_parent=task_parent,
        ttl=ttl,
    )


def test_settings_default_to_an_hour_and_a_day_with_an_archive_and_keep_without() -> None:
    with_archive = OperatorConfig.from_env(ARCHIVE)
    assert (with_archive.ttl_after_success_seconds, with_archive.ttl_after_failure_seconds) == (
        3600,
        86400,
    )
    assert with_archive.archive_objects_ttl_seconds is None  # as long as the row
    without = OperatorConfig.from_env(BASE)
    assert without.ttl_after_success_seconds is None and without.ttl_after_failure_seconds is None
    kept = OperatorConfig.from_env({**ARCHIVE, "QSO_TTL_AFTER_SUCCESS_SECONDS": "keep"})
    assert kept.ttl_after_success_seconds is None
    at_once = OperatorConfig.from_env({**ARCHIVE, "QSO_TTL_AFTER_FAILURE_SECONDS": "0"})
    assert at_once.ttl_after_failure_seconds == 0


@pytest.mark.parametrize("raw", ["-1", "soon", "1.5"])
def test_a_bad_ttl_setting_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="QSO_TTL_AFTER_SUCCESS_SECONDS"):
        OperatorConfig.from_env({**ARCHIVE, "QSO_TTL_AFTER_SUCCESS_SECONDS": raw})


@pytest.mark.parametrize(
    ("env", "rec", "expected"),
    [
        (ARCHIVE, record("a", "DONE", 0.0), 3600),
        (ARCHIVE, record("a", "ERROR", 0.0), 86400),
        (ARCHIVE, record("a", "CANCELED", 0.0), 86400),
        (ARCHIVE, record("a", "DONE", 0.0, ttl=5), 5),  # the job's own wins
        (BASE, record("a", "DONE", 0.0), None),  # no archive: kept...
        (BASE, record("a", "DONE", 0.0, ttl=0), 0),  # ...unless the job asks
    ],
)
def test_ttl_of(env: dict[str, str], rec: JobRecord, expected: int | None) -> None:
    assert ttl_of(rec, OperatorConfig.from_env(env)) == expected


def test_due_takes_finished_top_level_jobs_past_their_ttl_longest_overdue_first() -> None:
    cfg = OperatorConfig.from_env(ARCHIVE)
    records = [
        record("running", "RUNNING", None),
        record("queued", None, None),
        record("fresh", "DONE", 1000.0),  # due at 4600
        record("overdue", "DONE", 0.0),  # due at 3600
        record("failed", "ERROR", 0.0),  # due at 86400
        record("own-ttl", "ERROR", 990.0, ttl=10),  # due at 1000
        record("task", "DONE", 0.0, task_parent="overdue"),  # goes with its job
    ]
    assert [r.name for r in due(records, cfg, now=5000.0)] == ["own-ttl", "overdue", "fresh"]
    assert [r.name for r in due(records, cfg, now=90000.0)][-1] == "failed"
    assert due(records, cfg, now=999.0) == []
