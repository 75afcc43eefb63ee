"""The words a funnel report is shown in, shared by the terminal (`gtm report`), the Markdown and
the HTML page, so all three say the same: "accept 12/40 = 30.0%, goal 30%: met".

Pure functions over a `FunnelReport`: nothing is counted here. What they return is raw text,
campaign names and the like included: each caller escapes it for where it lands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

from gtm.app.charts import week_label
from gtm.app.funnel_model import Filters, FunnelReport, GoalCheck, Rate, WeekFigures
from gtm.app.funnel_weeks import NO_DATA
from gtm.app.red_flags import RedFlag

__all__ = [
    "NO_DATA",
    "STAGES",
    "Stage",
    "campaign_figures",
    "campaign_flags",
    "filters_text",
    "goal_matrix",
    "goal_rows",
    "headline_weeks",
    "is_empty",
    "notes",
    "rate_and_interval",
    "rate_text",
    "shown_stages",
    "stage_cell",
    "week_heading",
]

Stage = tuple[str, str, Callable[[WeekFigures], int | Rate]]
"""A row of a week's table: (channel, stage, the value of a week)."""


def _pct(v: float) -> str:
    return f"{v:.0%}" if abs(v * 100 - round(v * 100)) < 1e-9 else f"{v:.1%}"


def rate_text(name: str, r: Rate) -> str:
    """`accept 12/40 = 30.0%`; without a denominator `accept 0/0 = —`."""
    v = r.value
    return f"{name} {r.num}/{r.den} = " + ("—" if v is None else f"{v:.1%}")


_STATUS = {True: "met", False: "missed", None: "not yet"}


def _goal_words(f: WeekFigures, g: GoalCheck) -> str:
    if g.metric == "accept_rate":
        return f"{rate_text('accept', f.linkedin.accept_rate)}, goal {_pct(float(g.goal))}"
    if g.metric == "response_rate":
        r = f.linkedin.response_rate
        return f"{rate_text('LinkedIn response', r)}, goal {_pct(float(g.goal))}"
    if g.metric == "meetings_per_week":
        return f"meetings {f.meetings}, goal {g.goal} a week"
    if g.metric == "email_responses_per_week":
        return f"email responses {f.email.replied}, goal {g.goal} a week"
    return f"{g.metric} {g.value}, goal {g.goal}"  # a goal added to the model later


def goal_rows(report: FunnelReport, campaign: str) -> list[tuple[str, str, str]]:
    """Each goal of each reported week of `campaign`, then each month's opportunities goal, as
    (week or month, words, status); status is met, missed or not yet. A goal the playbook does
    not set is not in the report, so it is not shown."""
    figs = campaign_figures(report, campaign)
    rows = [
        (week_label(f.week), _goal_words(f, g), _STATUS[g.met])
        for f in figs
        for g in _goals(figs, f)
    ]
    for m in report.months:
        if m.campaign == campaign and m.goal is not None:
            words = f"opportunities {m.opportunities} in {m.month}, goal {m.goal} a month"
            rows.append((m.month, words, _STATUS[m.met]))
    return rows


_GOAL_NAMES = {
    "accept_rate": "accept rate",
    "response_rate": "LinkedIn response rate",
    "meetings_per_week": "meetings a week",
    "email_responses_per_week": "email responses a week",
}


def goal_matrix(report: FunnelReport, campaign: str) -> list[tuple[str, list[str]]]:
    """Each goal the playbook sets, with its status in each reported week (met, missed, not
    yet): `("accept rate ≥ 30%", ["met", "missed", "not yet"])`."""
    figs = campaign_figures(report, campaign)
    order: dict[str, str] = {}
    for f in figs:
        for g in _goals(figs, f):
            rate = g.metric in ("accept_rate", "response_rate")
            goal = _pct(float(g.goal)) if rate else f"{g.goal}"
            order.setdefault(g.metric, f"{_GOAL_NAMES.get(g.metric, g.metric)} ≥ {goal}")
    return [
        (name, [next((_STATUS[g.met] for g in f.goals if g.metric == m), "") for f in figs])
        for m, name in order.items()
    ]


def _rate_cell(r: Rate) -> str:
    v = r.value
    return f"— ({r.num}/{r.den})" if v is None else f"{v:.1%} ({r.num}/{r.den})"


