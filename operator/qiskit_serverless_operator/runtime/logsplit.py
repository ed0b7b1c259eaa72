"""Qiskit Serverless' rules for who sees which log lines, and the size cap (stdlib only: the
job pod's wrapper uses it, and so do the operator, the SDK and the REST gateway).

A program marks a line for the user with ``[PUBLIC] `` and for the provider only with
``[PRIVATE] `` at the start of the line (any case). For a provider's function the user sees
the ``[PUBLIC]`` lines alone, the provider every other line; for a user's own function the
user sees every line. The tag and the one space after it are removed, as the real gateway
does (gateway/core/domain/filter_logs.py).

Logs are kept to a size (``QSO_MAX_LOG_BYTES``, 50 MiB): past it the oldest lines go, and the
kept tail starts with the real gateway's marker line saying so.
"""

from __future__ import annotations

import re

_PUBLIC = re.compile(r"^\[PUBLIC\] ?", re.IGNORECASE)
_PRIVATE = re.compile(r"^\[PRIVATE\] ?", re.IGNORECASE)


def _joined(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def public_line(line: str) -> str | None:
    """The line as the user of a provider's function sees it, or None when it is not theirs."""
    return _PUBLIC.sub("", line, count=1) if _PUBLIC.match(line) else None


def private_line(line: str) -> str | None:
    """The line as the provider sees it, or None for a line meant for the user."""
    return None if _PUBLIC.match(line) else _PRIVATE.sub("", line, count=1)


def untagged(line: str) -> str:
    return _PRIVATE.sub("", _PUBLIC.sub("", line, count=1), count=1)


def user_view(text: str, provider_function: bool) -> str:
    lines = text.splitlines()
    if provider_function:
        return _joined([kept for line in lines if (kept := public_line(line)) is not None])
    return _joined([untagged(line) for line in lines])


def provider_view(text: str) -> str:
    return _joined([kept for line in text.splitlines() if (kept := private_line(line)) is not None])


def truncation_marker(limit: int) -> bytes:
    return (
        f"[Logs exceeded maximum allowed size ({limit / 1024 / 1024:.1f} MB). Logs have been "
        "truncated, discarding the oldest entries first.]\n"
    ).encode()


def capped(data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes: the newest whole lines, after the marker, when cut."""
    if len(data) <= limit:
        return data
    marker = truncation_marker(limit)
    tail = data[len(data) - max(0, limit - len(marker)) :]
    newline = tail.find(b"\n")
    if 0 <= newline < len(tail) - 1:
        tail = tail[newline + 1 :]  # drop the partial first line
    return marker + tail
