"""The archive's one error, importable without the database driver (the operator loads
psycopg only when an archive is configured)."""


class ArchiveUnavailable(Exception):
    """PostgreSQL cannot be reached or refused the request; the message says why."""