STAGES: tuple[Stage, ...] = (
    ("LinkedIn", "profile visits", lambda f: f.linkedin.visited),
    ("LinkedIn", "connection requests", lambda f: f.linkedin.requested),
    ("LinkedIn", "accepted", lambda f: f.linkedin.accepted),
    ("LinkedIn", "accept rate", lambda f: f.linkedin.accept_rate),
    ("LinkedIn", "messaged", lambda f: f.linkedin.messaged),
    ("LinkedIn", "replied", lambda f: f.linkedin.replied),
    ("LinkedIn", "positive replies", lambda f: f.linkedin.positive),
    ("LinkedIn", "not yet classified", lambda f: f.linkedin.unclassified),
    ("LinkedIn", "auto-replies", lambda f: f.linkedin.auto_replies),
    ("LinkedIn", "response rate", lambda f: f.linkedin.response_rate),
    ("email", "sent", lambda f: f.email.sent),
    ("email", "delivered", lambda f: f.email.delivered),
    ("email", "bounced", lambda f: f.email.bounced),
    ("email", "replied", lambda f: f.email.replied),
    ("email", "positive replies", lambda f: f.email.positive),
    ("email", "not yet classified", lambda f: f.email.unclassified),
    ("email", "auto-replies", lambda f: f.email.auto_replies),
    ("email", "response rate", lambda f: f.email.response_rate),
    ("both", "meetings", lambda f: f.meetings),
    ("both", "opportunities", lambda f: f.opportunities),
    ("both", "unsubscribed", lambda f: f.linkedin.unsubscribed + f.email.unsubscribed),
)
"""The rows of a week's table, in funnel order; a rate is shown with its count."""


def _idle(figs: Sequence[WeekFigures]) -> set[str]:
    """The channel nothing happened on in these weeks, while something did on the other."""

    def used(channel: str) -> bool:
        return any(
            (v.den if isinstance(v, Rate) else v)
            for ch, _, get in STAGES
            if ch == channel
            for v in map(get, figs)
        )

    idle = {ch for ch in ("LinkedIn", "email") if not used(ch)}
    return set() if len(idle) == 2 else idle


def shown_stages(figs: Sequence[WeekFigures]) -> list[Stage]:
    """The rows worth showing: a channel with nothing at all in these weeks is left out, unless
    neither has anything (then every row shows its zeros)."""
    idle = _idle(figs)
    return [s for s in STAGES if s[0] not in idle]


_GOAL_CHANNEL = {
    "accept_rate": "LinkedIn",
    "response_rate": "LinkedIn",
    "email_responses_per_week": "email",
}


def _goals(figs: Sequence[WeekFigures], f: WeekFigures) -> list[GoalCheck]:
    """`f`'s goals, less those of a channel the campaign did not use in these weeks (an email
    campaign is not shown an accept-rate goal it can never meet)."""
    idle = _idle(figs)
    return [g for g in f.goals if _GOAL_CHANNEL.get(g.metric) not in idle]


def stage_cell(value: int | Rate) -> str:
    """A count (`1,204`) or a rate with its count (`30.0% (12/40)`, `— (0/0)`)."""
    return _rate_cell(value) if isinstance(value, Rate) else f"{value:,}"


def headline_weeks(report: FunnelReport) -> tuple[date, ...]:
    """The weeks the terminal shows: the last complete one (when reported) and the current."""
    return report.weeks[-2:]


def week_heading(report: FunnelReport, week: date, *, short: bool = False) -> str:
    """`2026-W46 (complete)` or `2026-W47 (so far)`; `short`: `2026-W46`, `2026-W47 so far`."""
    f = next((x for x in report.figures if x.week == week), None)
    done = f.complete if f is not None else week != report.weeks[-1]
    if short:
        return week_label(week) + ("" if done else " so far")
    return f"{week_label(week)} ({'complete' if done else 'so far'})"


def filters_text(f: Filters) -> str:
    """`campaign spring, tier 1`, or `none`."""
    named = (
        ("campaign", f.campaign),
        ("tier", f.tier),
        ("channel", f.channel),
        ("seat", f.sender),
        ("prompt version", f.prompt_version),
    )
    return ", ".join(f"{name} {value}" for name, value in named if value is not None) or "none"


def campaign_figures(report: FunnelReport, campaign: str) -> list[WeekFigures]:
    """The campaign's weeks, oldest first (the whole campaign: no breakdown group)."""
    return [f for f in report.figures if f.campaign == campaign and f.group == "all"]


def is_empty(figs: Sequence[WeekFigures]) -> bool:
    """Nothing sent and nothing back in any of these weeks: "no data yet"."""
    return bool(figs) and all(f.note == NO_DATA for f in figs)


def campaign_flags(flags: Sequence[RedFlag], campaign: str) -> list[RedFlag]:
    return sorted((x for x in flags if x.campaign == campaign), key=lambda x: (x.week, x.flag))


def rate_and_interval(r: Rate) -> tuple[str, str]:
    """(`30.0%`, `23.9%–36.8%`), or dashes without a denominator."""
    v, ci = r.value, r.interval
    if v is None or ci is None:
        return "—", "—"
    return f"{v:.1%}", f"{ci[0]:.1%}–{ci[1]:.1%}"


def notes(report: FunnelReport) -> list[str]:
    """The report's notes ("no data yet", unmatched events) and the events it left out."""
    out = list(report.notes)
    if report.ignored_events:
        out.append(
            f"{report.ignored_events} event(s) fell outside the reported weeks (before the "
            "first, or after as-of): not counted"
        )
    return out
