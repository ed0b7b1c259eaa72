"""One page of jobs from the live ones and the archived ones (archive/query.py): the order,
no job twice, no job missing, offsets, and when the archive must be asked for more."""

from __future__ import annotations

import pytest

from qiskit_serverless_operator.archive.query import JobKey, JobQuery, Scope, merge, newest_first

pytestmark = pytest.mark.unit

ALICE = Scope(namespace="ns", user="alice")


def key(n: int, *, phase: str = "DONE", user: str = "alice", task: bool = False) -> JobKey:
    """Job number n, submitted at second n (a higher n is newer)."""
    job_id = f"00000000-0000-0000-0000-{n:012d}"
    return JobKey(
        job_id=job_id,
        namespace="ns",
        user=user,
        function="f",
        provider="",
        phase=phase,
        task=task,
        submitted_at=float(n),
        body={"metadata": {"uid": job_id}},
    )


def ids(keys: list[JobKey] | None) -> list[int] | None:
    return None if keys is None else [int(k.job_id[-12:]) for k in keys]


@pytest.mark.parametrize(
    ("live", "archived", "exhausted", "limit", "offset", "expected"),
    [
        # Only live jobs, only archived ones, both interleaved: newest first.
        ([5, 3, 1], [], True, 10, 0, [5, 3, 1]),
        ([], [6, 4, 2], True, 10, 0, [6, 4, 2]),
        ([5, 3, 1], [6, 4, 2], True, 10, 0, [6, 5, 4, 3, 2, 1]),
        ([5, 3, 1], [6, 4, 2], True, 2, 2, [4, 3]),
        # A job in both places (archived, not yet seen marked) shows once.
        ([5, 4], [5, 4, 3], True, 10, 0, [5, 4, 3]),
        # The archive gave all it was asked for: the page is settled only down to its oldest
        # row; past it the archive may hold older rows that come first.
        ([9, 1], [8, 7, 6], False, 3, 0, [9, 8, 7]),
        ([9, 1], [8, 7, 6], False, 4, 0, [9, 8, 7, 6]),
        ([9, 1], [8, 7, 6], False, 5, 0, None),
        # Duplicates used the rows up: ask again.
        ([8, 7, 6], [8, 7, 6], False, 4, 0, None),
        # No limit: everything, which only an exhausted archive can give.
        ([2], [3, 1], True, None, 0, [3, 2, 1]),
        ([2], [3, 1], False, None, 0, None),
        # An offset past the end is an empty page.
        ([2], [1], True, 5, 10, []),
    ],
)
def test_merge(
    live: list[int],
    archived: list[int],
    exhausted: bool,
    limit: int | None,
    offset: int,
    expected: list[int] | None,
) -> None:
    query = JobQuery(scopes=(ALICE,), limit=limit, offset=offset)
    page = merge(query, [key(n) for n in live], [key(n) for n in archived], exhausted)
    assert ids(page) == expected


def test_query_matches_scopes_and_filters() -> None:
    query = JobQuery(scopes=(ALICE,), phases=("DONE",), created_after=3.0)
    assert query.matches(key(4))
    assert not query.matches(key(2))  # submitted before created_after
    assert not query.matches(key(4, phase="ERROR"))
    assert not query.matches(key(4, user="bob"))
    assert not query.matches(key(4, task=True))  # a job's tasks are parts of it
    assert JobQuery(scopes=(ALICE,), include_tasks=True).matches(key(4, task=True))
    either = JobQuery(scopes=(ALICE, Scope(namespace="ns", user="bob")))
    assert either.matches(key(4, user="bob"))
    before = JobQuery(scopes=(ALICE,), before=key(4).order)
    assert before.matches(key(3)) and not before.matches(key(4))


def test_ties_in_time_are_ordered_by_id() -> None:
    a = JobKey("b", "ns", "u", "f", "", "DONE", False, 1.0, {})
    b = JobKey("a", "ns", "u", "f", "", "DONE", False, 1.0, {})
    assert [k.job_id for k in newest_first([b, a])] == ["b", "a"]
