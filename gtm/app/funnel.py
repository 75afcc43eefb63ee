"""The funnel, counted from the outbox and the events only, per ISO week (Monday 00:00 UTC), per
campaign, against the playbook's goals.

A person is a thread: campaign + account + contact. Stage counts are people, each counted once
per week and stage, in the week the thing happened (`DEFINITIONS` says each stage exactly). An
event counts through the sent touch it was matched to (its channel, tier, seat and prompt
version); an unmatched event is counted as unmatched and never attributed. Events before the
first reported week or after `as_of` are ignored, and so are sends after `as_of`.

Rates are cohort rates, so fresh sends do not drag them down: the accept rate of week W is, of
the people whose first connection request went out in W at least `metrics.accept_window_days`
before `as_of`, the share accepted by `as_of`; the response rates likewise over people first
messaged (LinkedIn) or first emailed and not bounced (email) in W at least
`metrics.response_window_days` before `as_of`. Every rate carries its count and denominator.

`compute_funnel` takes a Workspace (`load_inputs` reads its stores once) or plain
`FunnelInputs`, and makes one pass over the events and one over the sent touches.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gtm.app.escalations import REPLY_KINDS, open_store
from gtm.app.funnel_model import (
    DEFINITIONS,
    Dimension,
    Filters,
    FunnelReport,
)
from gtm.app.funnel_specificity import UNKNOWN, SpecificityTally
from gtm.app.funnel_weeks import NO_DATA, Thread, month_figures, week_figures
from gtm.app.workspace import Workspace
from gtm.domain.models import OutboxEntry
from gtm.domain.playbook import Playbook
from tools.events import EventBrief, StoredEvent
from tools.outbox import SentBrief, iso_week_start

__all__ = ["DEFINITIONS", "FunnelInputs", "compute_funnel", "load_inputs", "NO_DATA"]

_WEEK = timedelta(days=7)
_TEXT_STEPS = frozenset({"linkedin_connect", "linkedin_message", "email"})
_SEND_STAGE = {
    "linkedin_visit": ("linkedin", "visited"),
    "linkedin_connect": ("linkedin", "requested"),
    "linkedin_message": ("linkedin", "messaged"),
    "email": ("email", "sent"),
}
_EVENT_STAGE = {
    "connection_accepted": "accepted",
    "auto_reply": "auto_replies",
    "unsubscribe": "unsubscribed",
    "meeting_booked": "meetings",
    "opportunity": "opportunities",
}


@dataclass(frozen=True)
class FunnelInputs:
    """What the funnel is counted from, as plain data (tests seed it without stores)."""

    sent: Sequence[SentBrief]
    """The outbox's `sent` actions."""
    events: Sequence[EventBrief]
    signals: Mapping[str, tuple[str, ...]]
    """Event key → its classified signals; a reply missing here is not yet classified."""
    playbook_for: Callable[[str], Playbook]
    campaigns: tuple[str, ...] = ()
    """Campaigns to show even when nothing of theirs was sent."""

    @classmethod
    def of(
        cls,
        entries: Iterable[OutboxEntry],
        events: Iterable[StoredEvent],
        signals: Mapping[str, tuple[str, ...]],
        playbook_for: Callable[[str], Playbook],
        campaigns: tuple[str, ...] = (),
    ) -> FunnelInputs:
        """From outbox entries (only `sent` ones are kept, sent at `updated_at`) and stored
        events, as the stores' full readers return them."""
        sent = [
            SentBrief(
                e.key, e.campaign, e.account_id, e.contact_key, e.step, e.channel, e.sender,
                e.updated_at, e.touch.position, e.touch.tier, e.touch.prompt_version,
                e.touch.genericness, e.touch.verdict,
            )
            for e in entries
            if e.state == "sent"
        ]  # fmt: skip
        briefs = [
            EventBrief(s.event.key, s.event.kind, s.event.channel, s.event.at, s.outbox_key)
            for s in events
        ]
        return cls(sent, briefs, signals, playbook_for, campaigns)


@contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """Build hundreds of thousands of small objects without the cyclic collector walking the
    whole heap again and again (none of them forms a cycle): with the model and Chroma loaded,
    those walks cost a third of a report's time. Collection resumes, as it was, afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_inputs(ws: Workspace) -> FunnelInputs:
    """Read the workspace's outbox, events and reply signals once each (no per-row query, no
    message text)."""
    with open_store(ws) as store:
        notes = store.stage_notes("escalated")
    with _no_gc_pauses():
        return FunnelInputs(
            sent=ws.deps.outbox.sent_briefs(),
            events=ws.events.briefs(),
            signals={k: tuple(s for s in v.split(",") if s) for k, v in notes.items()},
            playbook_for=ws.playbook_for,
        )


def _passes(e: SentBrief, f: Filters) -> bool:
    return (
        (f.campaign is None or e.campaign == f.campaign)
        and (f.tier is None or e.tier == f.tier)
        and (f.channel is None or e.channel == f.channel)
        and (f.sender is None or e.sender == f.sender)
        and (f.prompt_version is None or e.prompt_version == f.prompt_version)
    )


def _group(e: SentBrief, by: Dimension | None) -> str:
    if by is None:
        return "all"
    if by == "sender":
        return e.sender
    if by == "tier":
        return UNKNOWN if e.tier is None else f"tier {e.tier}"
    return e.prompt_version or UNKNOWN


def compute_funnel(
    source: Workspace | FunnelInputs,
    *,
    as_of: datetime,
    weeks: int = 8,
    filters: Filters | None = None,
    by: Dimension | None = None,
) -> FunnelReport:
    """The funnel for the `weeks` ISO weeks ending with the one holding `as_of` (see the module
    docstring and `DEFINITIONS`), broken down `by` a touch attribute if asked."""
    if weeks < 1:
        raise ValueError(f"weeks must be at least 1, not {weeks}")
    inp = load_inputs(source) if isinstance(source, Workspace) else source
    with _no_gc_pauses():
        return _count(inp, as_of=as_of, weeks=weeks, filters=filters or Filters(), by=by)


def _count(
    inp: FunnelInputs, *, as_of: datetime, weeks: int, filters: Filters, by: Dimension | None
) -> FunnelReport:
    as_of = as_of.astimezone(UTC)
    start = iso_week_start(as_of) - (weeks - 1) * _WEEK
    books: dict[str, Playbook] = {}

    def pb(campaign: str) -> Playbook:
        if campaign not in books:
            books[campaign] = inp.playbook_for(campaign)
        return books[campaign]

    by_key = {e.key: e for e in inp.sent if e.sent_at <= as_of}
    # (campaign, group, week index, channel, stage) -> people
    people: dict[tuple[str, str, int, str, str], set[Thread]] = defaultdict(set)
    groups: dict[str, set[str]] = defaultdict(set)
    opps_by_month: dict[tuple[str, str], set[Thread]] = defaultdict(set)
    accepted: set[Thread] = set()
    replied: set[Thread] = set()
    replied_touch: set[str] = set()
    bounced_touch: set[str] = set()
    active: set[str] = set()
    unmatched = ignored = 0
    events_seen: set[str] = set()

    for ev in inp.events:
        at = ev.at.astimezone(UTC)
        if at < start or at > as_of:
            ignored += 1
            continue
        touch = by_key.get(ev.outbox_key) if ev.outbox_key else None
        if touch is None:
            unmatched += 1
            continue
        active.add(touch.campaign)
        thread = (touch.campaign, touch.account_id, touch.contact_key)
        sig = inp.signals.get(ev.key)
        reply = ev.kind in REPLY_KINDS and not (sig is not None and set(sig) == {"out_of_office"})
        if ev.kind == "connection_accepted":
            accepted.add(thread)
        elif ev.kind == "bounce":
            bounced_touch.add(touch.key)
        elif reply:
            replied.add(thread)
            replied_touch.add(touch.key)
        if not _passes(touch, filters):
            continue
        c, g, w, ch = touch.campaign, _group(touch, by), int((at - start) / _WEEK), touch.channel
        groups[c].add(g)
        events_seen.add(c)
        if reply:
            people[c, g, w, ch, "replied"].add(thread)
            if sig is None:
                people[c, g, w, ch, "unclassified"].add(thread)
            elif set(sig) & set(pb(c).metrics.positive_signals):
                people[c, g, w, ch, "positive"].add(thread)
        elif ev.kind in REPLY_KINDS or ev.kind == "auto_reply":
            people[c, g, w, ch, "auto_replies"].add(thread)
        elif (stage := _EVENT_STAGE.get(ev.kind)) is not None:
            people[c, g, w, ch, stage].add(thread)
            if stage in ("meetings", "opportunities"):
                people[c, g, w, "all", stage].add(thread)
            if stage == "opportunities":
                opps_by_month[c, f"{at:%Y-%m}"].add(thread)

    first: dict[tuple[Thread, str], SentBrief] = {}
    sent_seen: set[str] = set()
    tally = SpecificityTally()
    for e in by_key.values():
        thread = (e.campaign, e.account_id, e.contact_key)
        t = e.sent_at
        k = (thread, e.step)
        if (cur := first.get(k)) is None or t < cur.sent_at:
            first[k] = e
        if t >= start:
            active.add(e.campaign)
        if t < start or not _passes(e, filters):
            continue
        c, g, w = e.campaign, _group(e, by), int((t - start) / _WEEK)
        groups[c].add(g)
        sent_seen.add(c)
        channel, stage = _SEND_STAGE[e.step]
        people[c, g, w, channel, stage].add(thread)
        if e.step == "email":
            stage = "bounced" if e.key in bounced_touch else "delivered"
            people[c, g, w, channel, stage].add(thread)
        if e.step in _TEXT_STEPS:
            people[c, g, w, "all", "reached"].add(thread)
            window = timedelta(days=pb(c).metrics.response_window_days)
            if t <= as_of - window and e.key not in bounced_touch:
                tally.add(e, e.key in replied_touch)

    # cohorts: (campaign, group, week, rate name) -> [num, den]
    cohorts: dict[tuple[str, str, int, str], list[int]] = defaultdict(lambda: [0, 0])
    for (thread, step), e in first.items():
        t = e.sent_at
        if step not in _TEXT_STEPS or t < start or not _passes(e, filters):
            continue
        m = pb(e.campaign).metrics
        days = m.accept_window_days if step == "linkedin_connect" else m.response_window_days
        if t > as_of - timedelta(days=days) or e.key in bounced_touch:
            continue
        name, hit = {
            "linkedin_connect": ("accept", thread in accepted),
            "linkedin_message": ("linkedin", thread in replied),
            "email": ("email", thread in replied),
        }[step]
        cell = cohorts[e.campaign, _group(e, by), int((t - start) / _WEEK), name]
        cell[0] += hit
        cell[1] += 1

    names = active | set(inp.campaigns)
    if filters.campaign is not None:
        names = {filters.campaign}
    campaigns = tuple(sorted(names))
    mondays = tuple((start + i * _WEEK).date() for i in range(weeks))
    figures = []
    for c in campaigns:
        for g in sorted(groups.get(c) or {"all"}):
            for w, monday in enumerate(mondays):
                figures.append(week_figures(c, g, w, monday, as_of, people, cohorts, pb(c)))
    notes = [
        f"{c}: {NO_DATA}: nothing sent in these weeks" for c in campaigns if c not in sent_seen
    ]
    notes += [
        f"{c}: nothing came back yet (no events in these weeks)"
        for c in campaigns
        if c in sent_seen and c not in events_seen
    ]
    if unmatched:
        notes.append(f"{unmatched} event(s) matched no sent touch: not counted (`gtm events list`)")
    return FunnelReport(
        as_of=as_of,
        weeks=mondays,
        filters=filters,
        by=by,
        campaigns=campaigns,
        figures=tuple(figures),
        months=month_figures(campaigns, start, as_of, opps_by_month, pb),
        specificity=tally.breakdowns(),
        variants=tally.variants(campaigns, {c: pb(c).red_flags.min_sample for c in campaigns}),
        unmatched_events=unmatched,
        ignored_events=ignored,
        notes=tuple(notes),
        definitions=DEFINITIONS,
        limits={c: _limits(pb(c)) for c in campaigns},
    )


def _limits(playbook: Playbook) -> dict[str, float]:
    flags = playbook.red_flags.model_dump(exclude={"min_sample"}, exclude_none=True)
    return {name: float(v) for name, v in flags.items()}
