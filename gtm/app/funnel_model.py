"""What the funnel report holds: counts of people per stage, rates with their counts and a 95%
interval, each weekly figure beside its playbook goal, and the "does specificity pay?" tables.

Every model is a frozen dataclass; `FunnelReport.to_json()` gives a JSON-safe dict and
`FunnelReport.rows()` one flat row per week × campaign × group × channel (the CSV). Renderers
(Markdown, HTML, charts) read these and compute nothing. How each number is counted is in
`gtm.app.funnel` and travels with the report as `FunnelReport.definitions`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from gtm.domain.models import Channel

__all__ = [
    "Breakdown",
    "DEFINITIONS",
    "Dimension",
    "EmailFunnel",
    "Filters",
    "FunnelReport",
    "GoalCheck",
    "LinkedInFunnel",
    "MonthFigures",
    "ROW_COLUMNS",
    "Rate",
    "VariantComparison",
    "WeekFigures",
    "wilson",
]

DEFINITIONS: Mapping[str, str] = {
    "person": "a thread: campaign + account + contact; each stage counts people, once a week",
    "visited": "people whose profile visit was sent this week",
    "requested": "people whose connection request was sent this week",
    "accepted": "people whose connection_accepted event happened this week",
    "messaged": "people sent a LinkedIn message (not the connection note) this week",
    "sent": "people sent an email this week",
    "delivered": "people emailed this week whose email did not bounce (sent minus bounced)",
    "bounced": "people emailed this week whose email bounced (by as_of)",
    "replied": "people who replied this week (message_received / email_reply); an auto-reply, "
    "or a reply classified only as out_of_office, is never a reply",
    "positive": "replied people whose reply's signals include one of metrics.positive_signals",
    "unclassified": "replies not yet classified: neither positive nor negative",
    "meetings": "people whose meeting_booked event happened this week",
    "opportunities": "people whose opportunity event (a qualified opportunity) happened",
    "reached": "people sent any message (connection note, message or email) this week",
    "accept_rate": "of people whose first connection request went out this week, at least "
    "metrics.accept_window_days before as_of: the share accepted by as_of",
    "linkedin.response_rate": "of people first messaged on LinkedIn this week, at least "
    "metrics.response_window_days before as_of: the share who replied by as_of",
    "email.response_rate": "of people first emailed this week (not bounced), at least "
    "metrics.response_window_days before as_of: the share who replied by as_of",
    "response_rate goal": "compared with the LinkedIn response rate (the playbook's 20% is "
    "on LinkedIn); email is measured against email_responses_per_week",
    "specificity": "per message: replies matched to messages with the value ÷ such messages "
    "delivered at least metrics.response_window_days before as_of",
    "interval": "Wilson 95% score interval",
}
"""How each number is counted; travels with every report."""

Z95 = 1.959963984540054
"""The standard normal quantile for a two-sided 95% interval."""

Dimension = Literal["tier", "sender", "prompt_version"]
"""What a report may be broken down by (the channel is always broken out)."""


def wilson(num: int, den: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval for `num` successes in `den` trials (None when den is 0).
    Unlike the normal approximation it stays inside 0..1 and is honest for small samples."""
    if den <= 0:
        return None
    p = num / den
    z2 = z * z
    centre = (p + z2 / (2 * den)) / (1 + z2 / den)
    half = z * math.sqrt(p * (1 - p) / den + z2 / (4 * den * den)) / (1 + z2 / den)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class Rate:
    """`num` of `den`, always shown together; `value` is None when there is no denominator."""

    num: int
    den: int

    @property
    def value(self) -> float | None:
        return self.num / self.den if self.den else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """Wilson 95% interval, or None without a denominator."""
        return wilson(self.num, self.den)

    def to_json(self) -> dict[str, Any]:
        low, high = self.interval or (None, None)
        return {"num": self.num, "den": self.den, "value": self.value, "low": low, "high": high}

    def __str__(self) -> str:
        v = self.value
        return f"— ({self.num}/{self.den})" if v is None else f"{v:.1%} ({self.num}/{self.den})"


@dataclass(frozen=True, slots=True)
class Filters:
    """Which touches a report counts; None means any. An event counts when the touch it was
    matched to passes."""

    campaign: str | None = None
    tier: int | None = None
    channel: Channel | None = None
    sender: str | None = None
    prompt_version: str | None = None


@dataclass(frozen=True, slots=True)
class LinkedInFunnel:
    """People (threads) at each LinkedIn stage in one week, and the cohort rates."""

    visited: int = 0
    requested: int = 0
    accepted: int = 0
    messaged: int = 0
    replied: int = 0
    positive: int = 0
    meetings: int = 0
    opportunities: int = 0
    auto_replies: int = 0
    unclassified: int = 0
    """Replies not yet classified (`gtm escalations run`): not counted positive or negative."""
    unsubscribed: int = 0
    accept_rate: Rate = Rate(0, 0)
    response_rate: Rate = Rate(0, 0)


