"""The archive's tables, as numbered migrations the operator applies at start-up.

Plain SQL in order, each run once (``qso_schema`` holds the number applied), under an
advisory lock so two replicas starting together do not race. A new migration goes at the
end of ``MIGRATIONS``; one already shipped is never edited.
"""

from __future__ import annotations

from psycopg import AsyncConnection

LOCK_KEY = 0x51_53_4F_41  # "QSOA": any constant the project's other locks do not use

MIGRATIONS: tuple[str, ...] = (
    # 1: one row per archived job, and per-group counts for listings' totals.
    """
    CREATE TABLE qso_jobs (
        job_id uuid PRIMARY KEY,
        namespace text NOT NULL,
        name text NOT NULL,
        user_name text NOT NULL,
        function text NOT NULL,
        provider text NOT NULL DEFAULT '',
        task boolean NOT NULL DEFAULT false,
        parent_job_id uuid,
        phase text NOT NULL,
        sub_status text,
        reason text,
        message text,
        submitted_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL,
        started_at timestamptz,
        completed_at timestamptz,
        archived_at timestamptz NOT NULL DEFAULT now(),
        resources jsonb,
        result_key text,
        logs_key text,
        provider_logs_key text,
        arguments_ref text,
        runtime_jobs jsonb NOT NULL DEFAULT '[]',
        objects_deleted_at timestamptz,
        body jsonb NOT NULL
    );
    -- Listings scan one of these newest first (backwards) and stop at the page's end.
    CREATE INDEX qso_jobs_ns_user ON qso_jobs (namespace, user_name, submitted_at, job_id);
    CREATE INDEX qso_jobs_ns ON qso_jobs (namespace, submitted_at, job_id);
    CREATE INDEX qso_jobs_ns_function ON qso_jobs (namespace, function, submitted_at, job_id);
    CREATE INDEX qso_jobs_provider ON qso_jobs (provider, function, submitted_at, job_id)
        WHERE provider <> '';
    CREATE INDEX qso_jobs_all ON qso_jobs (submitted_at, job_id);
    CREATE INDEX qso_jobs_name ON qso_jobs (namespace, name);
    CREATE INDEX qso_jobs_objects ON qso_jobs (completed_at) WHERE objects_deleted_at IS NULL;
    CREATE TABLE qso_job_counts (
        namespace text NOT NULL,
        user_name text NOT NULL,
        function text NOT NULL,
        provider text NOT NULL,
        phase text NOT NULL,
        task boolean NOT NULL,
        n bigint NOT NULL,
        PRIMARY KEY (namespace, user_name, function, provider, phase, task)
    );
    """,
)


async def migrate(conn: AsyncConnection) -> int:
    """Apply the migrations this database lacks; the schema version it is at afterwards."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        await conn.execute("CREATE TABLE IF NOT EXISTS qso_schema (version integer NOT NULL)")
        cur = await conn.execute("SELECT max(version) FROM qso_schema")
        row = await cur.fetchone()
        current = (row[0] if row else None) or 0
        for number, sql in enumerate(MIGRATIONS, start=1):
            if number > current:
                await conn.execute(sql)  # type: ignore[arg-type]
                await conn.execute("INSERT INTO qso_schema (version) VALUES (%s)", (number,))
        return len(MIGRATIONS)
