"""The archive in PostgreSQL: write a finished job once, read jobs by id and by listing.

psycopg 3's async connections, a few kept for reuse (the operator writes from one replica at
a time; each gateway replica reads). Every write is idempotent: archiving a job twice keeps the
first row, deleting a row twice deletes nothing the second time.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from . import schema
from .errors import ArchiveUnavailable
from .query import DUPLICATE_SLACK, JobKey, JobQuery, Scope, merge, newest_first
from .rows import ArchivedJob

log = logging.getLogger(__name__)

_COLUMNS = (
    "job_id",
    "namespace",
    "name",
    "user_name",
    "function",
    "provider",
    "task",
    "parent_job_id",
    "phase",
    "sub_status",
    "reason",
    "message",
    "submitted_at",
    "created_at",
    "started_at",
    "completed_at",
    "resources",
    "result_key",
    "logs_key",
    "provider_logs_key",
    "arguments_ref",
    "runtime_jobs",
    "body",
)
_KEY_COLUMNS = (
    "job_id, namespace, user_name, function, provider, phase, task, submitted_at, archived_at, body"
)


@dataclass(frozen=True)
class Removed:
    """What deleting an archived job leaves to do: its stored objects."""

    job_id: str
    namespace: str
    object_keys: list[str]


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def key_of(row: dict[str, Any]) -> JobKey:
    """An archive row as a listing's key; its body says when it was archived."""
    body = row["body"]
    body.setdefault("status", {})["archivedAt"] = _iso(row["archived_at"])
    return JobKey(
        job_id=str(row["job_id"]),
        namespace=row["namespace"],
        user=row["user_name"],
        function=row["function"],
        provider=row["provider"],
        phase=row["phase"],
        task=row["task"],
        submitted_at=row["submitted_at"].timestamp(),
        body=body,
    )


def _scope_filters(scope: Scope) -> list[sql.Composable]:
    filters: list[sql.Composable] = []
    for column, value in (
        ("namespace", scope.namespace),
        ("user_name", scope.user),
        ("function", scope.function),
        ("provider", scope.provider),
    ):
        if value is not None:
            filters.append(sql.SQL("{} = {}").format(sql.Identifier(column), sql.Literal(value)))
    return filters


def _common_filters(query: JobQuery, counts: bool = False) -> list[sql.Composable]:
    filters: list[sql.Composable] = []
    if not query.include_tasks:
        filters.append(sql.SQL("NOT task"))
    if query.phases is not None:
        filters.append(sql.SQL("phase = ANY({})").format(sql.Literal(list(query.phases))))
    if counts:
        return filters
    if query.created_after is not None:
        after = datetime.datetime.fromtimestamp(query.created_after, datetime.UTC)
        filters.append(sql.SQL("submitted_at >= {}").format(sql.Literal(after)))
    if query.before is not None:
        moment = datetime.datetime.fromtimestamp(query.before[0], datetime.UTC)
        filters.append(
            sql.SQL("(submitted_at, job_id) < ({}, {})").format(
                sql.Literal(moment), sql.Literal(query.before[1])
            )
        )
    return filters


def _where(filters: list[sql.Composable]) -> sql.Composable:
    if not filters:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(filters)


def listing_sql(
    query: JobQuery, scope: Scope, limit: int | None, newer_than: tuple[float, str] | None = None
) -> sql.Composed:
    """The newest ``limit`` archived jobs of one scope (one index scan, read backwards), only
    those newer than ``newer_than`` when given."""
    filters = _scope_filters(scope) + _common_filters(query)
    if newer_than is not None:
        moment = datetime.datetime.fromtimestamp(newer_than[0], datetime.UTC)
        filters.append(
            sql.SQL("(submitted_at, job_id) > ({}, {})").format(
                sql.Literal(moment), sql.Literal(newer_than[1])
            )
        )
    statement = sql.SQL("SELECT {} FROM qso_jobs{} ORDER BY submitted_at DESC, job_id DESC").format(
        sql.SQL(_KEY_COLUMNS), _where(filters)
    )
    if limit is not None:
        statement += sql.SQL(" LIMIT {}").format(sql.Literal(limit))
    return statement


