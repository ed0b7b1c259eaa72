"""Standard status conditions (kstatus style), shared by both kinds."""

from __future__ import annotations

import datetime
from typing import Any


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(
    wanted: dict[str, bool],
    *,
    reason: str,
    message: str,
    generation: int,
    previous: list[dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    """One condition per ``wanted`` type; lastTransitionTime moves only when status flips."""
    before = {cond["type"]: cond for cond in previous or []}
    stamp = now_iso()
    out = []
    for ctype, value in wanted.items():
        status = "True" if value else "False"
        old = before.get(ctype)
        out.append(
            {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message[:1024],
                "observedGeneration": generation,
                "lastTransitionTime": old["lastTransitionTime"]
                if old and old.get("status") == status
                else stamp,
            }
        )
    return out
