"""The send ledger: every provider action is recorded here before it is attempted.

States: `pending` (reserved, call not confirmed) → `sent` | `failed`; `unknown` when a process
died between the provider call and the record. `unknown` is never retried automatically.

`Outbox` is the ledger in a SQLite file: the queries and SQLite's writer lock. What they answer
(caps, pacing, cooldowns) is decided in `tools.outbox_logic.OutboxStore`, shared with Postgres.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gtm.domain.models import OutboxEntry, OutboxState, Step
from tools.outbox_logic import (
    CooldownHit,
    Cooldowns,
    Limit,
    OutboxStore,
    Reservation,
    SentBrief,
    iso_week_start,
)
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
CREATE INDEX IF NOT EXISTS outbox_person ON outbox(contact_key, created_at);
CREATE INDEX IF NOT EXISTS outbox_account ON outbox(account_id, created_at);
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


class Outbox(OutboxStore[sqlite3.Connection]):
    """The ledger in one SQLite file; several processes may share it."""

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
    def _reading(self) -> Iterator[sqlite3.Connection]:
        yield self._db

    @contextmanager
    def _reserving(
        self, key: str, sender: str, contact_key: str, account_id: str
    ) -> Iterator[sqlite3.Connection]:
        """SQLite's one writer lock across processes: counting and inserting happen under it."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _get(self, h: sqlite3.Connection, key: str) -> OutboxEntry | None:
        r = h.execute("SELECT * FROM outbox WHERE key = ?", (key,)).fetchone()
        return self._entry(r) if r else None

    def _count(self, h: sqlite3.Connection, sender: str, step: Step, since: datetime) -> int:
        row = h.execute(
            "SELECT COUNT(*) FROM outbox WHERE sender = ? AND step = ? AND created_at >= ?"
            " AND state != 'failed'",
            (sender, step, since.astimezone(UTC).isoformat()),
        ).fetchone()
        return int(row[0])

    def _last_action(self, h: sqlite3.Connection, sender: str) -> datetime | None:
        row = h.execute(
            "SELECT MAX(created_at) FROM outbox WHERE sender = ? AND state != 'failed'",
            (sender,),
        ).fetchone()
        return datetime.fromisoformat(row[0]) if row[0] else None

    def _latest_near(
        self, h: sqlite3.Connection, campaign: str, near: list[tuple[str, str, datetime]]
    ) -> OutboxEntry | None:
        clause = " OR ".join(f"({column} = ? AND created_at > ?)" for column, _, _ in near)
        args: list[str] = [campaign]
        for _, value, since in near:
            args += [value, since.isoformat()]
        row = h.execute(
            f"SELECT * FROM outbox WHERE campaign != ? AND state != 'failed' AND ({clause})"
            " ORDER BY created_at DESC, rowid DESC LIMIT 1",
            args,
        ).fetchone()
        return self._entry(row) if row else None

    def _insert(
        self, h: sqlite3.Connection, now: datetime, fields: tuple[str, ...], facts: dict[str, Any]
    ) -> OutboxEntry:
        stamp = now.isoformat()
        h.execute(
            "INSERT INTO outbox (key, campaign, account_id, contact_key, step, channel,"
            f" sender, state, created_at, updated_at, {', '.join(_TOUCH_COLUMNS)})"
            f" VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?{', ?' * len(_TOUCH_COLUMNS)})",
            (*fields, stamp, stamp, *(facts[k] for k in _TOUCH_COLUMNS)),
        )
        entry = self._get(h, fields[0])
        assert entry is not None
        return entry

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

    def entries(
        self,
        campaign: str | None = None,
        state: OutboxState | None = None,
        *,
        account_id: str | None = None,
        contact_key: str | None = None,
    ) -> list[OutboxEntry]:
        clause, args = where(
            campaign=campaign, state=state, account_id=account_id, contact_key=contact_key
        )
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
