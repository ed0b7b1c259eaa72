"""The files API's folders: where a user's and a provider's files live in object storage.

Laid out as Qiskit Serverless lays out its storage, one folder per namespace:

- a user's folder: ``files/<namespace>/users/<user>/``, and for a provider's function
  ``files/<namespace>/users/<user>/<provider>/<title>/``: a job sees it as ``/data``;
- a provider's folder for one function: ``files/<namespace>/providers/<provider>/<title>/``:
  a job of that function sees it as ``/function_data``.

A folder holds files only (no sub-folders). The REST gateway reads and writes them for
clients; the operator's job endpoint hands a job's pod links to download them before the
program starts and to store what it wrote after. Both check names and quotas here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .constants import POD_DATA_DIR, POD_FUNCTION_DATA_DIR

ROOT = "files"
USER_MOUNT = POD_DATA_DIR
PROVIDER_MOUNT = POD_FUNCTION_DATA_DIR
MAX_NAME_LENGTH = 255

_SAFE = re.compile(r"[^A-Za-z0-9._@=+-]")


class FileNameError(ValueError):
    """Not a name a file in a folder may have; the message says why."""


class QuotaError(ValueError):
    """Storing it would make the file or its folder bigger than allowed."""


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 100 * 1024 * 1024
    quota_bytes: int = 1024 * 1024 * 1024


def key_part(text: str) -> str:
    """A user or provider name as one path segment (user names hold ':' and may hold '/')."""
    safe = _SAFE.sub("_", text)
    if safe != text or not safe or safe in {".", ".."}:
        safe = f"{safe.strip('.')[:80]}~{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    return safe


def user_folder(namespace: str, user: str, provider: str | None, title: str | None) -> str:
    folder = f"{ROOT}/{namespace}/users/{key_part(user)}/"
    if provider:
        folder += f"{key_part(provider)}/{key_part(title or '')}/"
    return folder


def provider_folder(namespace: str, provider: str, title: str) -> str:
    return f"{ROOT}/{namespace}/providers/{key_part(provider)}/{key_part(title)}/"


def job_folders(
    namespace: str,
    user: str,
    title: str,
    provider: str | None,
    provider_namespace: str | None = None,
) -> dict[str, str]:
    """A job's folders: mount point in its pod -> object-storage prefix. The user's folder is
    in the job's namespace; a provider's, in the function's (the provider's catalog)."""
    folders = {USER_MOUNT: user_folder(namespace, user, provider, title)}
    if provider:
        folders[PROVIDER_MOUNT] = provider_folder(provider_namespace or namespace, provider, title)
    return folders


def check_name(name: str) -> str:
    """A file name as given, if it is one: no folders, no '..', nothing unprintable."""
    if not name:
        raise FileNameError("a file name is required")
    if len(name) > MAX_NAME_LENGTH:
        raise FileNameError(f"file names are at most {MAX_NAME_LENGTH} characters")
    if "/" in name or "\\" in name:
        raise FileNameError(f"{name!r} names a folder; give a plain file name")
    if name in {".", ".."} or name.startswith(".."):
        raise FileNameError(f"{name!r} is not a file name")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise FileNameError("file names cannot hold control characters")
    return name


def check_quota(
    limits: Limits, present: list[tuple[str, int]], name: str, size: int, folder_shown: str
) -> None:
    """Refuse a file over the size limit, or one its folder has no room for (a file of the
    same name is replaced, so its old size does not count)."""
    if size > limits.max_file_bytes:
        raise QuotaError(
            f"{name} is {size} bytes, over the {limits.max_file_bytes} bytes a file may hold"
        )
    used = sum(s for n, s in present if n != name)
    if used + size > limits.quota_bytes:
        raise QuotaError(
            f"{folder_shown} holds {used} bytes; with {name} ({size} bytes) it would be over "
            f"its quota of {limits.quota_bytes} bytes: delete files first"
        )
