"""The playbook's red flags, evaluated on the funnel and raised once per (flag, week, campaign).

`evaluate` is pure: over a funnel report (no breakdown, no filter) it returns each red flag the
numbers cross, with the sample behind it. A rate flag needs at least `red_flags.min_sample`
people in its denominator, and `meetings_per_week_below` ("no meetings") needs a completed week
in which at least `min_sample` people were sent a message, so three requests raise no alarm.
The response-rate threshold is applied to the LinkedIn and the email response rate separately.

`raise_red_flags` records each fired flag, unique per flag, ISO week and campaign, in
`funnel.sqlite` in the data directory, or with `GTM_DATABASE_URL` in Postgres
(`gtm.app.pg_red_flags`, so workers on several machines fire a flag once between them), and
sends it once through the workspace's alerts seam (Slack, or `alerts.jsonl`): a second
evaluation of the same week fires nothing new. A row is claimed before its alert goes out and
marked after; a run that died in between is finished by a later one (after `_RECLAIM`), so an
alert may at worst go twice, never not at all. Without an alert channel a flag is only kept for
the banner. `open_flags` lists what is not dismissed, for the inbox banner; `dismiss_flag`
closes one.

The table holds numbers and campaign names only, no personal data: `gtm forget` has nothing to
erase here.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from gtm.app.funnel import FunnelInputs, compute_funnel
from gtm.app.funnel_model import Filters, FunnelReport, Rate, WeekFigures
from gtm.app.workspace import Workspace
from gtm.domain.playbook import Playbook
from tools.sqlite import connect

__all__ = [
    "RedFlag",
    "StoredFlag",
    "FlagStore",
    "evaluate",
    "raise_red_flags",
    "open_flags",
    "dismiss_flag",
    "flag_number",
    "shown_figure",
    "open_flag_store",
]

log = logging.getLogger("gtm.red_flags")
_RECLAIM = timedelta(minutes=10)
"""A claim older than this belongs to a run that died before its alert went out."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS red_flags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flag TEXT NOT NULL,
    week TEXT NOT NULL,
    campaign TEXT NOT NULL,
    value REAL NOT NULL,
    threshold REAL NOT NULL,
    sample INTEGER NOT NULL,
    message TEXT NOT NULL,
    fired_at TEXT NOT NULL,
    claimed_at TEXT,
    alerted_at TEXT,
    outcome TEXT NOT NULL DEFAULT '',
    dismissed_at TEXT,
    dismissed_by TEXT,
    UNIQUE (flag, week, campaign)
);
"""

_ADVICE = {
    "accept_rate_below": "review targeting and messaging",
    "linkedin_response_rate_below": "A/B test the messages' content",
    "email_response_rate_below": "A/B test subject lines and content",
    "meetings_per_week_below": "audit the whole funnel",
}


_NUMBER = {
    "accept_rate_below": "accept rate",
    "linkedin_response_rate_below": "LinkedIn response rate",
    "email_response_rate_below": "email response rate",
    "meetings_per_week_below": "meetings a week",
}


def flag_number(flag: str) -> str:
    """Which playbook number a flag is about, as the banners name it."""
    return _NUMBER.get(flag, flag.replace("_", " "))


def shown_figure(flag: str, value: float, *, whole: bool = False) -> str:
    """A flag's value or threshold as the banners show it: a rate as a percentage (`whole`:
    15% rather than 15.0% when it is whole), the meetings flag as a count."""
    if flag == "meetings_per_week_below":
        return f"{value:g}"
    exact = abs(value * 100 - round(value * 100)) < 1e-9
    return f"{value:.0%}" if whole and exact else f"{value:.1%}"


@dataclass(frozen=True)
class RedFlag:
    """One red flag crossed: which number, its value, the threshold and the sample behind it."""

    flag: str
    """accept_rate_below, linkedin_response_rate_below, email_response_rate_below or
    meetings_per_week_below."""
    week: date
    campaign: str
    value: float
    threshold: float
    sample: int
    """The rate's denominator, or the people messaged in the week for meetings."""
    message: str


@dataclass(frozen=True)
class StoredFlag(RedFlag):
    id: int = 0
    fired_at: datetime | None = None
    alerted_at: datetime | None = None
    outcome: str = ""
    dismissed_at: datetime | None = None


def _inert(text: str) -> str:
    """No `<...>` control sequences: Slack reads `<!channel>` in a campaign name as a mention."""
    return text.replace("<", "‹").replace(">", "›")


