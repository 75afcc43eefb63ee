"""The send ledger: every provider action is recorded here before it is attempted.

States: `pending` (reserved, call not confirmed) → `sent` | `failed`; `unknown` when a process
died between the provider call and the record. `unknown` is never retried automatically.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, NamedTuple

from gtm.domain.models import Channel, OutboxEntry, OutboxState, Step, TouchFacts
from tools.sqlite import add_columns, compact, connect, where

__all__ = [
    "Cooldowns",
    "CooldownHit",
    "Outbox",
    "Limit",
    "Reservation",
    "SentBrief",
    "iso_week_start",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY,
    campaign TEXT NOT NULL,
    account_id TEXT NOT NULL,
    contact_key TEXT NOT NULL,
    step TEXT NOT NULL,
    channel TEXT NOT NULL,
    sender TEXT NOT NULL,
    state TEXT NOT NULL,
    provider_id TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_window ON outbox(sender, step, created_at);
CREATE INDEX IF NOT EXISTS outbox_campaign ON outbox(campaign, state);
"""

_TOUCH_COLUMNS = {
    "recipient": "TEXT",
    "position": "INTEGER NOT NULL DEFAULT 0",
    "tier": "INTEGER",
    "prompt_version": "TEXT",
    "genericness": "REAL",
    "verdict": "TEXT",
}
"""`TouchFacts`, one column each, added to outboxes written before they were kept."""


def iso_week_start(t: datetime) -> datetime:
    """Monday 00:00 UTC of the ISO week containing `t`."""
    t = t.astimezone(UTC)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


@dataclass(frozen=True)
class Limit:
    """At most `limit` actions of one step by one sender from `since` (a cap window) on."""

    limit: int
    since: datetime
    until: datetime
    label: str


@dataclass(frozen=True)
class Cooldowns:
    """How long a person, and anyone at their account, rests after an action of another
    campaign. A window of zero (or less) does not apply."""

    person: timedelta
    account: timedelta


@dataclass(frozen=True)
class CooldownHit:
    """The latest action of another campaign that keeps a person (`scope` "person") or their
    account ("account") from being contacted now, and the window it falls in."""

    entry: OutboxEntry
    scope: Literal["person", "account"]
    window: timedelta
    age: timedelta


@dataclass(frozen=True)
class Reservation:
    """What `Outbox.reserve` did. `entry` is None when a cooldown, a cap or the pacing gap
    stopped it."""

    entry: OutboxEntry | None
    created: bool
    full: Limit | None = None
    """The cap that is full, if one is."""
    used: int = 0
    not_before: datetime | None = None
    """Pacing: the earliest time this sender may act again."""
    cooldown: CooldownHit | None = None
    """The action of another campaign that puts this person or account in cooldown, if one does."""


class SentBrief(NamedTuple):
    """A sent action as counting needs it (the funnel): no provider id, error or recipient."""

    key: str
    campaign: str
    account_id: str
    contact_key: str
    step: Step
    channel: Channel
    sender: str
    sent_at: datetime
    """When it was marked sent (the row's `updated_at`)."""
    position: int
    tier: int | None
    prompt_version: str | None
    genericness: float | None
    verdict: str | None


