"""Escalations kept once: what the playbook said a human must do about an event, and whether
it was done.

The rows live next to the events (`events.sqlite` in the data directory), in tables this module
owns; with `GTM_DATABASE_URL` they live in Postgres (`tools.pg_escalations`), under the same
rules: the key and the row's reading (`escalation_key`, `escalation_of`) are shared from here.
An escalation's key is the event's key, the playbook signal that raised it and its action, so
acting on one event twice stores one escalation; `acted_at` says its side effects (an alert, a
CRM task, a suppression) were carried out, so a crash between deciding and acting is
finished by the next pass instead of forgotten. A second table remembers which events were
already looked at, by which stage: `rules` (the deterministic opt-out and bounce handling, no
model) and `escalated` (classified and acted on).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from tools.sqlite import connect, erase_rows

__all__ = ["Escalation", "EscalationStore", "Stage", "escalation_key", "escalation_of"]

Stage = Literal["rules", "escalated"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS escalations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    event_key TEXT NOT NULL,
    signal TEXT NOT NULL,
    action TEXT NOT NULL,
    person TEXT NOT NULL,
    contact TEXT NOT NULL,
    company TEXT NOT NULL,
    owner TEXT NOT NULL,
    evidence TEXT NOT NULL,
    due_at TEXT,
    created_at TEXT NOT NULL,
    acted_at TEXT,
    outcome TEXT NOT NULL DEFAULT '',
    done_at TEXT,
    done_by TEXT
);
CREATE INDEX IF NOT EXISTS escalations_open ON escalations(done_at, due_at);
CREATE TABLE IF NOT EXISTS escalation_events (
    event_key TEXT NOT NULL,
    stage TEXT NOT NULL,
    at TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (event_key, stage)
);
"""


def _dt(value: str | datetime | None) -> datetime | None:
    """A time as either backend gives it: ISO text (SQLite) or a datetime (Postgres)."""
    if value is None or value == "":
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def escalation_key(event_key: str, signal: str, action: str) -> str:
    """What makes an escalation one: its event, the signal that raised it and the action."""
    return f"{event_key}\x1f{signal}\x1f{action}"


@dataclass(frozen=True)
class Escalation:
    """One thing a human must do (or was told about) because of an event."""

    id: int
    key: str
    event_key: str
    signal: str
    """The playbook signal: senior_reply, tier1_interest, meeting_request, ..., opt_out."""
    action: str
    """The playbook action: alert_owner_now, notify_owner, create_task, record, ..."""
    person: str
    """The person's identifier (email or profile URL) as the event store keeps it."""
    contact: str
    """Their name (and title) when known, for people to read."""
    company: str
    owner: str
    evidence: str
    """Why: the quoted words of the reply, or the kind of event."""
    due_at: datetime | None
    created_at: datetime
    acted_at: datetime | None
    """When its side effects were carried out; None while they still have to be."""
    outcome: str
    """What acting did (task id, CRM write-back result, what failed)."""
    done_at: datetime | None
    done_by: str | None

    @property
    def done(self) -> bool:
        return self.done_at is not None

    def time_left(self, now: datetime) -> timedelta | None:
        """Until the deadline (negative once overdue); None when it has none."""
        return None if self.due_at is None else self.due_at - now


def escalation_of(r: Mapping[str, Any]) -> Escalation:
    """An `escalations` row of either backend, by column name."""
    created = _dt(r["created_at"])
    assert created is not None, "created_at is NOT NULL"
    return Escalation(
        id=int(r["id"]),
        key=r["key"],
        event_key=r["event_key"],
        signal=r["signal"],
        action=r["action"],
        person=r["person"],
        contact=r["contact"],
        company=r["company"],
        owner=r["owner"],
        evidence=r["evidence"],
        due_at=_dt(r["due_at"]),
        created_at=created,
        acted_at=_dt(r["acted_at"]),
        outcome=r["outcome"],
        done_at=_dt(r["done_at"]),
        done_by=r["done_by"],
    )


