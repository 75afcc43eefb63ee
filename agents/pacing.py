"""Caps and pacing: which cap windows an action must fit, and when a sender may act.

Pure functions of the playbook and the clock. The send node reserves each action against these
windows; `gtm status` shows the headroom left in them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta

from gtm.domain.models import Step
from gtm.domain.playbook import WEEKDAYS, Pacing, Playbook
from tools.outbox import Limit, iso_week_start

__all__ = ["steps_for", "limits_for", "paced", "next_opening"]

_WEEKLY: dict[Step, str] = {
    "linkedin_visit": "linkedin_profile_visits_per_week",
    "linkedin_connect": "linkedin_connection_requests_per_week",
    "linkedin_message": "linkedin_messages_per_week",
}


def steps_for(draft_step: Step) -> tuple[Step, ...]:
    """Provider actions that deliver a draft: a LinkedIn note goes after a profile visit."""
    if draft_step == "linkedin_connect":
        return ("linkedin_visit", "linkedin_connect")
    return (draft_step,)


def paced(playbook: Playbook, live: bool) -> bool:
    """Whether working hours, daily shares and gaps apply to a channel."""
    mode = playbook.pacing.applies_to
    return mode == "all" or (mode == "live" and live)


def _local_day(pacing: Pacing, now: datetime) -> tuple[datetime, datetime]:
    local = now.astimezone(pacing.zone)
    start = datetime.combine(local.date(), time(0), tzinfo=pacing.zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def limits_for(playbook: Playbook, step: Step, now: datetime, *, is_paced: bool) -> list[Limit]:
    """The cap windows an action must fit: the playbook's weekly (or daily email) cap, and, when
    paced, the working day's share of a weekly cap."""
    caps = playbook.caps
    if step == "email":
        day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        out = [Limit(caps.emails_per_day, day, day + timedelta(days=1), "per day")]
        if is_paced:
            since, until = _local_day(playbook.pacing, now)
            out = [Limit(caps.emails_per_day, since, until, "per day")]
        return out
    weekly = int(getattr(caps, _WEEKLY[step]))
    week = iso_week_start(now)
    out = [Limit(weekly, week, week + timedelta(days=7), "per week")]
    if is_paced and playbook.pacing.spread_weekly_caps:
        share = math.ceil(weekly / len(playbook.pacing.working_days))
        since, until = _local_day(playbook.pacing, now)
        out.append(Limit(share, max(since, week), until, "today's share"))
    return out


def next_opening(pacing: Pacing, now: datetime) -> datetime | None:
    """None inside working hours; otherwise when they next open (UTC)."""
    local = now.astimezone(pacing.zone)
    for ahead in range(8):
        day = local.date() + timedelta(days=ahead)
        if WEEKDAYS[day.weekday()] not in pacing.working_days:
            continue
        opens = datetime.combine(day, pacing.start, tzinfo=pacing.zone)
        closes = datetime.combine(day, pacing.end, tzinfo=pacing.zone)
        if ahead == 0 and opens <= local < closes:
            return None
        if local < opens:
            return opens.astimezone(UTC)
    raise AssertionError("working_days is never empty")  # pragma: no cover
