"""kopf's watch events without ``metadata.managedFields``.

Server-side field tracking is most of a ServerlessJob's body: of a waiting job's 20 KB as
Python objects, 12 KB are managedFields (three managers: the creator, kopf, the operator's
status writes). Nothing in kopf or in the handlers reads them, but kopf holds every event
body until a worker takes it, and a burst of 10,000 new jobs is thousands of bodies waiting
at once: the operator's peak memory (benchmarks/queue_burst.py, 10,000 present), and the
heap left fragmented after it.

The API server cannot leave them out of a watch, and kopf has no hook for its events, so
its one JSON decoder of watch streams (``kopf._cogs.clients.api.stream``) is given a
``json`` that drops them right after parsing. kopf is pinned (pyproject); the unit test
checks that this is still the call kopf makes, so an upgrade that moves it fails there.
"""

from __future__ import annotations

import json
from typing import Any

from kopf._cogs.clients import api as kopf_api


def loads(text: str | bytes, **kwargs: Any) -> Any:
    """``json.loads`` of one watch event, its object's managedFields dropped."""
    event = json.loads(text, **kwargs)
    obj = event.get("object") if isinstance(event, dict) else None
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return event


class _Json:
    """What kopf's API module uses of ``json`` (only ``loads``), the rest as it is."""

    loads = staticmethod(loads)

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)


def install() -> None:
    """Idempotent; before kopf starts its watch streams (the start-up handler)."""
    kopf_api.json = _Json()  # type: ignore[assignment]
