"""Which charts a funnel report shows, and what goes in each: one mapping for `gtm report`'s
HTML page and the web inbox's report page, so both show the same thing.

Per campaign: the LinkedIn and the email funnel as bars (stage counts summed over the reported
weeks), and the weekly trends beside the playbook's goal line and red-flag band (accept rate,
LinkedIn and email response rate, meetings). For the whole report: reply rate by genericness
bucket, guardrail verdict, tier and prompt version ("does specificity pay?"), and each
campaign's prompt variants when it has more than one. A channel a campaign never used in the
reported weeks gets no charts; a campaign with nothing at all gets its funnel's "no data yet".

Charts are drawn by `gtm.app.charts` (self-contained SVG); this module computes nothing new: it
reads the report's figures, goals (`WeekFigures.goals`) and red-flag thresholds
(`FunnelReport.limits`).
"""

from __future__ import annotations

import dataclasses
import gc
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from gtm.app.charts import funnel_bars, rate_bars, weekly_trend
from gtm.app.funnel_model import FunnelReport, Rate, WeekFigures

__all__ = ["Chart", "report_charts"]


@dataclass(frozen=True)
class Chart:
    """One chart of a report: a stable id (for the page and its tests), a title, the SVG, a
    caption saying what it counts and over which sample, and the campaign it belongs to (None
    for the whole report's charts)."""

    id: str
    title: str
    svg: str
    caption: str
    campaign: str | None = None


_LINKEDIN_STAGES = (
    ("profile visits", "visited"),
    ("connection requests", "requested"),
    ("accepted", "accepted"),
    ("messaged", "messaged"),
    ("replied", "replied"),
    ("positive replies", "positive"),
    ("meetings", "meetings"),
    ("opportunities", "opportunities"),
)
_EMAIL_STAGES = (
    ("sent", "sent"),
    ("delivered", "delivered"),
    ("replied", "replied"),
    ("positive replies", "positive"),
    ("meetings", "meetings"),
)
_SUMMED = "stage counts are people per week, summed over the weeks shown"


