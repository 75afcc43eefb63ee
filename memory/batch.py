"""Group commit: calls that arrive while one is in progress go to the store together.

Chroma spends most of an upsert on the commit, not the record: measured on Chroma 1.5, one
record per call costs 6.3 ms of CPU, sixteen per call 0.67 ms each. Concurrent account threads
each `remember` a record; here they share one call. The embedding model, too, runs a batch more
cheaply than its texts one by one. Each caller still returns only when its own item is done
(or raises what doing it raised), so nothing about durability changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Collects items per event loop and runs `run(batch)` (one result per item, in order) in
    a worker thread, one batch at a time. If a batch fails, its items are run one by one, so
    each caller gets its own item's outcome."""

    def __init__(self, run: Callable[[list[T]], list[R]]) -> None:
        self._run = run
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[T, asyncio.Future[R]]]] = {}
        self._flushers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[R] = loop.create_future()
        self._pending.setdefault(loop, []).append((item, done))
        if loop not in self._flushers:
            self._flushers[loop] = loop.create_task(self._flush(loop))
        return await asyncio.shield(done)  # a cancelled caller does not cancel the others'

    async def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while batch := self._pending.pop(loop, []):
                await self._run_batch(batch)
        finally:
            del self._flushers[loop]
            # Left only if this task was cancelled (its loop is closing): nobody is left to
            # run them, so their callers hear it instead of waiting forever.
            for _, done in [*batch, *self._pending.pop(loop, [])]:
                if not done.done():
                    done.set_exception(RuntimeError("abandoned: the event loop stopped"))

    async def _run_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await asyncio.to_thread(self._run, [item for item, _ in batch])
        except Exception:  # noqa: BLE001 - isolate the item that fails
            for item, done in batch:
                try:
                    one = await asyncio.to_thread(self._run, [item])
                except Exception as exc:  # noqa: BLE001 - its caller raises it
                    if not done.done():
                        done.set_exception(exc)
                else:
                    if not done.done():
                        done.set_result(one[0])
        else:
            for (_, done), result in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(result)
