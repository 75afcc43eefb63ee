"""The drafts waiting for approval, a page at a time: `gtm inbox` and the web queue.

Only the page's rows are read from the ledger (SQL `LIMIT`/`OFFSET` over an index in the
listing's order); totals, group counts and the oldest wait come from SQL aggregates. So a queue
of 10,000 drafts costs what a page of 50 costs, plus a few counts.

Two orders, both total (the row id breaks ties), so every draft appears on exactly one page:
`QUEUE` (the web inbox: campaign, then tier in priority order with "no tier" last, then oldest
first) and `OLDEST` (`gtm inbox`: oldest first).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from gtm.app.ledger import Ledger, ThreadRow

__all__ = ["GroupTally", "Page", "WaitingMatch", "Order", "PageError", "page_number"]

Order = Literal["queue", "oldest"]

_TIER_RANK = "(CASE WHEN COALESCE(tier, 0) = 0 THEN 99 ELSE tier END)"
_SINCE = "COALESCE(waiting_since, updated_at)"
_KEYS: dict[Order, tuple[str, ...]] = {
    "queue": ("campaign", _TIER_RANK, _SINCE, "id"),
    "oldest": (_SINCE, "id"),
}
"""The sort keys, written as the ledger's indexes `threads_queue` and `threads_oldest` write
them, so SQLite walks the index instead of sorting."""


class PageError(ValueError):
    """A page number that is not one: not a whole number, below 1, or past the last page."""


def page_number(raw: str | None) -> int:
    """A page number from a query string or an option; absent means the first page."""
    if raw is None or raw.strip() == "":
        return 1
    text = raw.strip()
    if not text.isdigit() or int(text) < 1:
        raise PageError(f"page {raw!r} is not a page number: pages count from 1")
    return int(text)


@dataclass(frozen=True)
class WaitingMatch:
    """Which waiting drafts a listing shows; None means "any"."""

    campaign: str | None = None
    tier: int | None = None
    channel: str | None = None
    flagged: bool | None = None
    deciding: bool = True
    """Include drafts whose decision is recorded and still being applied (`gtm inbox` does;
    the web queue does not: such a draft has left its queue)."""

    def sql(self) -> tuple[str, list[Any]]:
        clause, args = ["status = 'waiting_for_approval'"], list[Any]()
        for column, value in (
            ("campaign", self.campaign),
            ("tier", self.tier),
            ("channel", self.channel),
            ("flagged", None if self.flagged is None else int(self.flagged)),
        ):
            if value is not None:
                clause.append(f"{column} = ?")
                args.append(value)
        if not self.deciding:
            clause.append("pending_decision IS NULL")
        return " AND ".join(clause), args

    def count(self, ledger: Ledger) -> int:
        clause, args = self.sql()
        return int(ledger.aggregate("COUNT(*)", clause, args)[0][0])

    def rows(self, ledger: Ledger, order: Order, *, limit: int, offset: int) -> list[ThreadRow]:
        clause, args = self.sql()
        return ledger.select(
            clause, args, order=", ".join(_KEYS[order]), limit=limit, offset=offset
        )

    def oldest(self, ledger: Ledger) -> datetime | None:
        """When the longest-waiting matching draft started waiting."""
        clause, args = self.sql()
        at = ledger.aggregate(f"MIN({_SINCE})", clause, args)[0][0]
        return datetime.fromisoformat(at) if at else None

    def campaigns(self, ledger: Ledger) -> list[str]:
        clause, args = self.sql()
        return [r[0] for r in ledger.aggregate("campaign", clause, args, group_by="campaign")]

    def groups(self, ledger: Ledger) -> dict[tuple[str, int], GroupTally]:
        """Per campaign and tier (0: none): how many wait, how many are flagged, since when."""
        clause, args = self.sql()
        found = ledger.aggregate(
            f"campaign, COALESCE(tier, 0), COUNT(*), SUM(flagged), MIN({_SINCE})",
            clause,
            args,
            group_by="campaign, COALESCE(tier, 0)",
        )
        return {
            (r[0], r[1]): GroupTally(total=r[2], flagged=r[3], oldest=datetime.fromisoformat(r[4]))
            for r in found
        }

    def neighbours(
        self, ledger: Ledger, row: ThreadRow, order: Order
    ) -> tuple[ThreadRow | None, ThreadRow | None]:
        """The drafts just before and just after `row` in `order`, found by its sort key (no
        page read); (None, the first) when `row` is not among the matching drafts."""
        clause, args = self.sql()
        keys = _KEYS[order]
        if not ledger.select(f"{clause} AND id = ?", [*args, row.id]):
            first = ledger.select(clause, args, order=", ".join(keys), limit=1)
            return None, first[0] if first else None
        tup = f"({', '.join(keys)})"
        mine = f"(SELECT {', '.join(keys)} FROM threads WHERE id = ?)"
        before = ledger.select(
            f"{clause} AND {tup} < {mine}",
            [*args, row.id],
            order=", ".join(f"{k} DESC" for k in keys),
            limit=1,
        )
        after = ledger.select(
            f"{clause} AND {tup} > {mine}", [*args, row.id], order=", ".join(keys), limit=1
        )
        return (before[0] if before else None, after[0] if after else None)


@dataclass(frozen=True)
class GroupTally:
    total: int
    flagged: int
    oldest: datetime


@dataclass(frozen=True)
class Page:
    """Page `number` of `total` items, `size` to a page (size None: everything on one)."""

    number: int
    size: int | None
    total: int
    noun: str = "draft(s)"
    """What is listed, for the messages."""

    @property
    def pages(self) -> int:
        if self.size is None or self.total == 0:
            return 1
        return -(-self.total // self.size)

    @property
    def offset(self) -> int:
        return 0 if self.size is None else (self.number - 1) * self.size

    @property
    def limit(self) -> int:
        return self.total if self.size is None else self.size

    @property
    def first(self) -> int:
        """1-based position of the page's first item (0 on an empty listing)."""
        return min(self.offset + 1, self.total)

    @property
    def last(self) -> int:
        return min(self.offset + self.limit, self.total)

    @property
    def several(self) -> bool:
        return self.pages > 1

    def check(self) -> None:
        """Raise `PageError` for a page past the last one (page 1 always exists)."""
        if self.number > self.pages:
            what = f"{self.total:,} {self.noun} make {self.pages} page(s) of {self.size}"
            raise PageError(f"there is no page {self.number}: {what}")

    def line(self) -> str:
        """`showing 51–100 of 10,000 (page 2 of 200)`."""
        return (
            f"showing {self.first:,}–{self.last:,} of {self.total:,} "
            f"(page {self.number} of {self.pages})"
        )