class Outbox:
    def __init__(self, path: Path, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._clock = clock
        self._db = connect(path, _SCHEMA)
        add_columns(self._db, "outbox", _TOUCH_COLUMNS)

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _entry(r: sqlite3.Row) -> OutboxEntry:
        row = dict(r)
        touch = {k: row.pop(k) for k in _TOUCH_COLUMNS}
        return OutboxEntry.model_validate({**row, "touch": touch})

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        """One writer at a time across processes: counting and inserting happen under one lock."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def reserve(
        self,
        *,
        key: str,
        campaign: str,
        account_id: str,
        contact_key: str,
        step: Step,
        channel: Channel,
        sender: str,
        limits: Sequence[Limit] = (),
        min_gap: timedelta | None = None,
        cooldown: Cooldowns | None = None,
        touch: TouchFacts | None = None,
    ) -> Reservation:
        """Record a `pending` action under `key`, if no entry has it, the person and account are
        out of `cooldown`, and the caps allow it.

        Deciding and inserting happen in one transaction that holds SQLite's write lock, so two
        processes cannot both take the last slot under a cap, nor both contact one person from
        two campaigns. `min_gap` is the least time since this sender's previous action (pacing
        for live providers). `touch` is kept with the row: whom it went to and how it was judged.
        """
        now = self._clock()
        with self._write_lock():
            existing = self.get(key)
            if existing is not None:
                return Reservation(existing, created=False)
            if cooldown is not None:
                hit = self.cooldown_hit(
                    campaign=campaign,
                    contact_key=contact_key,
                    account_id=account_id,
                    cooldown=cooldown,
                    now=now,
                )
                if hit is not None:
                    return Reservation(None, created=False, cooldown=hit)
            for lim in limits:
                used = self.count(sender, step, lim.since)
                if used >= lim.limit:
                    return Reservation(None, created=False, full=lim, used=used)
            if min_gap is not None and min_gap > timedelta(0):
                row = self._db.execute(
                    "SELECT MAX(created_at) FROM outbox WHERE sender = ? AND state != 'failed'",
                    (sender,),
                ).fetchone()
                if row[0]:
                    ready = datetime.fromisoformat(row[0]) + min_gap
                    if ready > now:
                        return Reservation(None, created=False, not_before=ready)
            stamp = now.isoformat()
            facts = (touch or TouchFacts()).model_dump()
            self._db.execute(
                "INSERT INTO outbox (key, campaign, account_id, contact_key, step, channel,"
                f" sender, state, created_at, updated_at, {', '.join(_TOUCH_COLUMNS)})"
                f" VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?{', ?' * len(_TOUCH_COLUMNS)})",
                (key, campaign, account_id, contact_key, step, channel, sender, stamp, stamp)
                + tuple(facts[k] for k in _TOUCH_COLUMNS),
            )
        entry = self.get(key)
        assert entry is not None
        return Reservation(entry, created=True)

    def release(self, key: str) -> None:
        """Drop a `pending` reservation whose call certainly did not happen (so it may retry)."""
        self._db.execute("DELETE FROM outbox WHERE key = ? AND state = 'pending'", (key,))

    def _mark(
        self, key: str, state: OutboxState, provider_id: str | None, error: str | None
    ) -> None:
        self._db.execute(
            "UPDATE outbox SET state = ?, provider_id = COALESCE(?, provider_id), error = ?,"
            " updated_at = ? WHERE key = ?",
            (state, provider_id, error, self._clock().isoformat(), key),
        )

    def mark_sent(self, key: str, provider_id: str) -> None:
        self._mark(key, "sent", provider_id, None)

    def mark_failed(self, key: str, error: str) -> None:
        self._mark(key, "failed", None, error)

    def mark_unknown(self, key: str, error: str) -> None:
        self._mark(key, "unknown", None, error)

    def get(self, key: str) -> OutboxEntry | None:
        r = self._db.execute("SELECT * FROM outbox WHERE key = ?", (key,)).fetchone()
        return self._entry(r) if r else None

    def entries(
        self, campaign: str | None = None, state: OutboxState | None = None
    ) -> list[OutboxEntry]:
        clause, args = where(campaign=campaign, state=state)
        sql = f"SELECT * FROM outbox{clause} ORDER BY created_at, rowid"
        return [self._entry(r) for r in self._db.execute(sql, args).fetchall()]

    def sent_briefs(self) -> list[SentBrief]:
        """Every `sent` action, in no particular order (sorting cost more than the query), as
        plain tuples: one query and no model validation, for counting tens of thousands of rows
        (the funnel)."""
        cur = self._db.cursor()
        cur.row_factory = None  # plain tuples: named rows cost more than the query here
        rows = cur.execute(
            "SELECT key, campaign, account_id, contact_key, step, channel, sender, updated_at,"
            " position, tier, prompt_version, genericness, verdict FROM outbox"
            " WHERE state = 'sent'"
        ).fetchall()
        return [SentBrief._make((*r[:7], datetime.fromisoformat(r[7]), *r[8:])) for r in rows]

    def count(self, sender: str, step: Step, since: datetime) -> int:
        """Actions that count against a cap: everything but `failed`, from `since` on."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM outbox WHERE sender = ? AND step = ? AND created_at >= ?"
            " AND state != 'failed'",
            (sender, step, since.astimezone(UTC).isoformat()),
        ).fetchone()
        return int(row[0])

    def cooldown_hit(
        self,
        *,
        campaign: str,
        contact_key: str,
        account_id: str,
        cooldown: Cooldowns,
        now: datetime | None = None,
    ) -> CooldownHit | None:
        """The latest action of another campaign that puts this person or account in cooldown.

        Every state but `failed` counts: a `pending` or `unknown` action may be mid-call or may
        have reached the person. The campaign's own actions are exempt (a visit before a connect).
        `reserve` asks this under its write lock; read alone (at intake) it is only a forecast.
        """
        now = (now or self._clock()).astimezone(UTC)
        windows = [
            (column, value, window)
            for column, value, window in (
                ("contact_key", contact_key, cooldown.person),
                ("account_id", account_id, cooldown.account),
            )
            if window > timedelta(0)
        ]
        if not windows:
            return None
        near = " OR ".join(f"({column} = ? AND created_at > ?)" for column, _, _ in windows)
        args: list[str] = [campaign]
        for _, value, window in windows:
            args += [value, (now - window).isoformat()]
        row = self._db.execute(
            f"SELECT * FROM outbox WHERE campaign != ? AND state != 'failed' AND ({near})"
            " ORDER BY created_at DESC, rowid DESC LIMIT 1",
            args,
        ).fetchone()
        if row is None:
            return None
        entry = self._entry(row)
        age = now - entry.created_at
        if entry.contact_key == contact_key and age < cooldown.person:
            return CooldownHit(entry, "person", cooldown.person, age)
        return CooldownHit(entry, "account", cooldown.account, age)

    def erase_contact(self, contact_key: str, replacement: str) -> int:
        """Replace a person's key by a one-way stand-in and forget the address an action went to
        (`contact_key` may be either). The rows stay: they still count against caps and still
        stop a resend; they no longer say who it was."""
        n = self._db.execute(
            "UPDATE outbox SET contact_key = ?, recipient = NULL WHERE contact_key = ?",
            (replacement, contact_key),
        ).rowcount
        n += self._db.execute(
            "UPDATE outbox SET recipient = NULL WHERE recipient = ?", (contact_key,)
        ).rowcount
        compact(self._db)
        return int(n)

    def recover_stale_pending(self, older_than: datetime) -> list[OutboxEntry]:
        """`pending` rows older than a time belong to a dead process: they become `unknown`."""
        stale = [e for e in self.entries(state="pending") if e.updated_at < older_than]
        for e in stale:
            self.mark_unknown(e.key, "pending when its process died; check the provider by hand")
        return [self.get(e.key) or e for e in stale]
