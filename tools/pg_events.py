"""The event store (`tools.events.EventStore`) on Postgres.

Same methods, same answers: one row per idempotency key (the primary key), so two processes
ingesting one event store it once and the first match stays. The person is kept in the same
canonical form (`tools.events.person_of`); the event itself as the same JSON text.

While the database is briefly away each method is run again whole (`tools.pg.retried`).
`ingest` and `erase_person` are not run again after an ambiguous commit: the second run would
answer "already stored" or a count of 0, so that case is one `DatabaseError` line.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gtm.domain.events import Event, EventKind
from gtm.domain.identity import profile_url
from tools.events import EventBrief, StoredEvent, domain_patterns, person_of
from tools.pg import PgStore, retried
from tools.suppression import normalise

__all__ = ["PgEventStore"]


def _canonical_person(value: str) -> str:
    v = value.strip()
    if "@" in v:
        return normalise("email", v)
    return profile_url(v) or v.lower()


def _stored(row: Sequence[Any]) -> StoredEvent:
    body, person, outbox_key, ingested_at = row
    return StoredEvent(Event.model_validate_json(body), person, outbox_key, ingested_at)


class PgEventStore(PgStore):
    """`tools.events.EventStore` on a Postgres database (`GTM_DATABASE_URL`)."""

    @retried(idempotent=False)
    def ingest(self, event: Event, *, outbox_key: str | None = None) -> bool:
        """Store `event`, matched to `outbox_key` (None = unmatched). False when its key was
        already stored: then nothing changes, not even the match."""
        with self._db.connection() as conn:
            cur = conn.execute(
                "INSERT INTO events (key, source, kind, channel, person, at, outbox_key, body,"
                " ingested_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (key) DO NOTHING",
                (
                    event.key,
                    event.source,
                    event.kind,
                    event.channel,
                    person_of(event),
                    event.at,
                    outbox_key,
                    event.model_dump_json(),
                    self._clock(),
                ),
            )
            return cur.rowcount == 1

    @retried(idempotent=True)
    def seen(self, key: str) -> bool:
        with self._db.connection() as conn:
            return (
                conn.execute("SELECT 1 FROM events WHERE key = %s", (key,)).fetchone() is not None
            )

    @retried(idempotent=True)
    def empty(self) -> bool:
        """No event was ever taken in."""
        with self._db.connection() as conn:
            return conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is None

    @retried(idempotent=True)
    def get(self, key: str) -> StoredEvent | None:
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT body, person, outbox_key, ingested_at FROM events WHERE key = %s", (key,)
            ).fetchone()
        return _stored(row) if row else None

    @retried(idempotent=True)
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
        person (`tools.events.domain_patterns`), and the time they happened: at or after
        `since` (timezone-aware; a naive time is refused, as `tools.events` does)."""
        probe = _canonical_person(person) if person is not None else None
        tests: list[str] = []
        args: list[Any] = []
        for column, value in (("person", probe), ("kind", kind), ("outbox_key", outbox_key)):
            if value is not None:
                tests.append(f"{column} = %s")
                args.append(value)
        if matched is not None:
            tests.append("outbox_key IS NOT NULL" if matched else "outbox_key IS NULL")
        if domain is not None:
            tests.append("(person LIKE %s ESCAPE '\\' OR person LIKE %s ESCAPE '\\')")
            args.extend(domain_patterns(domain))
        if since is not None:
            if since.tzinfo is None or since.utcoffset() is None:
                raise ValueError(
                    f"a time without a timezone cannot be compared with events: {since}"
                )
            tests.append("at >= %s")
            args.append(since)
        clause = " WHERE " + " AND ".join(tests) if tests else ""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT body, person, outbox_key, ingested_at FROM events"
                f"{clause} ORDER BY at, seq",
                args,
            ).fetchall()
        return [_stored(r) for r in rows]

    @retried(idempotent=True)
    def keys(self) -> list[str]:
        """Every event's key, oldest first as `events` orders them (see `EventStore.keys`)."""
        with self._db.connection() as conn:
            rows = conn.execute("SELECT key FROM events ORDER BY at, seq").fetchall()
        return [r[0] for r in rows]

    @retried(idempotent=True)
    def briefs(self) -> list[EventBrief]:
        """Every event, in no particular order, without its text (the funnel's count)."""
        with self._db.connection() as conn:
            rows = conn.execute("SELECT key, kind, channel, at, outbox_key FROM events").fetchall()
        return [EventBrief(*r) for r in rows]

    def unmatched(self) -> list[StoredEvent]:
        """Events no sent touch was found for, oldest first: for a person to look at."""
        return self.events(matched=False)

    @retried(idempotent=False)
    def erase_person(self, emails: Sequence[str], urls: Sequence[str]) -> int:
        """Delete every event about the person (an erasure request); count them. The table is
        rewritten when any went, so the deleted text leaves its files."""
        people = {normalise("email", e) for e in emails} | {
            profile_url(u) or u.strip().lower() for u in urls
        }
        with self._db.connection() as conn:
            n = conn.execute(
                "DELETE FROM events WHERE person = ANY(%s)", (sorted(people),)
            ).rowcount
        if n:
            self._db.vacuum_full("events")
        return int(n)
