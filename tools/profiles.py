"""What the user's own tools saw on a person's LinkedIn profile (`profiles.sqlite`).

Dux-Soup visits profiles for the user and posts what it saw to our webhook
(`gtm.web.webhooks`); nothing here, or anywhere in the product, fetches LinkedIn. A snapshot is
one such sighting: the person's canonical profile URL (`gtm.domain.identity.profile_url`),
when it was seen, by which source, and the few text fields research may use (`FIELDS`), each
whitespace-collapsed and capped at `MAX_CHARS`. Text is stored as text, hostile or not: research
quarantines instructions aimed at the writer, as it does for every source.

Kept per person is the newest value of each field, with the time and source of the sighting
that gave it. Field by field, because Dux-Soup's *create* stage of a visit carries most of the
profile and its *update* stage the rest (its "Webhook by Example" article asks receivers to take
both): a later sighting without a field leaves the one seen before, still dated when it was
seen. A snapshot is idempotent: delivered again, or after a newer one, it changes nothing; of
two sightings at the same instant the first stored stays. `erase_person` deletes a person's
rows and compacts the file (an erasure request leaves no bytes behind).

These rules live here once, for both backends: the snapshot's cleaning, caps and canonical URL
(`ProfileSnapshot`), the one upsert that keeps the newest value per field and the first of a tie
(`record_statement`, `field_rows`), how stored rows read back (`seen_profile`) and which keys an
erasure deletes (`erasure_keys`). `tools.pg_profiles.PgProfileStore` is the Postgres version.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

from gtm.domain.identity import profile_url
from gtm.domain.models import Fact
from tools.sqlite import connect, erase_rows

__all__ = [
    "FIELDS",
    "MAX_CHARS",
    "FACT_CHARS",
    "FieldRow",
    "ProfileField",
    "ProfileSnapshot",
    "ProfileStore",
    "SeenProfile",
    "Seen",
    "clean",
    "erasure_keys",
    "field_rows",
    "is_stale",
    "record_statement",
    "seen_profile",
    "visit_facts",
]

ProfileField = Literal["title", "company", "summary", "location", "industry"]
FIELDS: tuple[ProfileField, ...] = ("title", "company", "summary", "location", "industry")
"""The profile fields kept: short public text a message may refer to. Never contact details
(email, phone), pictures or the user's own tags."""
MAX_CHARS = 1000
"""A stored value's cap: a LinkedIn summary is longer than any fact needs."""
FACT_CHARS = 300
"""A value's cap inside a fact, as for the profile columns of a list."""

_SPACE = re.compile(r"\s+")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profile_fields (
    person TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    stored_at TEXT NOT NULL,
    PRIMARY KEY (person, field)
);
"""

_RECORD = (
    "INSERT INTO profile_fields (person, field, value, seen_at, source, key, stored_at)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})"
    " ON CONFLICT (person, field) DO UPDATE SET value = excluded.value,"
    " seen_at = excluded.seen_at, source = excluded.source,"
    " key = excluded.key, stored_at = excluded.stored_at"
    " WHERE excluded.seen_at > profile_fields.seen_at"
)


def record_statement(placeholder: str) -> str:
    """The statement that stores one field of a sighting, with the driver's `placeholder`
    (`?` or `%s`) for person, field, value, seen_at, source, key and stored_at: the newer
    sighting replaces the value, an older one or one of the same instant changes nothing
    (the first stored stays). One row changed (rowcount 1) or none."""
    return _RECORD.format(p=placeholder)


def clean(value: str, cap: int = MAX_CHARS) -> str:
    """`value` on one line (every run of whitespace one space), cut to `cap` characters at a
    word boundary where there is one, marked with `…` when cut."""
    text = _SPACE.sub(" ", value).strip()
    if len(text) <= cap:
        return text
    cut = text[: cap - 2]
    head = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return head.rstrip() + " …"


def _stamp(at: datetime) -> str:
    """A fixed-width UTC time, so stored times order as text."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ProfileSnapshot:
    """One sighting of a profile. `key` is the source's idempotency key (Dux-Soup: user, stage,
    record id and time); `person` must be a LinkedIn member profile URL (any spelling: it is
    kept canonical); `seen_at` must carry a time zone. Fields outside `FIELDS`, empty ones and
    non-text ones are dropped; the rest are cleaned (`clean`)."""

    key: str
    person: str
    seen_at: datetime
    source: str
    """Who saw it, e.g. `duxsoup:visit`; a fact names it with the date."""
    fields: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        url = profile_url(self.person)
        if url is None:
            raise ValueError("person: not a LinkedIn member profile URL")
        if self.seen_at.utcoffset() is None:
            raise ValueError("seen_at: give a time zone")
        if not self.key or not self.source:
            raise ValueError("key and source must not be empty")
        kept = {
            f: text
            for f in FIELDS
            if isinstance(v := self.fields.get(f), str) and (text := clean(v))
        }
        object.__setattr__(self, "person", url)
        object.__setattr__(self, "fields", kept)


@dataclass(frozen=True)
class Seen:
    """A field's newest value, with when and by what it was seen."""

    value: str
    seen_at: datetime
    source: str


@dataclass(frozen=True)
class SeenProfile:
    """What is known of one person's profile: each field as last seen."""

    person: str
    fields: Mapping[str, Seen]


