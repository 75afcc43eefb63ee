"""The inbox's report page (`GET /report`): the funnel against the playbook's goals, its red
flags and its charts, with the filters campaign, tier, channel, seat and weeks.

It shows what `gtm report` writes (the same `compute_funnel`, `report_charts` and the words of
`gtm.app.report_words`), laid out for the inbox, whose Content-Security-Policy forbids inline
style and script: the charts are `gtm.app.charts`' SVG, which carries neither.

Computed on each request: the funnel over 100,000 events takes about a second, which is fine
for a page a founder opens on Monday (a cache keyed by the stores' last write would be the next
step). The stores are read on the event loop's thread (SQLite connections stay in the thread
that opened them); counting and drawing, which touch only plain data, run in a worker thread
so the queue keeps answering meanwhile.

A filter that is not valid (a campaign or seat that has sent nothing, a tier that is not a
number, weeks outside 1..52, a parameter given twice) is a 400 page naming the parameter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from gtm.app.charts import week_label
from gtm.app.funnel import FunnelInputs, compute_funnel, load_inputs
from gtm.app.funnel_model import Filters, FunnelReport, WeekFigures
from gtm.app.red_flags import RedFlag, evaluate, open_flags
from gtm.app.report import chart_view
from gtm.app.report_charts import Chart, report_charts
from gtm.app.report_words import (
    NO_DATA,
    Stage,
    campaign_figures,
    campaign_flags,
    filters_text,
    goal_rows,
    headline_weeks,
    is_empty,
    notes,
    rate_and_interval,
    shown_stages,
    stage_cell,
    week_heading,
)
from gtm.domain.models import Channel
from gtm.domain.playbook import Playbook
from gtm.web.security import inbox_of, login_required, session_of
from gtm.web.views import flag_rows

__all__ = ["BadFilter", "ReportParams", "WEEKS_MAX", "build_view", "report_page"]

WEEKS_MAX = 52
"""The most ISO weeks one page reports (a year)."""
_WEEKS_DEFAULT = 8
_NAMES = ("campaign", "tier", "channel", "seat", "weeks")


class BadFilter(ValueError):
    """A report filter that is not valid: `name` is the query parameter, the message says why."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name}: {why}")
        self.name = name


def _shown(value: str) -> str:
    """A submitted value quoted in an error message, cut short."""
    return repr(value if len(value) <= 60 else value[:60] + "…")


@dataclass(frozen=True)
class ReportParams:
    """The report page's filters, validated; None means any."""

    campaign: str | None = None
    tier: int | None = None
    channel: Channel | None = None
    seat: str | None = None
    weeks: int = _WEEKS_DEFAULT

    @classmethod
    def parse(
        cls, params: QueryParams, *, campaigns: Collection[str], seats: Collection[str]
    ) -> ReportParams:
        """From the page's query string; raises `BadFilter` naming the first bad parameter.
        An empty value is no filter; parameters the page does not use are ignored."""
        values: dict[str, str] = {}
        for name in _NAMES:
            given = params.getlist(name)
            if len(given) > 1:
                raise BadFilter(name, "give it at most once")
            values[name] = given[0].strip() if given else ""
        campaign, tier, channel, seat, weeks = (values[n] for n in _NAMES)
        if campaign and campaign not in campaigns:
            raise BadFilter("campaign", f"no campaign named {_shown(campaign)}")
        if tier and not (tier.isascii() and tier.isdigit() and 1 <= int(tier) <= 99):
            raise BadFilter("tier", f"a tier is a number like 1, 2 or 3, not {_shown(tier)}")
        if channel not in ("", "linkedin", "email"):
            raise BadFilter("channel", f"linkedin or email, not {_shown(channel)}")
        if seat and seat not in seats:
            raise BadFilter("seat", f"no seat {_shown(seat)} has sent anything")
        if weeks and not (weeks.isascii() and weeks.isdigit() and 1 <= int(weeks) <= WEEKS_MAX):
            raise BadFilter("weeks", f"a whole number from 1 to {WEEKS_MAX}, not {_shown(weeks)}")
        return cls(
            campaign=campaign or None,
            tier=int(tier) if tier else None,
            channel="email" if channel == "email" else ("linkedin" if channel else None),
            seat=seat or None,
            weeks=int(weeks) if weeks else _WEEKS_DEFAULT,
        )

    def filters(self) -> Filters:
        return Filters(
            campaign=self.campaign, tier=self.tier, channel=self.channel, sender=self.seat
        )

    @property
    def whole_campaigns(self) -> bool:
        """No filter below the campaign: the red flags can be evaluated (they are about a
        campaign as a whole)."""
        return self.tier is None and self.channel is None and self.seat is None

    def query(self) -> str:
        pairs = {"campaign": self.campaign, "tier": self.tier, "channel": self.channel}
        pairs |= {"seat": self.seat, "weeks": None if self.weeks == _WEEKS_DEFAULT else self.weeks}
        return urlencode({k: v for k, v in pairs.items() if v is not None})


