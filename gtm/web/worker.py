"""The background decision worker: applies recorded decisions after the page has answered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gtm.app.ledger import ThreadRow

__all__ = ["DecisionWorker"]

log = logging.getLogger("gtm.web")


class DecisionWorker:
    """Applies recorded decisions in the background, so a page answers at once even when a send
    waits out a pacing gap. A decision is durable before it gets here (`take_decision`)."""

    def __init__(self, apply: Callable[[ThreadRow], Awaitable[ThreadRow]], concurrency: int = 2):
        self._apply = apply
        self._gate = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.errors: dict[int, str] = {}
        """Why applying a draft's decision failed, by draft id, for its page to show."""

    def submit(self, row: ThreadRow) -> None:
        task = asyncio.create_task(self._run(row))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, row: ThreadRow) -> None:
        async with self._gate:
            try:
                done = await self._apply(row)
                log.info("#%s %s: %s → %s", row.id, row.company, row.decision, done.status)
            except Exception as exc:  # noqa: BLE001 - reported on the page; `gtm run` retries it
                self.errors[row.id] = f"{type(exc).__name__}: {exc}"
                log.exception("applying the decision on #%s failed", row.id)

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    @property
    def busy(self) -> int:
        return len(self._tasks)
