"""What the inbox pages show, computed without templates: the queue, highlighting, links.

The queue is built from the ledger alone (no checkpoint reads), so 1,000 pending drafts render
in a few milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from gtm.app.ledger import Ledger, ThreadRow
from gtm.app.red_flags import StoredFlag, flag_number, shown_figure
from gtm.app.sequence_status import SequenceStanding, sequence_standing
from gtm.domain.playbook import Playbook

__all__ = [
    "QueueFilters",
    "Queue",
    "Group",
    "Sequences",
    "build_queue",
    "build_sequences",
    "FlagRow",
    "flag_rows",
    "fmt_age",
    "marked",
    "source_link",
]

SEQUENCES_SHOWN = 200
"""The queue lists at most this many sequences (soonest due first); `gtm status` lists all."""


@dataclass(frozen=True)
class QueueFilters:
    tier: int | None = None
    channel: str | None = None
    flagged: bool | None = None
    campaign: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> QueueFilters:
        """From a query string or a form; anything unrecognised means "no filter"."""

        def get(name: str) -> str:
            v = params.get(name)
            return v.strip() if isinstance(v, str) else ""

        tier = get("tier")
        flagged = get("flagged")
        channel = get("channel")
        return cls(
            tier=int(tier) if tier.isdigit() else None,
            channel=channel if channel in ("linkedin", "email") else None,
            flagged={"yes": True, "no": False}.get(flagged),
            campaign=get("campaign") or None,
        )

    def query(self) -> str:
        """The filters as a query string, to carry from the queue to a draft and back."""
        pairs = {
            "tier": self.tier,
            "channel": self.channel,
            "flagged": None if self.flagged is None else ("yes" if self.flagged else "no"),
            "campaign": self.campaign,
        }
        return urlencode({k: v for k, v in pairs.items() if v is not None})

    def keep(self, row: ThreadRow) -> bool:
        return (
            (self.tier is None or row.tier == self.tier)
            and (self.channel is None or row.channel == self.channel)
            and (self.flagged is None or row.flagged == self.flagged)
            and (self.campaign is None or row.campaign == self.campaign)
        )

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.tier, self.channel, self.flagged, self.campaign))


@dataclass
class Group:
    campaign: str
    tier: int | None
    tier_name: str
    batch: bool
    """The playbook lets this tier's drafts be approved in a batch."""
    rows: list[ThreadRow] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.campaign}-t{self.tier or 0}"

    @property
    def flagged(self) -> int:
        return sum(r.flagged for r in self.rows)


@dataclass
class Queue:
    groups: list[Group]
    total: int
    """Pending drafts before filters."""
    now: datetime
    campaigns: list[str]
    _batch_tiers: frozenset[int]

    @property
    def shown(self) -> int:
        return sum(len(g.rows) for g in self.groups)

    @property
    def order(self) -> list[int]:
        return [r.id for g in self.groups for r in g.rows]

    def oldest(self, rows: list[ThreadRow] | None = None) -> timedelta | None:
        rows = rows if rows is not None else [r for g in self.groups for r in g.rows]
        if not rows:
            return None
        return self.now - min(_since(r) for r in rows)

    def neighbours(self, row_id: int) -> tuple[int | None, int | None]:
        order = self.order
        if row_id not in order:
            return None, order[0] if order else None
        i = order.index(row_id)
        return (order[i - 1] if i > 0 else None, order[i + 1] if i + 1 < len(order) else None)

    def after(self, row_id: int) -> int | None:
        """The draft to show once `row_id` is decided: the next one, else the one before."""
        prev_id, next_id = self.neighbours(row_id)
        if row_id not in self.order:
            return next_id
        return next_id if next_id is not None else prev_id

    def batch_allowed(self, row: ThreadRow) -> bool:
        return (
            row.status == "waiting_for_approval"
            and not row.flagged
            and row.tier is not None
            and row.tier in self._batch_tiers
        )


def _since(row: ThreadRow) -> datetime:
    return row.waiting_since or row.updated_at