def _table(
    report: FunnelReport, figs: Sequence[WeekFigures], stages: Sequence[Stage]
) -> dict[str, Any]:
    return {
        "head": [week_heading(report, f.week) for f in figs],
        "rows": [(ch, st, [stage_cell(get(f)) for f in figs]) for ch, st, get in stages],
    }


def build_view(
    report: FunnelReport, charts: Sequence[Chart], flags: Sequence[RedFlag] | None
) -> dict[str, Any]:
    """What the page shows, per campaign and for the whole report; `flags` is None when the
    filters keep the red flags from being evaluated."""
    per_campaign: dict[str, list[dict[str, Any]]] = {c: [] for c in report.campaigns}
    overall: list[dict[str, Any]] = []
    for ch in charts:
        owner = ch.campaign
        mine = overall if owner is None or owner not in per_campaign else per_campaign[owner]
        mine.append(chart_view(ch))
    headline = headline_weeks(report)
    labels = {week_label(w) for w in headline} | {f"{report.as_of:%Y-%m}"}
    campaigns = []
    for c in report.campaigns:
        figs = campaign_figures(report, c)
        recent = [f for f in figs if f.week in headline]
        campaigns.append(
            {
                "name": c,
                "no_data": is_empty(figs),
                "recent": _table(report, recent, shown_stages(figs)),
                "goals": [row for row in goal_rows(report, c) if row[0] in labels],
                "flags": None if flags is None else [x.message for x in campaign_flags(flags, c)],
                "charts": per_campaign[c],
            }
        )
    return {
        "as_of": f"{report.as_of:%Y-%m-%d %H:%M} UTC",
        "span": f"{week_label(report.weeks[0])} to {week_label(report.weeks[-1])}",
        "filters_text": filters_text(report.filters),
        "campaigns": campaigns,
        "overall_charts": overall,
        "variants": [(v.campaign, v.verdict) for v in report.variants],
        "breakdowns": [
            (
                b.dimension.replace("_", " "),
                [(k, f"{r.num}/{r.den}", *rate_and_interval(r)) for k, r in b.rates],
            )
            for b in report.specificity
        ],
        "notes": notes(report),
        "no_data": NO_DATA,
    }


def _compute(
    inputs: FunnelInputs, p: ReportParams, as_of: datetime
) -> tuple[FunnelReport, list[Chart], list[RedFlag] | None]:
    """Count, evaluate and draw: plain data only, so it may run in a worker thread."""
    report = compute_funnel(inputs, as_of=as_of, weeks=p.weeks, filters=p.filters())
    flags = evaluate(report, inputs.playbook_for) if p.whole_campaigns else None
    return report, report_charts(report), flags


async def report_page(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        return login_required(request)
    inbox = inbox_of(request)
    rt = inbox.rt
    inputs = load_inputs(rt)
    seats = sorted({s.sender for s in inputs.sent})
    campaigns = sorted(set(rt.ledger.campaigns()) | {s.campaign for s in inputs.sent})
    try:
        p = ReportParams.parse(request.query_params, campaigns=campaigns, seats=seats)
    except BadFilter as exc:
        return inbox.render(
            "message.html",
            status=400,
            title=f"Bad report filter: {exc.name}",
            message=f"{exc} (clear the filter, or pick a value from the report page's lists).",
            session=session,
            back="/report",
        )
    # Each campaign's playbook read here, on the thread that owns the campaign store.
    books: dict[str, Playbook] = {c: rt.playbook_for(c) for c in campaigns}
    default = rt.playbook
    inputs = dataclasses.replace(
        inputs, playbook_for=lambda c: books.get(c, default), campaigns=tuple(campaigns)
    )
    as_of = datetime.now(UTC)
    report, charts, flags = await run_in_threadpool(_compute, inputs, p, as_of)
    stored = [f for f in open_flags(rt) if p.campaign in (None, f.campaign)]
    flash, session.flash = session.flash, []
    return inbox.render(
        "report.html",
        session=session,
        flash=flash,
        params=p,
        campaign_names=campaigns,
        seats=seats,
        tiers=sorted(t.tier for t in rt.playbook.tiers),
        weeks_max=WEEKS_MAX,
        red_flags=flag_rows(stored),
        **build_view(report, charts, flags),
    )
