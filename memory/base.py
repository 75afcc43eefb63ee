"""The memory seam: what the pipeline remembers about each account between runs."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from gtm.domain.models import Touch

__all__ = ["AccountMemory", "names_person"]


def names_person(touch: Touch, needles: list[str]) -> bool:
    """Whether a record is about a person: its contact or its text names one of `needles`."""
    hay = f"{touch.contact or ''}\n{touch.text}".lower()
    return any(n and n.lower() in hay for n in needles)


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

    async def forget_person(self, needles: list[str], account_ids: list[str] | None = None) -> int:
        """Erase every record naming a person: its contact is, or its text contains, one of
        `needles` (name, email, profile URL; case-insensitive), in `account_ids` if given.
        Returns how many went."""
        ...