def _rate_flag(
    f: WeekFigures, flag: str, what: str, basis: str, r: Rate, threshold: float | None,
    pb: Playbook,
) -> RedFlag | None:  # fmt: skip
    v = r.value
    if threshold is None or v is None or r.den < pb.red_flags.min_sample or v >= threshold:
        return None
    week, campaign = f.week, f.campaign
    msg = (
        f"campaign {campaign}, week of {week:%Y-%m-%d} (ISO {week:%G-W%V}): {what} is {v:.1%} "
        f"({r.num} of {r.den} {basis}), below the red-flag threshold of {threshold:.0%} "
        f"(sample {r.den}, minimum {pb.red_flags.min_sample}): {_ADVICE[flag]}."
    )
    return RedFlag(flag, week, campaign, v, threshold, r.den, _inert(msg))


def evaluate(report: FunnelReport, playbook_for: Callable[[str], Playbook]) -> list[RedFlag]:
    """The red flags `report`'s numbers cross, per campaign and week (see the module docstring).
    Only an unfiltered report without a breakdown is evaluated: a flag is about a campaign."""
    if report.by is not None or replace(report.filters, campaign=None) != Filters():
        raise ValueError("red flags are evaluated on a whole campaign: no breakdown or filter")
    out: list[RedFlag] = []
    for f in report.figures:
        pb = playbook_for(f.campaign)
        rf = pb.red_flags
        m = pb.metrics
        found = [
            _rate_flag(
                f, "accept_rate_below", "the LinkedIn accept rate",
                f"connection requests sent at least {m.accept_window_days} days before",
                f.linkedin.accept_rate, rf.accept_rate_below, pb,
            ),
            _rate_flag(
                f, "linkedin_response_rate_below", "the LinkedIn response rate",
                f"people messaged at least {m.response_window_days} days before",
                f.linkedin.response_rate, rf.response_rate_below, pb,
            ),
            _rate_flag(
                f, "email_response_rate_below", "the email response rate",
                f"people emailed (delivered) at least {m.response_window_days} days before",
                f.email.response_rate, rf.response_rate_below, pb,
            ),
        ]  # fmt: skip
        out += [x for x in found if x is not None]
        below = rf.meetings_per_week_below
        if below is not None and f.complete and f.reached >= rf.min_sample and f.meetings < below:
            msg = (
                f"campaign {f.campaign}, week of {f.week:%Y-%m-%d} (ISO {f.week:%G-W%V}): "
                f"{f.meetings} meeting(s) booked, below the red-flag threshold of {below} a "
                f"week, with {f.reached} people messaged (sample {f.reached}, minimum "
                f"{rf.min_sample}): {_ADVICE['meetings_per_week_below']}."
            )
            out.append(
                RedFlag(
                    "meetings_per_week_below",
                    f.week,
                    f.campaign,
                    f.meetings,
                    below,
                    f.reached,
                    _inert(msg),
                )  # fmt: skip
            )
    return out


