"""A function's program folder on its way into a QiskitFunction: inline files or an archive.

Small text-only folders travel inline (``spec.source.files``, mounted from a ConfigMap);
anything bigger or binary goes as a reproducible tar.gz in object storage
(``spec.source.archive``, built into an image). The SDK reads the folder from disk, the
REST gateway from the tar the qiskit-serverless client uploads; both decide here.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import posixpath
import tarfile

# A ConfigMap holds at most 1 MiB; leave room for keys and metadata.
MAX_INLINE_SOURCE_BYTES = 900 * 1024
MAX_INLINE_FILES = 64  # the CRD's maxProperties for spec.source.files
MAX_ARCHIVE_BYTES = 100 * 1024 * 1024
SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".ipynb_checkpoints", ".venv", "venv"})


class SourceError(ValueError):
    """The upload cannot be a function's source; the message says why."""


class NeedsArchive(Exception):
    """The folder does not fit inline in the QiskitFunction (too big, or binary files)."""


def safe_member_path(name: str) -> str | None:
    """A tar member's path, normalised, or None when it would leave the folder."""
    path = posixpath.normpath(name)
    if path in (".", "", "..") or path.startswith(("/", "../")) or "\x00" in path:
        return None
    return path


def skipped(path: str) -> bool:
    return any(part in SKIPPED_DIRS for part in path.split("/"))


def tar_members(data: bytes) -> list[tuple[str, bytes]]:
    """The regular files of an uncompressed or gzipped tar, as (relative path, content),
    sorted; links, devices and paths leaving the folder are refused."""
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SourceError(f"the artifact is not a tar archive: {exc}") from exc
    files: dict[str, bytes] = {}
    total = 0
    with archive:
        for member in archive:
            if member.isdir():
                continue
            path = safe_member_path(member.name)
            if path is None:
                raise SourceError(f"the artifact holds a path outside its folder: {member.name!r}")
            if not member.isfile():
                raise SourceError(
                    f"the artifact holds {member.name!r}, which is not a regular file "
                    "(links and devices are not allowed)"
                )
            if skipped(path):
                continue
            total += member.size
            if total > MAX_ARCHIVE_BYTES:
                raise SourceError(f"the artifact unpacks to over {MAX_ARCHIVE_BYTES} bytes")
            handle = archive.extractfile(member)
            files[path] = handle.read() if handle else b""
    return sorted(files.items())


def inline_files(members: list[tuple[str, bytes]], entrypoint: str) -> dict[str, str]:
    """The files as ``spec.source.files``; NeedsArchive when they do not fit inline."""
    if entrypoint not in dict(members):
        found = ", ".join(path for path, _ in members) or "no files"
        raise SourceError(f"entrypoint {entrypoint!r} is not in the artifact (found: {found})")
    files: dict[str, str] = {}
    size = 0
    for path, content in members:
        try:
            text = content.decode()
        except UnicodeDecodeError as exc:
            raise NeedsArchive(f"{path} is not a text file") from exc
        size += len(content) + len(path)
        files[path] = text
    if size > MAX_INLINE_SOURCE_BYTES or len(files) > MAX_INLINE_FILES:
        raise NeedsArchive(f"{len(files)} files, {size} bytes")
    return files


def pack(members: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A reproducible tar.gz of the files (sorted, zero mtimes, no owners) and its sha256."""
    buffer = io.BytesIO()
    # gzip's own header has a timestamp too: zero it, or equal folders give unequal archives.
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path, content in members:
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    data = buffer.getvalue()
    if len(data) > MAX_ARCHIVE_BYTES:
        raise SourceError(f"the program packs to {len(data)} bytes, over {MAX_ARCHIVE_BYTES}")
    return data, hashlib.sha256(data).hexdigest()
