"""In-memory twin of account memory, for tests. Recall ranks by shared words."""

from __future__ import annotations

import re

from gtm.domain.models import Touch
from memory.base import names_person

__all__ = ["InMemoryMemory"]


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


class InMemoryMemory:
    def __init__(self) -> None:
        self._items: dict[str, Touch] = {}

    def close(self) -> None:
        pass

    async def remember(self, touch: Touch, *, key: str) -> None:
        self._items[key] = touch

    async def history(self, account_id: str, limit: int = 20) -> list[Touch]:
        mine = [t for t in self._items.values() if t.account_id == account_id]
        return sorted(mine, key=lambda t: t.at, reverse=True)[:limit]

    async def recall(self, account_id: str, query: str, k: int = 5) -> list[Touch]:
        q = _words(query)
        mine = [t for t in self._items.values() if t.account_id == account_id]
        return sorted(mine, key=lambda t: len(q & _words(t.text)), reverse=True)[:k]

    async def similar_drafts(
        self, campaign: str, text: str, *, exclude_account: str, k: int = 5
    ) -> list[tuple[Touch, float | None]]:
        q = _words(text)
        peers = [
            t
            for t in self._items.values()
            if t.kind == "draft" and t.campaign == campaign and t.account_id != exclude_account
        ]
        peers.sort(key=lambda t: len(q & _words(t.text)), reverse=True)
        return [(t, None) for t in peers[:k]]

    async def forget_person(self, needles: list[str], account_ids: list[str] | None = None) -> int:
        keys = [
            k
            for k, t in self._items.items()
            if names_person(t, needles) and (account_ids is None or t.account_id in account_ids)
        ]
        for k in keys:
            del self._items[k]
        return len(keys)

    async def forget_account(self, account_id: str) -> int:
        keys = [k for k, t in self._items.items() if t.account_id == account_id]
        for k in keys:
            del self._items[k]
        return len(keys)