def build_queue(
    ledger: Ledger, playbook: Playbook, filters: QueueFilters, *, now: datetime
) -> Queue:
    """Pending drafts grouped by campaign and tier (playbook order), oldest first in a group.
    A draft whose decision is being applied has left the queue."""
    names = {t.tier: t.name for t in playbook.tiers}
    batch_tiers = frozenset(t.tier for t in playbook.tiers if t.review == "batch")
    waiting = [r for r in ledger.rows(status="waiting_for_approval") if not r.deciding]
    groups: dict[tuple[str, int], Group] = {}
    for row in waiting:
        if not filters.keep(row):
            continue
        tier = row.tier or 0
        g = groups.get((row.campaign, tier))
        if g is None:
            g = groups[(row.campaign, tier)] = Group(
                campaign=row.campaign,
                tier=row.tier,
                tier_name=names.get(tier, "no tier"),
                batch=tier in batch_tiers,
            )
        g.rows.append(row)
    ordered = [groups[k] for k in sorted(groups, key=lambda k: (k[0], k[1] or 99))]
    for g in ordered:
        g.rows.sort(key=lambda r: (_since(r), r.id))
    return Queue(
        groups=ordered,
        total=len(waiting),
        now=now,
        campaigns=sorted({r.campaign for r in waiting}),
        _batch_tiers=batch_tiers,
    )


@dataclass
class Sequences:
    """Threads past their first touch, where each sequence stands, soonest due first."""

    shown: list[SequenceStanding]
    total: int
    """Matching the filters, before the page's limit."""


def build_sequences(
    ledger: Ledger,
    playbook_for: Callable[[str], Playbook],
    filters: QueueFilters,
    *,
    limit: int = SEQUENCES_SHOWN,
) -> Sequences:
    """Every thread whose first touch went out, under its campaign's own playbook. The tier,
    channel and campaign filters apply; "flagged" is about drafts, not sequences."""
    books: dict[str, Playbook] = {}
    unflagged = QueueFilters(tier=filters.tier, channel=filters.channel, campaign=filters.campaign)
    found: list[SequenceStanding] = []
    for row in ledger.rows(campaign=filters.campaign):
        if not unflagged.keep(row):
            continue
        if row.campaign not in books:
            books[row.campaign] = playbook_for(row.campaign)
        if (standing := sequence_standing(row, books[row.campaign])) is not None:
            found.append(standing)
    found.sort(key=lambda s: s.rank)
    return Sequences(shown=found[:limit], total=len(found))


def fmt_age(delta: timedelta | None) -> str:
    if delta is None:
        return "–"
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rem = divmod(minutes, 24 * 60)
    hours, mins = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins}m"
    return f"{mins}m"


def marked(text: str, spans: list[str] | tuple[str, ...]) -> list[tuple[str, bool]]:
    """`text` cut into (segment, is_offending) pieces, every occurrence of every span marked,
    overlaps merged. Spans are verbatim, so they match case and whole words first ("We" is not
    every "we", "500" not the end of "1500"); a span found only in another case still shows.
    The template escapes each piece."""
    hits: list[tuple[int, int]] = []
    for span in {s.strip() for s in spans if s and s.strip()}:
        pattern = (
            (r"(?<!\w)" if span[0].isalnum() else "")
            + re.escape(span)
            + (r"(?!\w)" if span[-1].isalnum() else "")
        )
        found = list(re.finditer(pattern, text)) or list(re.finditer(pattern, text, re.I))
        hits += [(m.start(), m.end()) for m in found]
    hits.sort()
    merged: list[list[int]] = []
    for start, end in hits:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[tuple[str, bool]] = []
    pos = 0
    for start, end in merged:
        if start > pos:
            out.append((text[pos:start], False))
        out.append((text[start:end], True))
        pos = end
    if pos < len(text):
        out.append((text[pos:], False))
    return out


def source_link(source: str) -> str | None:
    """A fact's source as a safe link target: only http(s) URLs become links."""
    parts = urlsplit(source.strip())
    if parts.scheme in ("http", "https") and parts.netloc:
        return source.strip()
    return None


@dataclass(frozen=True)
class FlagRow:
    """An open red flag as the banner shows it: which number, its value, the threshold, the
    sample behind it, the ISO week and the campaign."""

    id: int
    number: str
    value: str
    threshold: str
    sample: int
    week: str
    campaign: str
    message: str


def flag_rows(flags: list[StoredFlag]) -> list[FlagRow]:
    """The banner's rows: rates as percentages, the meetings flag as a count."""
    return [
        FlagRow(
            id=f.id,
            number=flag_number(f.flag),
            value=shown_figure(f.flag, f.value),
            threshold="below " + shown_figure(f.flag, f.threshold, whole=True),
            sample=f.sample,
            week=f"{f.week:%G-W%V} (from {f.week:%Y-%m-%d})",
            campaign=f.campaign,
            message=f.message,
        )
        for f in flags
    ]