def _slug(text: str) -> str:
    """An id-safe form of a campaign name (unique per report: a suffix breaks ties)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "campaign"


def _pooled(rates: Sequence[Rate]) -> Rate:
    return Rate(sum(r.num for r in rates), sum(r.den for r in rates))


def _goal(figures: Sequence[WeekFigures], metric: str) -> float | None:
    for f in figures:
        for g in f.goals:
            if g.metric == metric:
                return float(g.goal)
    return None


def _trend(
    chart_id: str,
    title: str,
    weeks: Sequence[date],
    rates: Sequence[Rate],
    *,
    goal: float | None,
    red_below: float | None,
    caption: str,
) -> Chart:
    svg = weekly_trend(
        weeks,
        [r.value for r in rates],
        goal=goal,
        red_below=red_below,
        title=title,
        as_percent=True,
        counts=[f"{r.num}/{r.den}" for r in rates],
        chart_id=chart_id,
    )
    return Chart(chart_id, title, svg, caption)


def _campaign_charts(report: FunnelReport, campaign: str, slug: str) -> list[Chart]:
    mine = [f for f in report.figures if f.campaign == campaign]
    by_week: dict[date, list[WeekFigures]] = {w: [] for w in report.weeks}
    for f in mine:
        by_week[f.week].append(f)  # several when the report is broken down by a dimension
    weeks = list(report.weeks)
    limits = report.limits.get(campaign, {})
    charts: list[Chart] = []

    def total(channel: str, stage: str) -> int:
        return sum(getattr(getattr(f, channel), stage) for f in mine)

    linkedin = [(name, total("linkedin", s)) for name, s in _LINKEDIN_STAGES]
    email = [(name, total("email", s)) for name, s in _EMAIL_STAGES]
    used_linkedin = any(n for _, n in linkedin)
    used_email = any(n for _, n in email)
    if used_linkedin or not used_email:
        title = f"{campaign}: LinkedIn funnel"
        charts.append(
            Chart(
                f"funnel-linkedin-{slug}",
                title,
                funnel_bars(linkedin, title, chart_id=f"funnel-linkedin-{slug}"),
                f"{_SUMMED} ({len(weeks)} week(s)); the share is of the first stage.",
            )
        )
    if used_email:
        title = f"{campaign}: email funnel"
        charts.append(
            Chart(
                f"funnel-email-{slug}",
                title,
                funnel_bars(email, title, chart_id=f"funnel-email-{slug}"),
                f"{_SUMMED} ({len(weeks)} week(s)); delivered is sent minus bounced.",
            )
        )

    def weekly(channel: str, rate: str) -> list[Rate]:
        return [_pooled([getattr(getattr(f, channel), rate) for f in by_week[w]]) for w in weeks]

    if used_linkedin:
        charts.append(
            _trend(
                f"trend-accept-{slug}",
                f"{campaign}: accept rate by week",
                weeks,
                weekly("linkedin", "accept_rate"),
                goal=_goal(mine, "accept_rate"),
                red_below=limits.get("accept_rate_below"),
                caption="Of the connection requests first sent that week and old enough to be "
                "answered: the share accepted. Under each week: accepted/requests.",
            )
        )
        charts.append(
            _trend(
                f"trend-response-{slug}",
                f"{campaign}: LinkedIn response rate by week",
                weeks,
                weekly("linkedin", "response_rate"),
                goal=_goal(mine, "response_rate"),
                red_below=limits.get("response_rate_below"),
                caption="Of the people first messaged that week and old enough to be answered: "
                "the share who replied (auto-replies excluded).",
            )
        )
    if used_email:
        charts.append(
            _trend(
                f"trend-email-response-{slug}",
                f"{campaign}: email response rate by week",
                weeks,
                weekly("email", "response_rate"),
                goal=None,  # the playbook's email goal is a count a week, not a rate
                red_below=limits.get("response_rate_below"),
                caption="Of the people first emailed that week (not bounced) and old enough to "
                "be answered: the share who replied.",
            )
        )
    if used_linkedin or used_email:
        meetings = [sum(f.meetings for f in by_week[w]) for w in weeks]
        title = f"{campaign}: meetings by week"
        cid = f"trend-meetings-{slug}"
        svg = weekly_trend(
            weeks,
            [float(m) for m in meetings],
            goal=_goal(mine, "meetings_per_week"),
            red_below=limits.get("meetings_per_week_below"),
            title=title,
            as_percent=False,
            chart_id=cid,
        )
        charts.append(Chart(cid, title, svg, "People who booked a meeting that week."))
    return [dataclasses.replace(c, campaign=campaign) for c in charts]


_DIMENSION_TITLE = {
    "genericness": "reply rate by genericness",
    "verdict": "reply rate by guardrail verdict",
    "tier": "reply rate by tier",
    "prompt_version": "reply rate by prompt version",
}


def _rates_chart(chart_id: str, title: str, rates: Sequence[tuple[str, Rate]]) -> str:
    return rate_bars(
        [label for label, _ in rates],
        [r.value for _, r in rates],
        [r.interval for _, r in rates],
        [r.den for _, r in rates],
        title,
        chart_id=chart_id,
    )


def report_charts(report: FunnelReport) -> list[Chart]:
    """Every chart of `report`, in page order: each campaign's funnels and trends, then the
    reply-rate breakdowns, then the prompt variants of each campaign that has several.

    Matplotlib's figures hold reference cycles, so drawing twenty of them triggers full
    collections, and each would walk the whole heap, with the report's history in it (400,000
    objects for 100,000 events: a third of the drawing time). The heap as it stands is frozen
    while drawing (`gc.freeze`: left out of collections, not freed) and thawed afterwards."""
    gc.freeze()
    try:
        return _charts(report)
    finally:
        gc.unfreeze()


def _charts(report: FunnelReport) -> list[Chart]:
    charts: list[Chart] = []
    seen: dict[str, int] = {}
    slugs: dict[str, str] = {}
    for campaign in report.campaigns:
        slug = _slug(campaign)
        seen[slug] = seen.get(slug, 0) + 1
        slugs[campaign] = slug if seen[slug] == 1 else f"{slug}-{seen[slug]}"
        charts += _campaign_charts(report, campaign, slugs[campaign])
    for b in report.specificity:
        title = _DIMENSION_TITLE.get(b.dimension, f"reply rate by {b.dimension}")
        cid = f"rates-{_slug(b.dimension)}"
        charts.append(
            Chart(
                cid,
                title,
                _rates_chart(cid, title, b.rates),
                "Per message: replies ÷ messages delivered long enough ago to be answered, "
                "with the 95% interval and the number of messages (n)."
                + (
                    " 'findings': approved by a reviewer despite a guardrail's findings."
                    if b.dimension == "verdict"
                    else ""
                ),
            )
        )
    for v in report.variants:
        if len(v.rates) < 2:
            continue
        title = f"{v.campaign}: reply rate by prompt variant"
        cid = f"rates-variants-{slugs.get(v.campaign, _slug(v.campaign))}"
        svg = _rates_chart(cid, title, v.rates)
        charts.append(Chart(cid, title, svg, v.verdict, campaign=v.campaign))
    return charts
