"""The send ledger (`tools.outbox.Outbox`) on Postgres, for several processes on several machines.

Same methods, same answers. What SQLite gets from its single writer lock, this gets from
transaction-scoped advisory locks held by the database server: `reserve` locks the key, the
sender (its caps and pacing), the person and the account (their cooldowns) before it counts and
inserts, so two reservations that could affect each other's answer run one after the other,
wherever they run, and reservations that cannot (another seat, another person) run side by side.
A process that dies mid-reservation loses its connection, and the server drops its locks and
rolls its transaction back. Locks are taken in one fixed order, so two reservations never wait
on each other in a circle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.rows import dict_row

from gtm.domain.models import Channel, OutboxEntry, OutboxState, Step, TouchFacts
from tools.outbox import CooldownHit, Cooldowns, Limit, Reservation, SentBrief
from tools.pg import Database, open_database

__all__ = ["PgOutbox"]

_TOUCH = ("recipient", "position", "tier", "prompt_version", "genericness", "verdict")
_COLUMNS = (
    "key, campaign, account_id, contact_key, step, channel, sender, state, provider_id, error,"
    " created_at, updated_at, " + ", ".join(_TOUCH)
)


def _entry(row: dict[str, Any]) -> OutboxEntry:
    touch = {k: row.pop(k) for k in _TOUCH}
    row.pop("seq", None)
    return OutboxEntry.model_validate({**row, "touch": touch})


def _lock_keys(key: str, sender: str, contact_key: str, account_id: str) -> list[str]:
    """What a reservation must hold alone, in the one order every reservation takes them."""
    return sorted({f"key:{key}", f"sender:{sender}", f"person:{contact_key}", f"acct:{account_id}"})


class PgOutbox:
    """`tools.outbox.Outbox` on a Postgres database (`GTM_DATABASE_URL`)."""

    def __init__(
        self, db: Database | str, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._clock = clock
        self._db, self._owned = open_database(db)

    def close(self) -> None:
        if self._owned:
            self._db.close()

    def _one(self, query: str, args: Sequence[Any]) -> dict[str, Any] | None:
        with self._db.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(query, args).fetchone()

    def _all(self, query: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._db.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(query, args).fetchall()

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
        out of `cooldown`, and the caps allow it (`Outbox.reserve`).

        One transaction: advisory locks on the key, sender, person and account first, then
        the checks and the insert, so no other reservation can change what was counted before
        this one commits."""
        now = self._clock()
        with self._db.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            for name in _lock_keys(key, sender, contact_key, account_id):
                cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"outbox:{name}",)
                )
            found = cur.execute(f"SELECT {_COLUMNS} FROM outbox WHERE key = %s", (key,)).fetchone()
            if found is not None:
                return Reservation(_entry(found), created=False)
            if cooldown is not None:
                hit = self._cooldown_hit(
                    cur, campaign, contact_key, account_id, cooldown, now.astimezone(UTC)
                )
                if hit is not None:
                    return Reservation(None, created=False, cooldown=hit)
            for lim in limits:
                used = self._count(cur, sender, step, lim.since)
                if used >= lim.limit:
                    return Reservation(None, created=False, full=lim, used=used)
            if min_gap is not None and min_gap > timedelta(0):
                last = cur.execute(
                    "SELECT MAX(created_at) AS last FROM outbox"
                    " WHERE sender = %s AND state != 'failed'",
                    (sender,),
                ).fetchone()
                if last is not None and last["last"] is not None:
                    ready = last["last"] + min_gap
                    if ready > now:
                        return Reservation(None, created=False, not_before=ready)
            facts = (touch or TouchFacts()).model_dump()
            row = cur.execute(
                f"INSERT INTO outbox ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, 'pending',"
                f" NULL, NULL, %s, %s{', %s' * len(_TOUCH)})"
                f" ON CONFLICT (key) DO NOTHING RETURNING {_COLUMNS}",
                (key, campaign, account_id, contact_key, step, channel, sender, now, now)
                + tuple(facts[k] for k in _TOUCH),
            ).fetchone()
        assert row is not None, "the key's lock was held: no one else can have inserted it"
        return Reservation(_entry(row), created=True)

    def release(self, key: str) -> None:
        """Drop a `pending` reservation whose call certainly did not happen (so it may retry)."""
        with self._db.connection() as conn:
            conn.execute("DELETE FROM outbox WHERE key = %s AND state = 'pending'", (key,))

    def _mark(
        self, key: str, state: OutboxState, provider_id: str | None, error: str | None
    ) -> None:
        with self._db.connection() as conn:
            conn.execute(
                "UPDATE outbox SET state = %s, provider_id = COALESCE(%s, provider_id),"
                " error = %s, updated_at = %s WHERE key = %s",
                (state, provider_id, error, self._clock(), key),
            )

    def mark_sent(self, key: str, provider_id: str) -> None:
        self._mark(key, "sent", provider_id, None)

    def mark_failed(self, key: str, error: str) -> None:
        self._mark(key, "failed", None, error)

    def mark_unknown(self, key: str, error: str) -> None:
        self._mark(key, "unknown", None, error)

    def get(self, key: str) -> OutboxEntry | None:
        row = self._one(f"SELECT {_COLUMNS} FROM outbox WHERE key = %s", (key,))
        return _entry(row) if row else None

    def entries(
        self, campaign: str | None = None, state: OutboxState | None = None
    ) -> list[OutboxEntry]:
        used = [(c, v) for c, v in (("campaign", campaign), ("state", state)) if v is not None]
        clause = " WHERE " + " AND ".join(f"{c} = %s" for c, _ in used) if used else ""
        rows = self._all(
            f"SELECT {_COLUMNS} FROM outbox{clause} ORDER BY created_at, seq", [v for _, v in used]
        )
        return [_entry(r) for r in rows]

    def sent_briefs(self) -> list[SentBrief]:
        """Every `sent` action, in no particular order, as plain tuples (`Outbox.sent_briefs`)."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT key, campaign, account_id, contact_key, step, channel, sender, updated_at,"
                " position, tier, prompt_version, genericness, verdict FROM outbox"
                " WHERE state = 'sent'"
            ).fetchall()
        return [SentBrief._make(r) for r in rows]

    @staticmethod
    def _count(cur: Any, sender: str, step: Step, since: datetime) -> int:
        row = cur.execute(
            "SELECT COUNT(*) AS n FROM outbox WHERE sender = %s AND step = %s"
            " AND created_at >= %s AND state != 'failed'",
            (sender, step, since),
        ).fetchone()
        return int(row["n"])

    def count(self, sender: str, step: Step, since: datetime) -> int:
        """Actions that count against a cap: everything but `failed`, from `since` on."""
        with self._db.connection() as conn:
            return self._count(conn.cursor(row_factory=dict_row), sender, step, since)

    @staticmethod
    def _cooldown_hit(
        cur: Any,
        campaign: str,
        contact_key: str,
        account_id: str,
        cooldown: Cooldowns,
        now: datetime,
    ) -> CooldownHit | None:
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
        near = " OR ".join(f"({column} = %s AND created_at > %s)" for column, _, _ in windows)
        args: list[Any] = [campaign]
        for _, value, window in windows:
            args += [value, now - window]
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE campaign != %s AND state != 'failed'"
            f" AND ({near}) ORDER BY created_at DESC, seq DESC LIMIT 1",
            args,
        ).fetchone()
        if row is None:
            return None
        entry = _entry(row)
        age = now - entry.created_at
        if entry.contact_key == contact_key and age < cooldown.person:
            return CooldownHit(entry, "person", cooldown.person, age)
        return CooldownHit(entry, "account", cooldown.account, age)

    def cooldown_hit(
        self,
        *,
        campaign: str,
        contact_key: str,
        account_id: str,
        cooldown: Cooldowns,
        now: datetime | None = None,
    ) -> CooldownHit | None:
        """The latest action of another campaign that puts this person or account in cooldown
        (`Outbox.cooldown_hit`); read alone, outside `reserve`, only a forecast."""
        at = (now or self._clock()).astimezone(UTC)
        with self._db.connection() as conn:
            return self._cooldown_hit(
                conn.cursor(row_factory=dict_row), campaign, contact_key, account_id, cooldown, at
            )

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

    def recover_stale_pending(self, older_than: datetime) -> list[OutboxEntry]:
        """`pending` rows older than a time belong to a dead process: they become `unknown`.
        One statement, so two processes recovering at once each report a row at most once."""
        with self._db.connection() as conn:
            rows = (
                conn.cursor(row_factory=dict_row)
                .execute(
                    "UPDATE outbox SET state = 'unknown', error = %s, updated_at = %s"
                    " WHERE state = 'pending' AND updated_at < %s"
                    f" RETURNING seq, {_COLUMNS}",
                    (
                        "pending when its process died; check the provider by hand",
                        self._clock(),
                        older_than,
                    ),
                )
                .fetchall()
            )
        rows.sort(key=lambda r: (r["created_at"], r["seq"]))
        return [_entry(r) for r in rows]
