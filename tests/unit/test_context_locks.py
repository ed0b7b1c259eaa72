"""The per-object reconcile locks: they serialize one object's reconciles and vanish after."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from qiskit_serverless_operator.controller.context import Context


def make_context() -> Context:
    # The locks need nothing else of the context.
    none: Any = None
    return Context(config=none, kube=none, store=none)


def test_same_key_is_serialized_and_other_keys_are_not() -> None:
    ctx = make_context()
    trace: list[str] = []

    async def reconcile(key: str, tag: str) -> None:
        async with ctx.lock(key):
            trace.append(f"{tag} in")
            await asyncio.sleep(0.01)
            trace.append(f"{tag} out")

    async def main() -> None:
        await asyncio.gather(
            reconcile("ns/a", "a1"), reconcile("ns/a", "a2"), reconcile("ns/b", "b")
        )

    asyncio.run(main())
    # a1 and a2 never overlap; b runs alongside a1.
    assert trace.index("a1 out") < trace.index("a2 in")
    assert trace.index("b in") < trace.index("a1 out")


def test_a_lock_is_dropped_once_nobody_holds_or_awaits_it() -> None:
    ctx = make_context()

    async def main() -> None:
        for i in range(1000):
            async with ctx.lock(f"ns/job-{i}"):
                await asyncio.sleep(0)

    asyncio.run(main())
    gc.collect()
    assert len(ctx._locks) == 0


def test_a_waiter_keeps_the_lock_it_waits_for() -> None:
    ctx = make_context()
    order: list[int] = []

    async def holder() -> None:
        async with ctx.lock("k"):
            await asyncio.sleep(0.02)
            order.append(1)

    async def waiter() -> None:
        await asyncio.sleep(0.005)
        gc.collect()  # the holder's lock must not be replaced by a fresh one meanwhile
        async with ctx.lock("k"):
            order.append(2)

    async def main() -> None:
        await asyncio.gather(holder(), waiter())

    asyncio.run(main())
    assert order == [1, 2]
