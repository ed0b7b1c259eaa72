"""The job archive (archive/store.py) against the cluster's real PostgreSQL: migrations,
idempotent archiving, listings merged with live jobs, counts, deletion, object retention.
Each test works in a schema of its own, dropped afterwards."""

from __future__ import annotations

import asyncio
import datetime
import secrets
import urllib.parse
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from qiskit_serverless_operator.archive.query import JobKey, JobQuery, Scope
from qiskit_serverless_operator.archive.rows import ArchivedJob
from qiskit_serverless_operator.archive.store import Archive


@pytest.fixture
def dsn(cluster: dict[str, Any]) -> Iterator[str]:
    base = cluster["archive"]["dsn"]
    schema = f"test_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}?options={urllib.parse.quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def job(n: int, phase: str = "DONE", user: str = "alice", function: str = "f") -> dict:
    uid = f"00000000-0000-4000-8000-{n:012d}"
    return {
        "metadata": {
            "name": f"job-{n}",
            "namespace": "ns",
            "uid": uid,
            "creationTimestamp": "2026-12-07T10:00:00Z",
            "annotations": {
                "serverless.qiskit.org/submitted-at": f"{1_700_000_000 + n:.6f}",
                "serverless.qiskit.org/submitter": user,
                "kopf.zalando.org/last-handled-configuration": "{}",
            },
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"function": function, "arguments": {"inline": {"secret": "x"}}},
        "status": {
            "phase": phase,
            "jobId": uid,
            "completionTime": "2026-12-07T10:01:00Z",
            "result": {"key": f"ns/{uid}/result.json"},
            "logs": {"key": f"ns/{uid}/logs.txt"},
        },
    }


def row(n: int, **kwargs: Any) -> ArchivedJob:
    body = job(n, **kwargs)
    return ArchivedJob.of(body, body["metadata"]["annotations"]["serverless.qiskit.org/submitter"])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def numbers(keys: list[JobKey]) -> list[int]:
    return [int(k.job_id[-12:]) for k in keys]


def test_archive_reads_counts_and_deletes(dsn: str) -> None:
    async def scenario() -> None:
        archive = Archive(dsn)
        await archive.open(migrate=True)
        assert await archive.migrate() == 1  # again: nothing to do
        for n in range(1, 31):
            assert await archive.archive(row(n, phase="DONE" if n % 3 else "ERROR"))
        assert not await archive.archive(row(5))  # the first row stays; counted once
        await archive.archive(row(100, user="bob"))

        alice = Scope(namespace="ns", user="alice")
        page = await archive.page(JobQuery(scopes=(alice,), limit=5, offset=5), [])
        assert numbers(page) == [25, 24, 23, 22, 21]
        assert await archive.count(JobQuery(scopes=(alice,))) == 30
        errors = JobQuery(scopes=(alice,), phases=("ERROR",))
        assert await archive.count(errors) == 10
        assert numbers(await archive.page(errors, [])) == [30, 27, 24, 21, 18, 15, 12, 9, 6, 3]
        # A time filter counts the rows themselves.
        after = JobQuery(scopes=(alice,), created_after=1_700_000_000 + 26)
        assert await archive.count(after) == 5

        # Live jobs (newer and older) merge in; one also archived shows once.
        live = [JobKey.of(job(40), "alice"), JobKey.of(job(29), "alice")]
        merged = await archive.page(JobQuery(scopes=(alice,), limit=4), live)
        assert numbers(merged) == [40, 30, 29, 28]
        # Enough live jobs for the page: only archived rows newer than the last one count.
        assert numbers(await archive.page(JobQuery(scopes=(alice,), limit=2), live)) == [40, 30]
        newer = [JobKey.of(job(n), "alice") for n in (50, 49, 48)]
        assert numbers(await archive.page(JobQuery(scopes=(alice,), limit=3), newer)) == [
            50,
            49,
            48,
        ]

        found = await archive.get(row(7).job_id)
        assert found is not None and found.phase == "DONE"
        assert found.body["status"]["archivedAt"]
        assert "inline" not in found.body["spec"]["arguments"]  # never the arguments
        assert "kopf.zalando.org/last-handled-configuration" not in str(found.body)
        assert "managedFields" not in found.body["metadata"]

        removed = await archive.delete(row(7).job_id)
        assert removed is not None and sorted(removed.object_keys) == sorted(
            [f"ns/{row(7).job_id}/result.json", f"ns/{row(7).job_id}/logs.txt"]
        )
        assert await archive.delete(row(7).job_id) is None
        assert await archive.count(JobQuery(scopes=(alice,))) == 29
        assert await archive.get(row(7).job_id) is None

        # Objects past their retention: the oldest first, once.
        later = datetime.datetime(2026, 12, 8, tzinfo=datetime.UTC)
        due = await archive.objects_due(later, limit=3)
        assert len(due) == 3 and all(item.object_keys for item in due)
        await archive.mark_objects_deleted([item.job_id for item in due])
        assert {i.job_id for i in await archive.objects_due(later, 100)}.isdisjoint(
            {i.job_id for i in due}
        )
        await archive.close()

    run(scenario())


def test_an_unreachable_archive_is_a_clear_error() -> None:
    from qiskit_serverless_operator.archive.errors import ArchiveUnavailable

    async def scenario() -> None:
        archive = Archive("postgresql://qso:x@127.0.0.1:1/none", timeout=2.0)
        await archive.open()
        with pytest.raises(ArchiveUnavailable, match="unreachable"):
            await archive.get("00000000-0000-4000-8000-000000000001")
        await archive.close()

    run(scenario())
