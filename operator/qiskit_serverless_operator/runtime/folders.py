"""The job's files folders in the pod: ``/data`` (the user's) and ``/function_data`` (the
provider's, for a provider's function), filled before the program starts and kept after.

The pod holds no storage credentials: the operator lists the folders with a download link
per file when it starts the job (``files.json`` in the job's runtime Secret; for a folder too
big for a Secret the job endpoint lists them), and the job endpoint (authenticated with the
job's own token) hands an upload link for each file the program wrote or changed, after
checking its name and the folder's quota. A job whose folders are empty and that writes none
never calls the job endpoint, so it runs even while no operator does.
Only files directly in a folder are kept (the files API has no sub-folders); a file the
program deletes stays in storage (delete it with the files API).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

ATTEMPTS = 3
# How long to keep trying a job endpoint that does not answer (an operator restarting).
PATIENCE_SECONDS = 120.0


class EndpointError(Exception):
    """A call to the job endpoint (or a storage link it gave) failed; the message says why."""


class FolderError(EndpointError):
    """A folder could not be filled or kept; the message says which file and why."""


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def retry(what: str, action, error: type[EndpointError] = FolderError):  # type: ignore[no-untyped-def]
    """Try again on a server error (3 times) or on no answer at all (for up to two minutes:
    the operator may be restarting); a refusal (4xx) is final (``error``, with the answer)."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            with contextlib.suppress(ValueError, AttributeError):
                detail = json.loads(detail).get("message", detail)
            if exc.code < 500 or attempt >= ATTEMPTS:
                raise error(f"{what}: HTTP {exc.code}: {detail}") from exc
        except (OSError, urllib.error.URLError) as exc:
            if time.monotonic() > deadline:
                raise error(f"{what}: {exc}") from exc
        time.sleep(min(attempt, 5))


class Folders:
    def __init__(
        self,
        endpoint: str,
        job_id: str,
        token: str,
        version: str = "v1",
        listing: dict[str, list[dict]] | None = None,
    ) -> None:
        self.url = f"{endpoint.rstrip('/')}/api/{version}/jobs/{job_id}/files/"
        self.token = token
        self.listing = listing
        self.fetched: dict[str, dict[str, str]] = {}  # mount -> name -> sha256 as fetched

    @classmethod
    def from_env(cls, runtime_dir: Path) -> Folders | None:
        """Only in a cluster job (the operator sets QSO_FILES_SYNC), not in local mode."""
        env = os.environ
        needed = ("ENV_JOB_GATEWAY_HOST", "ENV_JOB_ID_GATEWAY", "ENV_JOB_GATEWAY_TOKEN")
        if env.get("QSO_FILES_SYNC") != "1" or not all(env.get(name) for name in needed):
            return None
        listing_file = runtime_dir / "files.json"
        return cls(
            env["ENV_JOB_GATEWAY_HOST"],
            env["ENV_JOB_ID_GATEWAY"],
            env["ENV_JOB_GATEWAY_TOKEN"],
            env.get("ENV_GATEWAY_PROVIDER_VERSION") or "v1",
            listing=json.loads(listing_file.read_text()) if listing_file.exists() else None,
        )

    def _call(self, method: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"{}")

    def download(self) -> int:
        """Fill the folders; returns the number of files fetched."""
        folders = self.listing
        if folders is None:
            folders = retry("listing the job's files", lambda: self._call("GET")).get("folders")
        count = 0
        for mount, entries in (folders or {}).items():
            folder = Path(mount)
            folder.mkdir(parents=True, exist_ok=True)
            self.fetched[mount] = {}
            for entry in entries:
                name = entry["name"]
                if "/" in name or name in {".", ".."}:
                    continue
                target = folder / name

                def fetch(url: str = entry["url"], target: Path = target) -> None:
                    with (
                        urllib.request.urlopen(url, timeout=300) as response,
                        target.open("wb") as out,
                    ):
                        for chunk in iter(lambda: response.read(1 << 20), b""):
                            out.write(chunk)

                retry(f"fetching {mount}/{name}", fetch)
                self.fetched[mount][name] = _digest(target)
                count += 1
        return count

    def upload(self) -> list[str]:
        """Store every file the program wrote or changed; returns the ones stored."""
        stored = []
        for mount, before in self.fetched.items():
            folder = Path(mount)
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if not path.is_file() or path.is_symlink():
                    continue
                digest = _digest(path)
                if before.get(path.name) == digest:
                    continue
                size = path.stat().st_size
                link = retry(
                    f"keeping {mount}/{path.name}",
                    lambda path=path, size=size, mount=mount: self._call(
                        "POST", {"folder": mount, "name": path.name, "size": size}
                    ),
                )

                def put(url: str = link["url"], path: Path = path, size: int = size) -> None:
                    with path.open("rb") as handle:
                        request = urllib.request.Request(
                            url,
                            data=handle,
                            method="PUT",
                            headers={
                                "Content-Type": "application/octet-stream",
                                "Content-Length": str(size),
                            },
                        )
                        with urllib.request.urlopen(request, timeout=600) as response:
                            if response.status >= 300:
                                raise OSError(f"storage answered HTTP {response.status}")

                retry(f"storing {mount}/{path.name}", put)
                stored.append(f"{mount}/{path.name}")
        return stored
