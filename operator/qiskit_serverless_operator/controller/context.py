"""What every handler shares: configuration, API access, object storage, per-job locks.

Built once by the startup handler. Nothing here is state the operator would lose
on a crash: the locks only serialize this process's own concurrent reconciles.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

from ..config import OperatorConfig
from ..kube import Kube
from ..storage import ObjectStore


@dataclass
class Context:
    config: OperatorConfig
    kube: Kube
    store: ObjectStore
    locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))


_current: Context | None = None


def set_context(ctx: Context) -> None:
    global _current
    _current = ctx


def get_context() -> Context:
    if _current is None:
        raise RuntimeError("the operator context is not initialised (startup did not run)")
    return _current
