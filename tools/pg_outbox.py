"""The send ledger (`tools.outbox.Outbox`) on Postgres, for several processes on several machines.

Same rules, same answers: `tools.outbox_logic.OutboxStore` holds them for both backends; this
module gives the queries and the locking. What SQLite gets from its single writer lock, this
gets from transaction-scoped advisory locks held by the database server: `reserve` locks the
key, the sender (its caps and pacing), the person and the account (their cooldowns) before it
counts and inserts, so two reservations that could affect each other's answer run one after the
other, wherever they run, and reservations that cannot (another seat, another person) run side
by side. A process that dies mid-reservation loses its connection, and the server drops its
locks and rolls its transaction back. Locks are taken in one fixed order, so two reservations
never wait on each other in a circle.

Every public method is run again while the database is briefly away (`tools.pg.retried`);
`reserve`, `erase_contact` and `recover_stale_pending` are not run again after an ambiguous
commit (a second run would answer "reserved concurrently", a count of 0, no rows), so that case
is one `DatabaseError` line and the next run finds what was saved.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from gtm.domain.models import OutboxEntry, OutboxState, Step
from tools.outbox_logic import OutboxStore, SentBrief
from tools.pg import PgStore, retried, where

__all__ = ["PgOutbox"]

_TOUCH = ("recipient", "position", "tier", "prompt_version", "genericness", "verdict")
_COLUMNS = (
    "key, campaign, account_id, contact_key, step, channel, sender, state, provider_id, error,"
    " created_at, updated_at, " + ", ".join(_TOUCH)
)

_Cur = psycopg.Cursor[dict[str, Any]]


def _entry(row: dict[str, Any]) -> OutboxEntry:
    touch = {k: row.pop(k) for k in _TOUCH}
    row.pop("seq", None)
    return OutboxEntry.model_validate({**row, "touch": touch})


def _lock_keys(key: str, sender: str, contact_key: str, account_id: str) -> list[str]:
    """What a reservation must hold alone, in the one order every reservation takes them."""
    return sorted({f"key:{key}", f"sender:{sender}", f"person:{contact_key}", f"acct:{account_id}"})


class PgOutbox(PgStore, OutboxStore[_Cur]):
    """`tools.outbox.Outbox` on a Postgres database (`GTM_DATABASE_URL`)."""

    # The rules themselves are `OutboxStore`'s (tests/test_store_rules.py): here each is only
    # wrapped, so its whole transaction runs again while the database is away (`retried`).
    # `reserve` is not run again after an ambiguous commit: it would find its own row.
    reserve = retried(idempotent=False)(OutboxStore.reserve)
    get = retried(idempotent=True)(OutboxStore.get)
    count = retried(idempotent=True)(OutboxStore.count)
    cooldown_hit = retried(idempotent=True)(OutboxStore.cooldown_hit)

    @contextmanager
    def _reading(self) -> Iterator[_Cur]:
        with self._db.connection() as conn:
            yield conn.cursor(row_factory=dict_row)

    @contextmanager
    def _reserving(
        self, key: str, sender: str, contact_key: str, account_id: str
    ) -> Iterator[_Cur]:
        """One transaction: advisory locks on the key, sender, person and account first (held
        until it ends), then whatever the block does."""
        with self._db.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            for name in _lock_keys(key, sender, contact_key, account_id):
                cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"outbox:{name}",)
                )
            yield cur

    def _get(self, h: _Cur, key: str) -> OutboxEntry | None:
        row = h.execute(f"SELECT {_COLUMNS} FROM outbox WHERE key = %s", (key,)).fetchone()
        return _entry(row) if row else None

    def _count(self, h: _Cur, sender: str, step: Step, since: datetime) -> int:
        row = h.execute(
            "SELECT COUNT(*) AS n FROM outbox WHERE sender = %s AND step = %s"
            " AND created_at >= %s AND state != 'failed'",
            (sender, step, since),
        ).fetchone()
        assert row is not None
        return int(row["n"])

    def _last_action(self, h: _Cur, sender: str) -> datetime | None:
        row = h.execute(
            "SELECT MAX(created_at) AS last FROM outbox WHERE sender = %s AND state != 'failed'",
            (sender,),
        ).fetchone()
        return None if row is None else row["last"]

    def _latest_near(
        self, h: _Cur, campaign: str, near: list[tuple[str, str, datetime]]
    ) -> OutboxEntry | None:
        clause = " OR ".join(f"({column} = %s AND created_at > %s)" for column, _, _ in near)
        args: list[Any] = [campaign]
        for _, value, since in near:
            args += [value, since]
        row = h.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE campaign != %s AND state != 'failed'"
            f" AND ({clause}) ORDER BY created_at DESC, seq DESC LIMIT 1",
            args,
        ).fetchone()
        return _entry(row) if row else None

    def _insert(
        self, h: _Cur, now: datetime, fields: tuple[str, ...], facts: dict[str, Any]
    ) -> OutboxEntry:
        row = h.execute(
            f"INSERT INTO outbox ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, 'pending',"
            f" NULL, NULL, %s, %s{', %s' * len(_TOUCH)})"
            f" ON CONFLICT (key) DO NOTHING RETURNING {_COLUMNS}",
            (*fields, now, now, *(facts[k] for k in _TOUCH)),
        ).fetchone()
        assert row is not None, "the key's lock was held: no one else can have inserted it"
        return _entry(row)

    @retried(idempotent=True)
    def release(self, key: str) -> None:
        """Drop a `pending` reservation whose call certainly did not happen (so it may retry)."""
        with self._db.connection() as conn:
            conn.execute("DELETE FROM outbox WHERE key = %s AND state = 'pending'", (key,))

    @retried(idempotent=True)
    def _mark(
        self, key: str, state: OutboxState, provider_id: str | None, error: str | None
    ) -> None:
        with self._db.connection() as conn:
            conn.execute(
                "UPDATE outbox SET state = %s, provider_id = COALESCE(%s, provider_id),"
                " error = %s, updated_at = %s WHERE key = %s",
                (state, provider_id, error, self._clock(), key),
            )

    @retried(idempotent=True)
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
        with self._reading() as h:
            rows = h.execute(
                f"SELECT {_COLUMNS} FROM outbox{clause} ORDER BY created_at, seq", args
            ).fetchall()
        return [_entry(r) for r in rows]

    @retried(idempotent=True)
    def sent_briefs(self) -> list[SentBrief]:
        """Every `sent` action, in no particular order, as plain tuples (`Outbox.sent_briefs`)."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT key, campaign, account_id, contact_key, step, channel, sender, updated_at,"
                " position, tier, prompt_version, genericness, verdict FROM outbox"
                " WHERE state = 'sent'"
            ).fetchall()
        return [SentBrief._make(r) for r in rows]

    @retried(idempotent=False)
    def erase_contact(self, contact_key: str, replacement: str) -> int:
        """Replace a person's key by a one-way stand-in and forget the address an action went
        to (`Outbox.erase_contact`); the table is rewritten so the old values leave its files."""
        with self._db.connection() as conn:
            n = conn.execute(
                "UPDATE outbox SET contact_key = %s, recipient = NULL WHERE contact_key = %s",
                (replacement, contact_key),
            ).rowcount
            n += conn.execute(
                "UPDATE outbox SET recipient = NULL WHERE recipient = %s", (contact_key,)
            ).rowcount
        self._db.vacuum_full("outbox")
        return int(n)

    @retried(idempotent=False)
    def recover_stale_pending(self, older_than: datetime) -> list[OutboxEntry]:
        """`pending` rows older than a time belong to a dead process: they become `unknown`.
        One statement, so two processes recovering at once each report a row at most once."""
        with self._reading() as h:
            rows = h.execute(
                "UPDATE outbox SET state = 'unknown', error = %s, updated_at = %s"
                " WHERE state = 'pending' AND updated_at < %s"
                f" RETURNING seq, {_COLUMNS}",
                (
                    "pending when its process died; check the provider by hand",
                    self._clock(),
                    older_than,
                ),
            ).fetchall()
        rows.sort(key=lambda r: (r["created_at"], r["seq"]))
        return [_entry(r) for r in rows]
