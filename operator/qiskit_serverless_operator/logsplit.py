"""Qiskit Serverless' rules for who sees which log lines (stdlib only).

A program marks a line for the user with ``[PUBLIC] `` and for the provider only with
``[PRIVATE] `` at the start of the line (any case). For a provider's function the user sees
the ``[PUBLIC]`` lines alone, the provider every other line; for a user's own function the
user sees every line. The tag and the one space after it are removed, as the real gateway
does (gateway/core/domain/filter_logs.py).
"""

from __future__ import annotations

import re

_PUBLIC = re.compile(r"^\[PUBLIC\] ?", re.IGNORECASE)
_PRIVATE = re.compile(r"^\[PRIVATE\] ?", re.IGNORECASE)


def _joined(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def user_view(text: str, provider_function: bool) -> str:
    lines = text.splitlines()
    if provider_function:
        return _joined([_PUBLIC.sub("", line, count=1) for line in lines if _PUBLIC.match(line)])
    return _joined([_PRIVATE.sub("", _PUBLIC.sub("", line, count=1), count=1) for line in lines])


def provider_view(text: str) -> str:
    return _joined(
        [_PRIVATE.sub("", line, count=1) for line in text.splitlines() if not _PUBLIC.match(line)]
    )
