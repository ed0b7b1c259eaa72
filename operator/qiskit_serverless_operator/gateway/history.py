"""Every job the gateway reads, live or archived, through one door.

``JobHistory`` answers the REST API (jobs_api.py) and the history API the SDK and kubectl
use (history_api.py) alike: a job by id is the watch cache's, else one indexed lookup in the
archive; a listing is the matching live jobs merged with the newest archived rows
(archive/query.py), paged on the server. Without an archive it is the live jobs alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..archive.errors import ArchiveUnavailable
from ..archive.query import JobKey, JobQuery, merge
from .errors import GatewayError
from .live import LiveJobs

try:  # the archive's driver is optional: a gateway without an archive never loads it
    from ..archive.store import Archive
except ImportError:  # pragma: no cover - the image always has it
    Archive = None  # type: ignore[assignment,misc]


def unavailable(exc: ArchiveUnavailable) -> GatewayError:
    return GatewayError(503, f"the job archive is unavailable: {exc}")


@dataclass
class JobHistory:
    live: LiveJobs
    archive: Archive | None = None

    async def find(self, job_id: str, namespace: str | None = None) -> JobKey | None:
        """The job with that id (in ``namespace`` when given): live, else archived."""
        key = self.live.get(job_id)
        if key is None and self.archive is not None:
            try:
                key = await self.archive.get(job_id)
            except ArchiveUnavailable as exc:
                raise unavailable(exc) from exc
        if key is None or (namespace is not None and key.namespace != namespace):
            return None
        return key

    async def page(self, query: JobQuery, *, with_count: bool = True) -> tuple[list[JobKey], int]:
        """One page of the query, newest first, and how many jobs match in all."""
        live = self.live.matching(query)
        if self.archive is None:
            page = merge(query, live, [], archive_exhausted=True)
            assert page is not None
            return page, len(live)
        try:
            items = await self.archive.page(query, live)
            archived = await self.archive.count(query) if with_count else 0
        except ArchiveUnavailable as exc:
            raise unavailable(exc) from exc
        # A job between its row's commit and its archived mark counts twice for that moment
        # (it shows once: the merge drops the second copy).
        return items, archived + len(live)
