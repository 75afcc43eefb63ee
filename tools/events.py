"""What came back, kept once: the event store (`events.sqlite` in the data directory).

Every event is stored under its source's idempotency key (a webhook event's id and time, an
email's Message-ID, the hash of a hand-added event), so ingesting it again changes nothing. Each
row carries the person in one canonical form (an email address as `tools.suppression` keeps it,
a profile URL as `gtm.domain.identity.profile_url` gives it) and the outbox key of the sent touch
it answers; NULL there means unmatched, and unmatched events are listed for a person to look at,
never attached to a touch by guesswork.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from gtm.domain.events import Event, EventKind
from gtm.domain.identity import profile_url
from tools.sqlite import connect, erase_rows, where
from tools.suppression import normalise

__all__ = ["EventBrief", "EventStore", "StoredEvent", "domain_patterns", "person_of"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    person TEXT,
    at TEXT NOT NULL,
    outbox_key TEXT,
    body TEXT NOT NULL,
    ingested_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_person ON events(person, at);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, at);
CREATE INDEX IF NOT EXISTS events_outbox ON events(outbox_key);
"""


def person_of(event: Event) -> str | None:
    """The person an event names, in the canonical form of its channel's identifier: the
    profile URL for LinkedIn, the address for email (falling back to the other if only that one
    is given). None when it names nobody recognisable."""
    url = profile_url(event.linkedin_url) if event.linkedin_url else None
    email = normalise("email", event.email) if event.email else None
    if event.channel == "linkedin":
        return url or email
    return email or url


def domain_patterns(domain: str) -> tuple[str, str]:
    """The two LIKE patterns (escape character a backslash) of a person kept as an address at
    `domain` or at a subdomain of it: `%@acme.ai` and `%@%.acme.ai`, wildcards in the domain
    escaped. Persons are kept lower-cased (`person_of`), so the domain is lower-cased too."""
    d = domain.strip().lower()
    for ch in ("\\", "%", "_"):
        d = d.replace(ch, "\\" + ch)
    return f"%@{d}", f"%@%.{d}"


class StoredEvent:
    """An event as kept: the event itself, who it is about and what it was matched to."""

    __slots__ = ("event", "person", "outbox_key", "ingested_at")

    def __init__(
        self, event: Event, person: str | None, outbox_key: str | None, ingested_at: datetime
    ) -> None:
        self.event = event
        self.person = person
        self.outbox_key = outbox_key
        """The sent touch this event answers; None while unmatched."""
        self.ingested_at = ingested_at

    def __repr__(self) -> str:
        return f"StoredEvent({self.event.key!r}, {self.event.kind}, outbox_key={self.outbox_key!r})"


class EventBrief(NamedTuple):
    """An event without its text or person: what counting needs (the funnel)."""

    key: str
    kind: EventKind
    channel: str
    at: datetime
    outbox_key: str | None


