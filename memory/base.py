"""The memory seam: what the pipeline remembers about each account between runs."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from gtm.models import Touch

__all__ = ["AccountMemory"]


@runtime_checkable
class AccountMemory(Protocol):
    """Per-account memory of facts, drafts, decisions and sends.

    Writes are idempotent on `key`: a node that re-runs on resume writes the same record again
    without creating a second one.
    """

    async def remember(self, touch: Touch, *, key: str) -> None: ...

    async def history(self, account_id: str, limit: int = 20) -> list[Touch]:
        """This account's touches, newest first."""
        ...

    async def recall(self, account_id: str, query: str, k: int = 5) -> list[Touch]:
        """This account's touches most similar in meaning to `query`."""
        ...

    async def similar_drafts(
        self, campaign: str, text: str, *, exclude_account: str, k: int = 5
    ) -> list[tuple[Touch, float | None]]:
        """Other accounts' drafts in this campaign closest to `text`, with cosine similarity
        (None if this memory does not embed)."""
        ...

    async def forget_account(self, account_id: str) -> int:
        """Erase everything about an account; returns how many records went."""
        ...