FieldRow = tuple[str, str, str, datetime, str, str]
"""One field of a sighting as stored: person, field, value, seen_at, source, key."""


def field_rows(snap: ProfileSnapshot) -> list[FieldRow]:
    """The rows `record_statement` stores for `snap`, in `FIELDS` order."""
    return [
        (snap.person, name, value, snap.seen_at, snap.source, snap.key)
        for name, value in snap.fields.items()
    ]


def seen_profile(person: str, rows: Iterable[tuple[str, str, datetime, str]]) -> SeenProfile | None:
    """What is known of `person` from their stored (field, value, seen_at, source) rows, the
    fields in `FIELDS` order; None when there are none."""
    seen = {name: Seen(value, at, source) for name, value, at, source in rows}
    if not seen:
        return None
    return SeenProfile(person, {f: seen[f] for f in FIELDS if f in seen})


def erasure_keys(urls: Iterable[str]) -> list[str]:
    """The person keys an erasure of `urls` deletes: each URL's canonical form, or the text
    itself (trimmed, lower case) when it is no member profile URL; sorted, once each."""
    return sorted({profile_url(u) or u.strip().lower() for u in urls})


_UPSERT = record_statement("?")


class ProfileStore:
    """Profile sightings on SQLite, the newest value of each field per person. Safe for several
    processes on one file: a write is one statement per field, and the newer sighting wins
    whichever process stores it first."""

    def __init__(
        self, path: Path | str, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._clock = clock
        self._db = connect(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def record(self, snapshots: Iterable[ProfileSnapshot]) -> int:
        """Store `snapshots`; how many changed what is known (a redelivered or older sighting,
        or one with no field we keep, changes nothing)."""
        changed = 0
        now = _stamp(self._clock())
        for snap in snapshots:
            n = 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for person, name, value, seen, source, key in field_rows(snap):
                    cur = self._db.execute(
                        _UPSERT, (person, name, value, _stamp(seen), source, key, now)
                    )
                    n += cur.rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            changed += 1 if n else 0
        return changed

    def get(self, url: str) -> SeenProfile | None:
        """What is known of the person at `url` (any spelling), or None."""
        person = profile_url(url)
        if person is None:
            return None
        rows = self._db.execute(
            "SELECT field, value, seen_at, source FROM profile_fields WHERE person = ?",
            (person,),
        ).fetchall()
        return seen_profile(
            person,
            (
                (r["field"], r["value"], datetime.fromisoformat(r["seen_at"]), r["source"])
                for r in rows
            ),
        )

    def erase_person(self, urls: Sequence[str]) -> int:
        """Delete every field stored for the people at `urls` (an erasure request) and compact
        the file; how many fields went."""
        return erase_rows(self._db, "profile_fields", "person", erasure_keys(urls))


_WORDING: Mapping[str, str] = {
    "title": "{name}'s current title on LinkedIn ({when}): {value}",
    "company": "{name}'s current company on LinkedIn ({when}): {value}",
    "summary": "{name}'s LinkedIn summary ({when}): {value}",
    "location": "{name}'s LinkedIn location ({when}): {value}",
    "industry": "{name}'s industry on LinkedIn ({when}): {value}",
}
_SEEN_BY = {"duxsoup": "Dux-Soup"}


def is_stale(day: date, today: date, max_age_days: int | None) -> bool:
    """Whether something dated `day` is older than the freshness limit on `today`: more than
    `max_age_days` days before it (exactly that many is still fresh); None is no limit. The
    rule website facts follow (`agents.web_facts`), with the playbook's
    `research.max_fact_age_days`."""
    return max_age_days is not None and (today - day).days > max_age_days


def visit_facts(
    profile: SeenProfile,
    name: str,
    *,
    today: date | None = None,
    max_age_days: int | None = None,
) -> tuple[Fact, ...]:
    """Facts about one contact from what was seen on their profile, e.g. "Dana Ruiz's LinkedIn
    summary (seen by Dux-Soup on 2026-10-02): …", kind `person`, source
    `duxsoup:visit@2026-10-02`, with the profile URL as the link to check it. Pure: research
    calls it on every pass, so a follow-up sees the newest sighting.

    Each fact is dated (`published`) with the day its field was seen, the day it is known true
    as of; given `today`, one seen longer ago than `max_age_days` (`is_stale`) is marked stale,
    as a website fact from an old page is: a title seen a year ago may be someone else's now,
    and the writer is told not to present it as news."""
    who = name.strip() or "The contact"
    out = []
    for i, (fld, seen) in enumerate(profile.fields.items(), 1):
        seen_on = seen.seen_at.astimezone(UTC).date()
        day = seen_on.isoformat()
        tool = _SEEN_BY.get(seen.source.split(":", 1)[0], seen.source.split(":", 1)[0])
        text = _WORDING[fld].format(
            name=who, when=f"seen by {tool} on {day}", value=clean(seen.value, FACT_CHARS)
        )
        out.append(
            Fact(
                id=f"v{i}",
                text=text,
                source=f"{seen.source}@{day}",
                kind="person",
                url=profile.person,
                published=seen_on,
                stale=today is not None and is_stale(seen_on, today, max_age_days),
            )
        )
    return tuple(out)
