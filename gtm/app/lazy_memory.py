"""Account memory opened on first use, for commands that seldom or never touch it.

Opening Chroma imports chromadb (and with it onnxruntime's neighbours): most of a second before a
command can start. `gtm inbox` and `gtm status` list what the ledger holds and never read memory,
so `open_workspace(..., memory_on_demand=True)` hands them this stand-in: the real memory is built
by the first call that needs it and closed with the workspace; if nothing used it, nothing was
opened and closing does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from gtm.domain.models import Touch
from memory.base import AccountMemory

__all__ = ["ClosableMemory", "LazyMemory"]


class ClosableMemory(AccountMemory, Protocol):
    """A memory the workspace closes when the command ends."""

    def close(self) -> None: ...


class LazyMemory:
    """An `AccountMemory` that builds the real one with `open_` when first used.

    Every call is the real memory's own call, so erasure (`gtm forget`), history and the review's
    near-duplicate search behave exactly as with the memory opened up front. Once closed it stays
    closed: a later call fails instead of silently opening a second one.
    """

    def __init__(self, open_: Callable[[], ClosableMemory]) -> None:
        self._open = open_
        self._real: ClosableMemory | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def opened(self) -> bool:
        """Whether the real memory was built (by a call, or by `open`)."""
        return self._real is not None

    def open(self) -> ClosableMemory:
        """The real memory, built now if no call has built it yet."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this workspace's memory is closed")
            if self._real is None:
                self._real = self._open()
            return self._real

    def close(self) -> None:
        with self._lock:
            self._closed = True
            real, self._real = self._real, None
        if real is not None:
            real.close()

    async def remember(self, touch: Touch, *, key: str) -> None:
        await self.open().remember(touch, key=key)

    async def history(self, account_id: str, limit: int = 20) -> list[Touch]:
        return await self.open().history(account_id, limit)

    async def recall(self, account_id: str, query: str, k: int = 5) -> list[Touch]:
        return await self.open().recall(account_id, query, k)

    async def similar_drafts(
        self, campaign: str, text: str, *, exclude_account: str, k: int = 5
    ) -> list[tuple[Touch, float | None]]:
        return await self.open().similar_drafts(
            campaign, text, exclude_account=exclude_account, k=k
        )

    async def forget_account(self, account_id: str) -> int:
        return await self.open().forget_account(account_id)

    async def forget_person(self, needles: list[str], account_ids: list[str] | None = None) -> int:
        return await self.open().forget_person(needles, account_ids)