def count_sql(query: JobQuery, scope: Scope) -> sql.Composed:
    """How many archived jobs of one scope match: from the per-group counts, unless a time
    filter needs the rows themselves."""
    if query.created_after is None and query.before is None:
        return sql.SQL("SELECT coalesce(sum(n), 0) FROM qso_job_counts{}").format(
            _where(_scope_filters(scope) + _common_filters(query, counts=True))
        )
    return sql.SQL("SELECT count(*) FROM qso_jobs{}").format(
        _where(_scope_filters(scope) + _common_filters(query))
    )


class Archive:
    """The archive behind one DSN. ``open()`` before use (it also migrates the schema when
    asked: the operator does, the gateway only reads)."""

    def __init__(self, dsn: str, *, max_size: int = 4, timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self._connections = _Connections(dsn, max_size, timeout)

    async def open(self, migrate: bool = False) -> None:
        # Connections are made on first use: a database that is down now must not stop the
        # operator or the gateway from starting.
        if migrate:
            await self.migrate()

    async def close(self) -> None:
        await self._connections.close()

    async def migrate(self) -> int:
        async with self._connection() as conn:
            return await schema.migrate(conn)

    def _connection(self) -> Any:
        return _Guarded(self._connections)

    # ------------------------------------------------------------------ writes

    async def archive(self, job: ArchivedJob) -> bool:
        """Write the job's row (and count it) unless it is there; True if this call wrote it.
        Committed when this returns: only then may the job leave the API server."""
        values = [getattr(job, column) for column in _COLUMNS]
        for index, column in enumerate(_COLUMNS):
            if column in ("resources", "runtime_jobs", "body"):
                values[index] = Jsonb(values[index]) if values[index] is not None else None
        insert = sql.SQL(
            "INSERT INTO qso_jobs ({}) VALUES ({}) ON CONFLICT (job_id) DO NOTHING RETURNING job_id"
        ).format(
            sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
            sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)),
        )
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(insert, values)
            if await cur.fetchone() is None:
                return False
            await conn.execute(
                "INSERT INTO qso_job_counts AS c VALUES (%s, %s, %s, %s, %s, %s, 1) "
                "ON CONFLICT (namespace, user_name, function, provider, phase, task) "
                "DO UPDATE SET n = c.n + 1",
                (job.namespace, job.user_name, job.function, job.provider, job.phase, job.task),
            )
        return True

    async def delete(self, job_id: str) -> Removed | None:
        """Remove an archived job's row; what remains to remove (its objects), or None if
        there was no row."""
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM qso_jobs WHERE job_id = %s RETURNING namespace, user_name, "
                "function, provider, phase, task, result_key, logs_key, provider_logs_key, "
                "objects_deleted_at",
                (job_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            await conn.execute(
                "UPDATE qso_job_counts SET n = n - 1 WHERE namespace = %s AND user_name = %s "
                "AND function = %s AND provider = %s AND phase = %s AND task = %s",
                row[:6],
            )
        keys = [] if row[9] else [k for k in row[6:9] if k]
        return Removed(job_id=job_id, namespace=row[0], object_keys=keys)

    async def objects_due(
        self, completed_before: datetime.datetime, limit: int = 100
    ) -> list[Removed]:
        """Archived jobs whose stored result and logs have outlived their retention."""
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT job_id, namespace, result_key, logs_key, provider_logs_key FROM qso_jobs "
                "WHERE objects_deleted_at IS NULL AND completed_at < %s "
                "ORDER BY completed_at LIMIT %s",
                (completed_before, limit),
            )
            rows = await cur.fetchall()
        return [Removed(str(r[0]), r[1], [k for k in r[2:] if k]) for r in rows]

    async def mark_objects_deleted(self, job_ids: Sequence[str]) -> None:
        async with self._connection() as conn:
            await conn.execute(
                "UPDATE qso_jobs SET objects_deleted_at = now() WHERE job_id = ANY(%s)",
                (list(job_ids),),
            )

    # ------------------------------------------------------------------ reads

    async def get(self, job_id: str) -> JobKey | None:
        async with self._connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(f"SELECT {_KEY_COLUMNS} FROM qso_jobs WHERE job_id = %s", (job_id,))
            row = await cur.fetchone()
        return key_of(row) if row else None

    async def exists(self, job_id: str) -> bool:
        async with self._connection() as conn:
            cur = await conn.execute("SELECT 1 FROM qso_jobs WHERE job_id = %s", (job_id,))
            return await cur.fetchone() is not None

    async def newest(
        self, query: JobQuery, limit: int | None, newer_than: tuple[float, str] | None = None
    ) -> tuple[list[JobKey], bool]:
        """The newest ``limit`` archived jobs of the query over all its scopes (newer than
        ``newer_than`` if given), and whether that is all there are."""
        found: list[JobKey] = []
        exhausted = True
        async with self._connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            for scope in query.scopes:
                await cur.execute(listing_sql(query, scope, limit, newer_than))
                rows = await cur.fetchall()
                if limit is not None and len(rows) == limit:
                    exhausted = False
                found += [key_of(row) for row in rows]
        # Scopes may overlap (a caller's own jobs and a provider's): one row each.
        unique = {key.job_id: key for key in found}
        return newest_first(unique.values())[:limit] if limit else newest_first(
            unique.values()
        ), exhausted

    async def count(self, query: JobQuery) -> int:
        total = 0
        async with self._connection() as conn:
            for scope in query.scopes:
                cur = await conn.execute(count_sql(query, scope))
                row = await cur.fetchone()
                total += int(row[0]) if row else 0
        return total

    async def page(self, query: JobQuery, live: list[JobKey]) -> list[JobKey]:
        """One page of ``query``: the matching ``live`` jobs (newest first) merged with the
        archived ones, each job once."""
        extra = DUPLICATE_SLACK
        window = query.window()
        # Enough live jobs to fill the page: only archived ones newer than the last of them
        # can enter it (for the newest pages, usually none: one empty index range).
        floor = live[window - 1].order if window is not None and len(live) >= window else None
        while True:
            limit = None if window is None else window + extra
            archived, exhausted = await self.newest(query, limit, newer_than=floor)
            page = merge(query, live, archived, exhausted)
            if page is not None:
                return page
            extra *= 4