class EscalationStore:
    """Escalations on SQLite, one row per (event, signal, action). Safe for several processes on one
    file: the key is unique, so two processes raising one escalation store it once."""

    def __init__(
        self, path: Path | str, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._clock = clock
        self._db = connect(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EscalationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> str:
        return self._clock().astimezone(UTC).isoformat()

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
        returns the stored row and whether it is new (a repeat changes nothing)."""
        key = escalation_key(event_key, signal, action)
        cur = self._db.execute(
            "INSERT OR IGNORE INTO escalations (key, event_key, signal, action, person, contact,"
            " company, owner, evidence, due_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                key,
                event_key,
                signal,
                action,
                person,
                contact,
                company,
                owner,
                evidence,
                due_at.astimezone(UTC).isoformat() if due_at else None,
                self._now(),
            ),
        )
        row = self._db.execute("SELECT * FROM escalations WHERE key = ?", (key,)).fetchone()
        return self._row(row), cur.rowcount == 1

    def acted(self, esc_id: int, outcome: str, *, done_by: str | None = None) -> None:
        """Record that the side effects ran, with what they did; `done_by` also closes it
        (nothing is left for a human, e.g. a rule-decided opt-out fully written back)."""
        now = self._now()
        self._db.execute(
            "UPDATE escalations SET acted_at = ?, outcome = ?,"
            " done_at = CASE WHEN ? IS NULL THEN done_at ELSE COALESCE(done_at, ?) END,"
            " done_by = COALESCE(done_by, ?) WHERE id = ?",
            (now, outcome, done_by, now, done_by, esc_id),
        )

    def mark_done(self, esc_id: int, by: str) -> Escalation | None:
        """A human handled it. Marking it again keeps the first time and person."""
        self._db.execute(
            "UPDATE escalations SET done_at = COALESCE(done_at, ?), done_by = COALESCE(done_by, ?)"
            " WHERE id = ?",
            (self._now(), by, esc_id),
        )
        return self.get(esc_id)

    def get(self, esc_id: int) -> Escalation | None:
        r = self._db.execute("SELECT * FROM escalations WHERE id = ?", (esc_id,)).fetchone()
        return self._row(r) if r else None

    def listing(self, *, include_done: bool = False) -> list[Escalation]:
        """Open escalations (or all), the nearest deadline first, those without one last."""
        clause = "" if include_done else " WHERE done_at IS NULL"
        rows = self._db.execute(
            f"SELECT * FROM escalations{clause} ORDER BY due_at IS NULL, due_at, id"
        ).fetchall()
        return [self._row(r) for r in rows]

    def of_event(self, event_key: str) -> list[Escalation]:
        rows = self._db.execute(
            "SELECT * FROM escalations WHERE event_key = ? ORDER BY id", (event_key,)
        ).fetchall()
        return [self._row(r) for r in rows]

    def mark_stage(self, event_key: str, stage: Stage, note: str = "") -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO escalation_events (event_key, stage, at, note)"
            " VALUES (?, ?, ?, ?)",
            (event_key, stage, self._now(), note),
        )

    def stage_done(self, stage: Stage) -> set[str]:
        """The keys of every event that passed `stage`."""
        rows = self._db.execute(
            "SELECT event_key FROM escalation_events WHERE stage = ?", (stage,)
        ).fetchall()
        return {r[0] for r in rows}

    def stage_notes(self, stage: Stage) -> dict[str, str]:
        """Event key → the note `stage` kept for it (for `escalated`: the reply's signals,
        comma-joined), for every event that passed `stage`. One query, for the funnel."""
        rows = self._db.execute(
            "SELECT event_key, note FROM escalation_events WHERE stage = ?", (stage,)
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def erase_person(self, people: Iterable[str]) -> int:
        """Delete every escalation about these identifiers (an erasure request); count them."""
        return erase_rows(self._db, "escalations", "person", people)

    @staticmethod
    def _row(r: sqlite3.Row) -> Escalation:
        return escalation_of({k: r[k] for k in r.keys()})