class FlagStore:
    """Fired red flags on SQLite, one row per (flag, week, campaign)."""

    def __init__(
        self, path: Path | str, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._clock = clock
        self._db = connect(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FlagStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> str:
        return self._clock().astimezone(UTC).isoformat()

    def record(self, flag: RedFlag) -> None:
        """Keep `flag` unless this flag, week and campaign is kept already (then nothing)."""
        self._db.execute(
            "INSERT OR IGNORE INTO red_flags (flag, week, campaign, value, threshold, sample,"
            " message, fired_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                flag.flag, flag.week.isoformat(), flag.campaign, flag.value, flag.threshold,
                flag.sample, flag.message, self._now(),
            ),
        )  # fmt: skip

    def claim(self, flag: RedFlag) -> StoredFlag | None:
        """Take the right to alert about `flag`: None when it was alerted, or another run
        claimed it less than `_RECLAIM` ago."""
        now = self._clock().astimezone(UTC)
        cur = self._db.execute(
            "UPDATE red_flags SET claimed_at = ? WHERE flag = ? AND week = ? AND campaign = ?"
            " AND alerted_at IS NULL AND (claimed_at IS NULL OR claimed_at < ?)",
            (
                now.isoformat(), flag.flag, flag.week.isoformat(), flag.campaign,
                (now - _RECLAIM).isoformat(),
            ),
        )  # fmt: skip
        if cur.rowcount != 1:
            return None
        row = self._db.execute(
            "SELECT * FROM red_flags WHERE flag = ? AND week = ? AND campaign = ?",
            (flag.flag, flag.week.isoformat(), flag.campaign),
        ).fetchone()
        return _row(row)

    def alerted(self, flag_id: int, outcome: str) -> None:
        self._db.execute(
            "UPDATE red_flags SET alerted_at = ?, outcome = ? WHERE id = ?",
            (self._now(), outcome, flag_id),
        )

    def listing(self, *, include_dismissed: bool = False) -> list[StoredFlag]:
        """Fired flags, newest week first."""
        clause = "" if include_dismissed else " WHERE dismissed_at IS NULL"
        rows = self._db.execute(
            f"SELECT * FROM red_flags{clause} ORDER BY week DESC, campaign, flag"
        ).fetchall()
        return [_row(r) for r in rows]

    def dismiss(self, flag_id: int, by: str) -> StoredFlag | None:
        self._db.execute(
            "UPDATE red_flags SET dismissed_at = COALESCE(dismissed_at, ?),"
            " dismissed_by = COALESCE(dismissed_by, ?) WHERE id = ?",
            (self._now(), by, flag_id),
        )
        row = self._db.execute("SELECT * FROM red_flags WHERE id = ?", (flag_id,)).fetchone()
        return _row(row) if row else None


def _dt(v: str | datetime | None) -> datetime | None:
    """A time as either backend gives it: ISO text (SQLite) or a datetime (Postgres)."""
    if not v:
        return None
    return v if isinstance(v, datetime) else datetime.fromisoformat(v)


def _row(r: sqlite3.Row | Mapping[str, Any]) -> StoredFlag:
    """A `red_flags` row of either backend (the week as ISO text or a date)."""
    week = r["week"]
    return StoredFlag(
        flag=r["flag"], week=week if isinstance(week, date) else date.fromisoformat(week),
        campaign=r["campaign"], value=float(r["value"]), threshold=float(r["threshold"]),
        sample=int(r["sample"]), message=r["message"], id=int(r["id"]),
        fired_at=_dt(r["fired_at"]), alerted_at=_dt(r["alerted_at"]), outcome=r["outcome"],
        dismissed_at=_dt(r["dismissed_at"]),
    )  # fmt: skip


def open_flag_store(ws: Workspace) -> FlagStore:
    """The workspace's red flags, close it after use: `funnel.sqlite` in the data directory, or
    with `GTM_DATABASE_URL` the database (on the workspace's pool when it has one)."""
    if ws.settings.database_url is None:
        return FlagStore(ws.settings.path("funnel.sqlite"), clock=ws.deps.clock)
    from gtm.app.pg_red_flags import PgFlagStore

    db = ws.database or ws.settings.database_url.get_secret_value()
    # PgFlagStore answers FlagStore's methods one for one (tests/test_feedback_backends.py).
    return cast(FlagStore, PgFlagStore(db, clock=ws.deps.clock))


async def raise_red_flags(
    ws: Workspace,
    *,
    as_of: datetime | None = None,
    weeks: int = 2,
    inputs: FunnelInputs | None = None,
) -> list[StoredFlag]:
    """Evaluate the red flags of the last `weeks` ISO weeks (to `as_of`, default now) and alert
    each newly fired one, once. Returns the flags alerted by this call (empty on a repeat).
    `inputs`: the workspace's history already loaded (`gtm report` has), else it is read."""
    report = compute_funnel(inputs or ws, as_of=as_of or ws.deps.clock(), weeks=weeks)
    fired = evaluate(report, ws.playbook_for)
    sent: list[StoredFlag] = []
    with open_flag_store(ws) as store:
        for flag in fired:
            store.record(flag)
            claimed = store.claim(flag)
            if claimed is None:
                continue
            if ws.deps.alerts is None:
                store.alerted(claimed.id, "no alert channel configured: shown in the inbox only")
                continue
            try:
                await ws.deps.alerts.alert("red_flag", flag.message)
            except Exception as exc:  # noqa: BLE001 - the claim lapses; a later run retries
                log.warning("red flag alert failed, tried again later: %s", exc)
                continue
            store.alerted(claimed.id, "alerted")
            sent.append(claimed)
    return sent


def open_flags(ws: Workspace) -> list[StoredFlag]:
    """Fired flags nobody dismissed, newest week first: the inbox banner."""
    with open_flag_store(ws) as store:
        return store.listing()


def dismiss_flag(ws: Workspace, flag_id: int, by: str) -> StoredFlag | None:
    """A person has seen flag `flag_id` and acted; None when there is no such flag."""
    with open_flag_store(ws) as store:
        return store.dismiss(flag_id, by)
