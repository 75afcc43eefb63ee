"""The send ledger: every provider action is recorded here before it is attempted.

States: `pending` (reserved, call not confirmed) → `sent` | `failed`; `unknown` when a process
died between the provider call and the record. `unknown` is never retried automatically.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gtm.models import Channel, OutboxEntry, OutboxState, Step
from tools.sqlite import connect, where

__all__ = ["Outbox", "iso_week_start"]

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


def iso_week_start(t: datetime) -> datetime:
    """Monday 00:00 UTC of the ISO week containing `t`."""
    t = t.astimezone(UTC)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


class Outbox:
    def __init__(self, path: Path, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._clock = clock
        self._db = connect(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _entry(r: sqlite3.Row) -> OutboxEntry:
        return OutboxEntry.model_validate(dict(r))

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
    ) -> tuple[OutboxEntry, bool]:
        """Record a `pending` action under `key` unless one exists. True if this call made it."""
        now = self._clock().isoformat()
        cur = self._db.execute(
            "INSERT OR IGNORE INTO outbox (key, campaign, account_id, contact_key, step, channel,"
            " sender, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (key, campaign, account_id, contact_key, step, channel, sender, now, now),
        )
        entry = self.get(key)
        assert entry is not None
        return entry, cur.rowcount == 1

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

    def count(self, sender: str, step: Step, since: datetime) -> int:
        """Actions that count against a cap: everything but `failed`, from `since` on."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM outbox WHERE sender = ? AND step = ? AND created_at >= ?"
            " AND state != 'failed'",
            (sender, step, since.astimezone(UTC).isoformat()),
        ).fetchone()
        return int(row[0])

    def recover_stale_pending(self, older_than: datetime) -> list[OutboxEntry]:
        """`pending` rows older than a time belong to a dead process: they become `unknown`."""
        stale = [e for e in self.entries(state="pending") if e.updated_at < older_than]
        for e in stale:
            self.mark_unknown(e.key, "pending when its process died; check the provider by hand")
        return [self.get(e.key) or e for e in stale]
