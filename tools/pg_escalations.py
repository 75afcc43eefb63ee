"""The escalations (`tools.escalations.EscalationStore`) on Postgres.

Same methods, same answers: the key (`tools.escalations.escalation_key`) is unique, so two
workers raising one escalation store it once and both read back the one row; a stage is marked
once per event. Marking done keeps the first time and person, as the SQLite file does.

While the database is briefly away each method is run again whole (`tools.pg.retried`). Not
run again after an ambiguous commit, because a second run would answer differently: `add` (it
would call its own new row "already stored") and `erase_person` (its count); that case is one
`DatabaseError` line. An erasure rewrites the table, so the deleted text leaves its files.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from tools.escalations import Escalation, Stage, escalation_key, escalation_of
from tools.pg import PgStore, retried

__all__ = ["PgEscalationStore"]

_ADD = (
    "INSERT INTO escalations (key, event_key, signal, action, person, contact, company, owner,"
    " evidence, due_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (key) DO NOTHING"
)


class PgEscalationStore(PgStore):
    """`tools.escalations.EscalationStore` on a Postgres database (`GTM_DATABASE_URL`)."""

    def _one(self, sql: str, args: Iterable[Any]) -> dict[str, Any] | None:
        with self._db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, tuple(args)).fetchone()

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, tuple(args)).fetchall()

    @retried(idempotent=False)
    def add(
        self,
        *,
        event_key: str,
        signal: str,
        action: str,
        person: str,
        contact: str,
        company: str,
        owner: str,
        evidence: str,
        due_at: datetime | None,
    ) -> tuple[Escalation, bool]:
        """Store the escalation `signal` raised for `event_key`, unless it is stored already;
        returns the stored row and whether it is new (a repeat changes nothing). A worker that
        loses the race waits for the winner's row and reads it back."""
        key = escalation_key(event_key, signal, action)
        values = (
            key, event_key, signal, action, person, contact, company, owner, evidence, due_at,
            self._clock(),
        )  # fmt: skip
        with self._db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            new = cur.execute(_ADD, values).rowcount == 1
            row = cur.execute("SELECT * FROM escalations WHERE key = %s", (key,)).fetchone()
        assert row is not None, "inserted or already there, in this transaction's view"
        return escalation_of(row), new

    @retried(idempotent=True)
    def acted(self, esc_id: int, outcome: str, *, done_by: str | None = None) -> None:
        """Record that the side effects ran, with what they did; `done_by` also closes it."""
        now = self._clock()
        with self._db.connection() as conn:
            if done_by is None:
                conn.execute(
                    "UPDATE escalations SET acted_at = %s, outcome = %s WHERE id = %s",
                    (now, outcome, esc_id),
                )
            else:
                conn.execute(
                    "UPDATE escalations SET acted_at = %s, outcome = %s,"
                    " done_at = COALESCE(done_at, %s), done_by = COALESCE(done_by, %s)"
                    " WHERE id = %s",
                    (now, outcome, now, done_by, esc_id),
                )

    @retried(idempotent=True)
    def mark_done(self, esc_id: int, by: str) -> Escalation | None:
        """A human handled it. Marking it again keeps the first time and person."""
        row = self._one(
            "UPDATE escalations SET done_at = COALESCE(done_at, %s),"
            " done_by = COALESCE(done_by, %s) WHERE id = %s RETURNING *",
            (self._clock(), by, esc_id),
        )
        return escalation_of(row) if row else None

    @retried(idempotent=True)
    def get(self, esc_id: int) -> Escalation | None:
        row = self._one("SELECT * FROM escalations WHERE id = %s", (esc_id,))
        return escalation_of(row) if row else None

    @retried(idempotent=True)
    def listing(self, *, include_done: bool = False) -> list[Escalation]:
        """Open escalations (or all), the nearest deadline first, those without one last."""
        clause = "" if include_done else " WHERE done_at IS NULL"
        rows = self._all(f"SELECT * FROM escalations{clause} ORDER BY due_at IS NULL, due_at, id")
        return [escalation_of(r) for r in rows]

    @retried(idempotent=True)
    def of_event(self, event_key: str) -> list[Escalation]:
        rows = self._all("SELECT * FROM escalations WHERE event_key = %s ORDER BY id", (event_key,))
        return [escalation_of(r) for r in rows]

    @retried(idempotent=True)
    def mark_stage(self, event_key: str, stage: Stage, note: str = "") -> None:
        with self._db.connection() as conn:
            conn.execute(
                "INSERT INTO escalation_events (event_key, stage, at, note)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (event_key, stage) DO NOTHING",
                (event_key, stage, self._clock(), note),
            )

    @retried(idempotent=True)
    def stage_done(self, stage: Stage) -> set[str]:
        """The keys of every event that passed `stage`."""
        rows = self._all("SELECT event_key FROM escalation_events WHERE stage = %s", (stage,))
        return {r["event_key"] for r in rows}

    @retried(idempotent=True)
    def stage_notes(self, stage: Stage) -> dict[str, str]:
        """Event key → the note `stage` kept for it, for every event that passed `stage`."""
        rows = self._all("SELECT event_key, note FROM escalation_events WHERE stage = %s", (stage,))
        return {r["event_key"]: r["note"] for r in rows}

    @retried(idempotent=False)
    def erase_person(self, people: Iterable[str]) -> int:
        """Delete every escalation about these identifiers (an erasure request); count them.
        The table is rewritten when any went, so the deleted text leaves its files."""
        with self._db.connection() as conn:
            n = conn.execute(
                "DELETE FROM escalations WHERE person = ANY(%s)", (sorted(set(people)),)
            ).rowcount
        if n:
            self._db.vacuum_full("escalations")
        return int(n)