class _Connections:
    """A few connections kept for reuse, each checked before it is handed out.

    No reconnection schedule of its own (a pool's backoff outlasted a short outage by tens of
    seconds): every request that finds no good connection makes one, so the first request
    after the database is back succeeds."""

    def __init__(self, dsn: str, max_size: int, timeout: float) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots = asyncio.Semaphore(max_size)

    async def get(self) -> psycopg.AsyncConnection:
        try:
            await asyncio.wait_for(self._slots.acquire(), self.timeout)
        except TimeoutError as exc:
            raise ArchiveUnavailable("every archive connection is busy") from exc
        try:
            while self._idle:
                conn = self._idle.pop()
                try:
                    await conn.execute("SELECT 1")  # a server restarted since breaks it
                    return conn
                except psycopg.Error:
                    await conn.close()
            return await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, int(self.timeout))
            )
        except BaseException:
            self._slots.release()
            raise

    async def put(self, conn: psycopg.AsyncConnection, healthy: bool) -> None:
        try:
            if healthy and not conn.closed and not conn.broken:
                self._idle.append(conn)
            else:
                await conn.close()
        finally:
            self._slots.release()

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().close()


class _Guarded:
    """A connection whose failures to reach the database come out as ArchiveUnavailable."""

    def __init__(self, connections: _Connections) -> None:
        self._connections = connections
        self._conn: psycopg.AsyncConnection | None = None

    async def __aenter__(self) -> psycopg.AsyncConnection:
        try:
            self._conn = await self._connections.get()
        except psycopg.OperationalError as exc:
            raise ArchiveUnavailable(f"the archive database is unreachable: {exc}") from exc
        return self._conn

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        assert self._conn is not None
        failed = isinstance(exc, psycopg.OperationalError)
        await self._connections.put(self._conn, healthy=exc is None)
        if failed:
            raise ArchiveUnavailable(f"the archive database failed: {exc}") from exc
        if isinstance(exc, psycopg.errors.UndefinedTable):
            # Nothing has created the tables yet (every component migrates when it can).
            raise ArchiveUnavailable("the archive's tables are not created yet") from exc
        return False