@dataclass(frozen=True, slots=True)
class EmailFunnel:
    """People (threads) at each email stage in one week, and the cohort response rate."""

    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    replied: int = 0
    positive: int = 0
    meetings: int = 0
    opportunities: int = 0
    auto_replies: int = 0
    unclassified: int = 0
    unsubscribed: int = 0
    response_rate: Rate = Rate(0, 0)


@dataclass(frozen=True, slots=True)
class GoalCheck:
    """One weekly figure beside its playbook goal. `met` is None when it cannot be told yet (no
    denominator, or a count in a week that is not over and still below the goal)."""

    metric: str
    value: float | int | None
    goal: float | int
    met: bool | None
    sample: int | None = None
    """The denominator behind a rate; None for a count."""


@dataclass(frozen=True, slots=True)
class WeekFigures:
    """One ISO week of one campaign (and one group when broken down)."""

    week: date
    """Monday of the ISO week (00:00 UTC)."""
    complete: bool
    """The week ended at or before `as_of`."""
    campaign: str
    group: str
    """The breakdown's value (e.g. 'tier 1'), or 'all'."""
    linkedin: LinkedInFunnel
    email: EmailFunnel
    meetings: int
    """People who booked a meeting this week, either channel."""
    opportunities: int
    reached: int
    """People sent any message (a connection note, a message or an email) this week."""
    goals: tuple[GoalCheck, ...]
    note: str | None = None


@dataclass(frozen=True, slots=True)
class MonthFigures:
    """Qualified opportunities of one campaign in one calendar month (UTC)."""

    campaign: str
    month: str
    """'YYYY-MM'."""
    complete: bool
    """The whole month lies inside the reported weeks and before `as_of`."""
    opportunities: int
    goal: int | None
    met: bool | None


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Reply rate per value of one attribute of the sent message: each Rate is replies to
    messages with that value ÷ such messages delivered at least `response_window_days` ago."""

    dimension: str
    rates: tuple[tuple[str, Rate], ...]


@dataclass(frozen=True, slots=True)
class VariantComparison:
    """A campaign's prompt versions side by side, and what can honestly be said about them."""

    campaign: str
    rates: tuple[tuple[str, Rate], ...]
    verdict: str


@dataclass(frozen=True, slots=True)
class FunnelReport:
    as_of: datetime
    weeks: tuple[date, ...]
    """The Mondays reported, oldest first; the last holds `as_of`."""
    filters: Filters
    by: Dimension | None
    campaigns: tuple[str, ...]
    figures: tuple[WeekFigures, ...]
    months: tuple[MonthFigures, ...]
    specificity: tuple[Breakdown, ...]
    variants: tuple[VariantComparison, ...]
    unmatched_events: int
    """Events in the reported weeks matched to no sent touch: listed, never counted."""
    ignored_events: int
    """Events before the first reported week or after `as_of`."""
    notes: tuple[str, ...]
    definitions: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Per campaign, the red-flag thresholds its playbook sets (`accept_rate_below`,
    `response_rate_below`, `meetings_per_week_below`; an unset one is absent): what the charts
    shade as the red band."""

    def week(self, campaign: str, week: date, group: str = "all") -> WeekFigures | None:
        for f in self.figures:
            if (f.campaign, f.week, f.group) == (campaign, week, group):
                return f
        return None

    def to_json(self) -> dict[str, Any]:
        out = _jsonable(self)
        assert isinstance(out, dict)
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per week × campaign × group × channel, keys `ROW_COLUMNS`; a stage the
        channel does not have is None."""
        out = []
        for f in self.figures:
            for channel, fun in (("linkedin", f.linkedin), ("email", f.email)):
                row: dict[str, Any] = dict.fromkeys(ROW_COLUMNS)
                row.update(
                    week=f.week.isoformat(), complete=f.complete, campaign=f.campaign,
                    group=f.group, channel=channel, note=f.note or "",
                )  # fmt: skip
                for name, value in _fields(fun).items():
                    if isinstance(value, Rate):
                        for part, v in value.to_json().items():
                            row[f"{name}_{part}"] = v
                    else:
                        row[name] = value
                out.append(row)
        return out


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _rate_columns(name: str) -> tuple[str, ...]:
    return tuple(f"{name}_{p}" for p in ("num", "den", "value", "low", "high"))


ROW_COLUMNS: tuple[str, ...] = (
    ("week", "complete", "campaign", "group", "channel")
    + ("visited", "requested", "accepted", "messaged", "sent", "delivered", "bounced")
    + ("replied", "positive", "meetings", "opportunities", "auto_replies", "unclassified")
    + ("unsubscribed",)
    + _rate_columns("accept_rate")
    + _rate_columns("response_rate")
    + ("note",)
)
"""The CSV's columns, in order."""


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Rate):
        return obj.to_json()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _jsonable(v) for k, v in _fields(obj).items()}
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [_jsonable(v) for v in obj]
    return obj
