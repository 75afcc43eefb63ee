"""The funnel's counts turned into figures: one `WeekFigures` per campaign, group and ISO week
with each weekly figure beside its playbook goal, and one `MonthFigures` per campaign and
calendar month for qualified opportunities. A goal the playbook does not set is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta

from gtm.app.funnel_model import (
    EmailFunnel,
    GoalCheck,
    LinkedInFunnel,
    MonthFigures,
    Rate,
    WeekFigures,
)
from gtm.domain.playbook import Playbook

__all__ = ["NO_DATA", "Thread", "month_figures", "week_figures"]

NO_DATA = "no data yet"
_WEEK = timedelta(days=7)

Thread = tuple[str, str, str]
"""A person: (campaign, account id, contact key)."""


def week_figures(
    c: str,
    g: str,
    w: int,
    monday: date,
    as_of: datetime,
    people: Mapping[tuple[str, str, int, str, str], set[Thread]],
    cohorts: Mapping[tuple[str, str, int, str], list[int]],
    playbook: Playbook,
) -> WeekFigures:
    def n(channel: str, stage: str) -> int:
        return len(people.get((c, g, w, channel, stage), ()))

    def rate(name: str) -> Rate:
        return Rate(*cohorts.get((c, g, w, name), (0, 0)))

    li = LinkedInFunnel(
        **{s: n("linkedin", s) for s in LinkedInFunnel.__dataclass_fields__ if "rate" not in s},
        accept_rate=rate("accept"),
        response_rate=rate("linkedin"),
    )
    em = EmailFunnel(
        **{s: n("email", s) for s in EmailFunnel.__dataclass_fields__ if "rate" not in s},
        response_rate=rate("email"),
    )
    complete = datetime(monday.year, monday.month, monday.day, tzinfo=UTC) + _WEEK <= as_of
    meetings, opps, reached = n("all", "meetings"), n("all", "opportunities"), n("all", "reached")
    goals = playbook.goals
    checks: list[GoalCheck] = []
    for metric, r, goal in (
        ("accept_rate", li.accept_rate, goals.accept_rate),
        ("response_rate", li.response_rate, goals.response_rate),
    ):
        if goal is not None:
            v = r.value
            checks.append(GoalCheck(metric, v, goal, None if v is None else v >= goal, r.den))
    for metric, count, target in (
        ("meetings_per_week", meetings, goals.meetings_per_week),
        ("email_responses_per_week", em.replied, goals.email_responses_per_week),
    ):
        if target is not None:
            met = True if count >= target else (False if complete else None)
            checks.append(GoalCheck(metric, count, target, met))
    empty = not any(
        (li.visited, li.requested, li.messaged, em.sent, li.accepted, li.replied, em.replied)
    ) and not (meetings or opps or li.auto_replies or em.auto_replies)
    return WeekFigures(
        week=monday, complete=complete, campaign=c, group=g, linkedin=li, email=em,
        meetings=meetings, opportunities=opps, reached=reached, goals=tuple(checks),
        note=NO_DATA if empty else None,
    )  # fmt: skip


def month_figures(
    campaigns: tuple[str, ...],
    start: datetime,
    as_of: datetime,
    opps: Mapping[tuple[str, str], set[Thread]],
    pb: Callable[[str], Playbook],
) -> tuple[MonthFigures, ...]:
    """Opportunities per campaign and calendar month touched by the reported weeks."""
    months: list[datetime] = []
    m = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while m <= as_of:
        months.append(m)
        m = m.replace(year=m.year + (m.month == 12), month=m.month % 12 + 1)
    out = []
    for c in campaigns:
        goal = pb(c).goals.qualified_opportunities_per_month
        for i, first in enumerate(months):
            end = months[i + 1] if i + 1 < len(months) else m
            complete = first >= start and end <= as_of
            count = len(opps.get((c, f"{first:%Y-%m}"), ()))
            met = _met(count, goal, complete)
            out.append(MonthFigures(c, f"{first:%Y-%m}", complete, count, goal, met))
    return tuple(out)


def _met(count: int, goal: int | None, complete: bool) -> bool | None:
    """A count goal is met once reached; missed only when its period is over."""
    if goal is None:
        return None
    return True if count >= goal else (False if complete else None)
