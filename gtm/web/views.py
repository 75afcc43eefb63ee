"""What the inbox pages show, computed without templates: the queue, highlighting, links.

The queue is built from the ledger alone (no checkpoint reads) and a page at a time (only the
page's rows are read, counts are SQL aggregates), so 10,000 pending drafts cost what 50 do.
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
from gtm.app.sequence_status import PAST_FIRST_TOUCH, SequenceStanding, sequence_standing
from gtm.app.waiting import Page, WaitingMatch
from gtm.domain.playbook import Playbook
from gtm.domain.qualification import STATE_FIELD, Qualification

__all__ = [
    "QueueFilters",
    "Queue",
    "Group",
    "Sequences",
    "build_queue",
    "batch_allowed",
    "queue_after",
    "queue_neighbours",
    "PAGE_SIZE",
    "build_sequences",
    "FlagRow",
    "flag_rows",
    "fmt_age",
    "marked",
    "qualification_card",
    "source_link",
]

PAGE_SIZE = 50
"""Drafts on one page of the queue."""

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

    def match(self) -> WaitingMatch:
        """The drafts these filters keep in the queue (not those being decided)."""
        return WaitingMatch(
            campaign=self.campaign,
            tier=self.tier,
            channel=self.channel,
            flagged=self.flagged,
            deciding=False,
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
    total: int
    """Drafts of this group matching the filters, on every page."""
    flagged: int
    """Of which flagged by the guardrails."""
    since: datetime
    """When its longest-waiting draft started waiting."""
    rows: list[ThreadRow] = field(default_factory=list)
    """The group's drafts on this page."""

    @property
    def key(self) -> str:
        return f"{self.campaign}-t{self.tier or 0}"


@dataclass
class Queue:
    groups: list[Group]
    """The page's drafts, grouped; a group split across pages shows here with its page's part."""
    total: int
    """Pending drafts before filters."""
    matching: int
    """Pending drafts the filters keep, on every page."""
    page: Page
    now: datetime
    campaigns: list[str]
    since: datetime | None
    """When the longest-waiting matching draft started waiting."""
    filters: QueueFilters

    @property
    def shown(self) -> int:
        """Drafts on this page."""
        return sum(len(g.rows) for g in self.groups)

    def oldest(self, group: Group | None = None) -> timedelta | None:
        since = group.since if group is not None else self.since
        return None if since is None else self.now - since

    def href(self, page: int) -> str:
        """The queue's address at `page`, filters kept."""
        qs = self.filters.query()
        return f"/?{qs}&page={page}" if qs else f"/?page={page}"


def batch_allowed(playbook: Playbook, row: ThreadRow) -> bool:
    """The playbook lets this waiting, unflagged draft be approved in a batch."""
    batch_tiers = {t.tier for t in playbook.tiers if t.review == "batch"}
    return (
        row.status == "waiting_for_approval"
        and not row.flagged
        and row.tier is not None
        and row.tier in batch_tiers
    )


def build_queue(
    ledger: Ledger,
    playbook: Playbook,
    filters: QueueFilters,
    *,
    now: datetime,
    page: int = 1,
    size: int | None = PAGE_SIZE,
) -> Queue:
    """One page of the pending drafts, grouped by campaign and tier (playbook order), oldest
    first in a group. A draft whose decision is being applied has left the queue. Only the
    page's rows are read; totals and group counts are SQL aggregates. A page past the last
    comes back empty: `queue.page.check()` says so."""
    names = {t.tier: t.name for t in playbook.tiers}
    batch_tiers = frozenset(t.tier for t in playbook.tiers if t.review == "batch")
    match = filters.match()
    everything = WaitingMatch(deciding=False)
    matching = match.count(ledger)
    paged = Page(number=page, size=size, total=matching)
    rows = match.rows(ledger, "queue", limit=paged.limit, offset=paged.offset) if matching else []
    tallies = match.groups(ledger) if rows else {}
    groups: dict[tuple[str, int], Group] = {}
    for row in rows:
        key = (row.campaign, row.tier or 0)
        g = groups.get(key)
        if g is None:
            tally = tallies[key]
            g = groups[key] = Group(
                campaign=row.campaign,
                tier=row.tier,
                tier_name=names.get(key[1], "no tier"),
                batch=key[1] in batch_tiers,
                total=tally.total,
                flagged=tally.flagged,
                since=tally.oldest,
            )
        g.rows.append(row)
    return Queue(
        groups=list(groups.values()),
        total=everything.count(ledger) if filters.active else matching,
        matching=matching,
        page=paged,
        now=now,
        campaigns=everything.campaigns(ledger),
        since=match.oldest(ledger),
        filters=filters,
    )


def queue_neighbours(
    ledger: Ledger, filters: QueueFilters, row: ThreadRow
) -> tuple[int | None, int | None]:
    """The ids of the drafts before and after `row` in the queue's order, on any page; (None,
    the first) when `row` is not in the queue."""
    before, after = filters.match().neighbours(ledger, row, "queue")
    return (before.id if before else None, after.id if after else None)


def queue_after(ledger: Ledger, filters: QueueFilters, row: ThreadRow) -> int | None:
    """The draft to show once `row` is decided: the next one, else the one before (the first
    of the queue when `row` is not in it)."""
    before, after = filters.match().neighbours(ledger, row, "queue")
    nxt = after if after is not None else before
    return nxt.id if nxt is not None else None


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
    channel and campaign filters apply; "flagged" is about drafts, not sequences. Only the
    threads past their first touch are read."""
    books: dict[str, Playbook] = {}
    unflagged = QueueFilters(tier=filters.tier, channel=filters.channel, campaign=filters.campaign)
    found: list[SequenceStanding] = []
    clause, args = (
        (f"campaign = ? AND {PAST_FIRST_TOUCH}", [filters.campaign])
        if filters.campaign is not None
        else (PAST_FIRST_TOUCH, [])
    )
    for row in ledger.select(clause, args):
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


def qualification_card(values: Mapping[str, Any]) -> Qualification | None:
    """The thread's qualification card from its checkpointed state, or None: threads
    checkpointed before the card existed have none, and a value that is not a card is ignored
    rather than breaking the draft page."""
    return Qualification.from_state(values.get(STATE_FIELD))


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