class EventStore:
    """Events on SQLite, one row per idempotency key. Safe for several processes on one file:
    the key is the primary key, so two processes ingesting one event store it once."""

    def __init__(
        self, path: Path | str, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._clock = clock
        self._db = connect(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def ingest(self, event: Event, *, outbox_key: str | None = None) -> bool:
        """Store `event`, matched to `outbox_key` (None = unmatched). False when its key was
        already stored: then nothing changes, not even the match."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO events (key, source, kind, channel, person, at, outbox_key,"
            " body, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.key,
                event.source,
                event.kind,
                event.channel,
                person_of(event),
                event.at.astimezone(UTC).isoformat(),
                outbox_key,
                event.model_dump_json(),
                self._clock().isoformat(),
            ),
        )
        return cur.rowcount == 1

    def seen(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM events WHERE key = ?", (key,)).fetchone() is not None

    def empty(self) -> bool:
        """No event was ever taken in (one indexed look-up, nothing read)."""
        return self._db.execute("SELECT 1 FROM events LIMIT 1").fetchone() is None

    def get(self, key: str) -> StoredEvent | None:
        r = self._db.execute("SELECT * FROM events WHERE key = ?", (key,)).fetchone()
        return self._stored(r) if r else None

    def events(
        self,
        *,
        person: str | None = None,
        kind: EventKind | None = None,
        outbox_key: str | None = None,
        matched: bool | None = None,
        domain: str | None = None,
        since: datetime | None = None,
    ) -> list[StoredEvent]:
        """Events oldest first, filtered by person (any spelling of an email or profile URL),
        kind, the touch they answer, whether they answer one at all, the mail domain of the
        person (an address at `domain` or a subdomain of it; `domain_patterns`), and the time
        they happened: at or after `since` (timezone-aware), so a caller that wants only the
        recent ones does not read the whole history."""
        probe = _canonical_person(person) if person is not None else None
        clause, args = where(person=probe, kind=kind, outbox_key=outbox_key)
        tests = [clause.removeprefix(" WHERE ")] if clause else []
        if matched is not None:
            tests.append("outbox_key IS NOT NULL" if matched else "outbox_key IS NULL")
        if domain is not None:
            tests.append("(person LIKE ? ESCAPE '\\' OR person LIKE ? ESCAPE '\\')")
            args.extend(domain_patterns(domain))
        if since is not None:
            tests.append("at >= ?")
            args.append(_at_text(since))
        clause = " WHERE " + " AND ".join(tests) if tests else ""
        rows = self._db.execute(f"SELECT * FROM events{clause} ORDER BY at, rowid", args)
        return [self._stored(r) for r in rows.fetchall()]

    def keys(self) -> list[str]:
        """Every event's key, oldest first as `events` orders them: one query, nothing
        validated, so a pass can find the few events it has not taken yet cheaply."""
        cur = self._db.cursor()
        cur.row_factory = None
        return [r[0] for r in cur.execute("SELECT key FROM events ORDER BY at, rowid")]

    def briefs(self) -> list[EventBrief]:
        """Every event, in no particular order, without its text: one query and no model
        validation, so the funnel can count 100,000 events in a fraction of a second."""
        cur = self._db.cursor()
        cur.row_factory = None  # plain tuples: named rows cost more than the query here
        rows = cur.execute("SELECT key, kind, channel, at, outbox_key FROM events").fetchall()
        return [EventBrief(r[0], r[1], r[2], datetime.fromisoformat(r[3]), r[4]) for r in rows]

    def unmatched(self) -> list[StoredEvent]:
        """Events no sent touch was found for, oldest first: for a person to look at."""
        return self.events(matched=False)

    def erase_person(self, emails: Sequence[str], urls: Sequence[str]) -> int:
        """Delete every event about the person (an erasure request); count them. The file is
        compacted so the deleted text leaves no bytes behind."""
        people = {normalise("email", e) for e in emails} | {
            profile_url(u) or u.strip().lower() for u in urls
        }
        return erase_rows(self._db, "events", "person", people)

    @staticmethod
    def _stored(r: sqlite3.Row) -> StoredEvent:
        row = dict(r)
        return StoredEvent(
            Event.model_validate_json(row["body"]),
            row["person"],
            row["outbox_key"],
            datetime.fromisoformat(row["ingested_at"]),
        )


def _at_text(at: datetime) -> str:
    """`at` in the one form `ingest` writes the `at` column in: ISO 8601 in UTC, `+00:00`,
    microseconds only when not zero. Text in this form sorts as the instants do (a whole
    second's `+` sorts before the same second's `.`; fractions have six digits), so `ORDER BY
    at` and `at >= ?` compare instants exactly. A naive time names no instant: refused, not
    guessed to be local."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a time without a timezone cannot be compared with events: {at}")
    return at.astimezone(UTC).isoformat()


def _canonical_person(value: str) -> str:
    v = value.strip()
    if "@" in v:
        return normalise("email", v)
    return profile_url(v) or v.lower()
