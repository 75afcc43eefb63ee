"""Do-not-contact list: emails, domains, LinkedIn profiles. Checked at intake and before send.

An entry is forever. A person who opts out on one channel is entered under every identifier we
know for them (email, profile, person key), so no channel reaches them again. A person erased
on request (`gtm forget`) stays suppressed under a one-way hash, so the list itself no longer
holds who they were.

Every identifier is stored and probed in one canonical form, so a person listed under one
spelling is recognised under every other: an email as email-validator normalises it, in lower
case; a domain bare (no scheme, path or `www.`); a profile URL as `gtm.domain.identity.profile_url`
gives it. Values stored by earlier versions (lower-cased, `https://www.linkedin.com/in/slug`)
already are in that form.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Generic, Literal, TypeVar
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from gtm.domain.identity import PROFILE_URL_EXAMPLE, profile_url
from gtm.domain.models import Account, Contact
from tools.sqlite import compact, connect

__all__ = [
    "SuppressionList",
    "SuppressionStore",
    "SuppressionKind",
    "SuppressionError",
    "normalise",
    "canonical",
    "email_address",
    "domain_name",
    "fingerprint",
    "why_invalid",
    "ImportReport",
]

SuppressionKind = Literal["email", "domain", "linkedin", "person_key", "erased"]
_COLUMNS: dict[str, SuppressionKind] = {
    "email": "email",
    "domain": "domain",
    "linkedin_url": "linkedin",
    "linkedin": "linkedin",
}
_C = TypeVar("_C")
_SCHEMA_VERSION = 1
"""1: entries stored in a non-canonical spelling also carry their canonical one."""


class SuppressionError(ValueError):
    """A value is not what its kind says: not an email address, a domain or a profile URL."""


def email_address(value: str) -> str | None:
    """The address as email-validator normalises it, lower-cased; None when it is not one."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def domain_name(value: str) -> str | None:
    """The bare domain of `value` (`https://www.Acme.ai/pricing` → `acme.ai`); None for junk,
    an email address, or a host with no public suffix shape (`acme`, `localhost`)."""
    v = value.strip().lower()
    if not v or "@" in v or any(c.isspace() for c in v):
        return None
    try:
        host = urlsplit(v if "://" in v else f"https://{v}").hostname or ""
    except ValueError:
        return None
    host = host.rstrip(".").removeprefix("www.")
    try:  # email-validator holds the domain rules (labels, IDNA, reserved names)
        return validate_email(f"x@{host}", check_deliverability=False).domain.lower()
    except EmailNotValidError:
        return None


@lru_cache(maxsize=4096)
def canonical(kind: SuppressionKind, value: str) -> str | None:
    """The one stored form of `value` as a `kind`, or None when it is not a valid one. Kept
    for the last few thousand values: a contact's address is checked at intake, at send and
    for its hashed (erased) form, and email-validator's parse is most of what a check costs."""
    if kind == "email":
        return email_address(value)
    if kind == "domain":
        return domain_name(value)
    if kind == "linkedin":
        return profile_url(value)
    if kind == "person_key":  # a contact's key: its email, else its profile URL, else its name
        v = value.strip().lower()
        return (email_address(v) if "@" in v else profile_url(v)) or v or None
    return value.strip().lower() or None  # "erased": a fingerprint


def normalise(kind: SuppressionKind, value: str) -> str:
    """The form a value is probed under: canonical when valid, else trimmed and lower-cased (a
    malformed address in a CRM record must still meet the same malformed entry)."""
    return canonical(kind, value) or value.strip().lower()


def fingerprint(kind: SuppressionKind, value: str) -> str:
    """The one-way form an erased person's identifier is kept under."""
    return hashlib.sha256(f"{kind}:{normalise(kind, value)}".encode()).hexdigest()


def why_invalid(kind: SuppressionKind, value: str) -> str | None:
    """Why `value` cannot be entered as a `kind`, or None when it can."""
    if canonical(kind, value) is not None:
        return None
    if kind == "email":
        return f"{value!r} is not an email address"
    if kind == "domain":
        if "@" in value:
            return f"{value!r} is an email address, not a domain"
        return f"{value!r} is not a domain like 'example.com'"
    if kind == "linkedin":
        return f"{value!r} is not a LinkedIn profile URL like '{PROFILE_URL_EXAMPLE}'"
    return f"{value!r} is empty"


@dataclass
class ImportReport:
    added: int
    errors: list[str]


class SuppressionStore(ABC, Generic[_C]):
    """The list's rules (what is entered under which form, what a probe asks), once for every
    backend. A backend gives the queries: `_writing` (one unit of writes, yielding the handle
    `_put` and `_delete` take), `_count`, `_reasons`, and the reads and erasure records."""

    _clock: Callable[[], datetime]

    @abstractmethod
    def _writing(self) -> AbstractContextManager[_C]:
        """The handle the writes of one method go through (SQLite: its autocommit connection,
        each statement its own transaction; Postgres: one transaction for them all)."""

    @abstractmethod
    def _put(self, c: _C, kind: SuppressionKind, form: str, reason: str) -> None:
        """Enter `form` as a `kind`, stamped now, unless it is already there."""

    @abstractmethod
    def _delete(self, c: _C, kind: SuppressionKind, form: str) -> int:
        """Remove the plain entry `form`; how many rows went."""

    @abstractmethod
    def _count(self, kind: SuppressionKind, form: str) -> int:
        """How many entries are `form` as a `kind` (0 or 1)."""

    @abstractmethod
    def _reasons(self, probes: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The reason of each (kind, form) among `probes` that is on the list."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def entries(self) -> list[tuple[str, str, str]]:
        """(kind, value, reason) of every entry, oldest first."""

    @abstractmethod
    def record_erasure(self, fingerprint: str, requested_by: str, erased: dict[str, int]) -> None:
        """Keep proof that an erasure happened, without keeping who it was; then compact the
        store so the plain entries `erase` removed leave no bytes in its files."""

    @abstractmethod
    def erasures(self) -> list[tuple[str, str, str, str]]:
        """(at, fingerprint, requested_by, erased) of every erasure record, in order."""

    def add(self, kind: SuppressionKind, value: str, reason: str) -> None:
        """Enter one identifier; raises `SuppressionError` when it is not a valid `kind`."""
        problem = why_invalid(kind, value)
        if problem:
            raise SuppressionError(problem)
        with self._writing() as c:
            self._put(c, kind, normalise(kind, value), reason)

    def add_person(
        self, *, email: str | None, linkedin_url: str | None, person_key: str | None, reason: str
    ) -> int:
        """Suppress one person under every identifier given (an opt-out covers all channels).

        These come from the person's own records (a CRM, an account list), so a malformed one
        is still entered, in the form it is probed under: refusing it would let them through."""
        given: list[tuple[SuppressionKind, str | None]] = [
            ("email", email),
            ("linkedin", linkedin_url),
            ("person_key", person_key),
        ]
        n = 0
        with self._writing() as c:
            for kind, value in given:
                if value and value.strip():
                    self._put(c, kind, normalise(kind, value), reason)
                    n += 1
        return n

    def erase(self, identifiers: list[tuple[SuppressionKind, str]], reason: str) -> int:
        """Replace a person's plain entries by hashed ones: still suppressed, no longer named.
        Returns how many plain entries it replaced."""
        n = 0
        with self._writing() as c:
            for kind, value in identifiers:
                n += self._delete(c, kind, normalise(kind, value))
                self._put(c, "erased", fingerprint(kind, value), reason)
        return n

    def named(self, identifiers: list[tuple[SuppressionKind, str]]) -> tuple[int, bool]:
        """How many plain entries name these identifiers, and whether one of them is already
        kept as an erased person's hash."""
        plain = sum(self._count(kind, normalise(kind, value)) for kind, value in identifiers)
        hashed = any(self._count("erased", fingerprint(k, v)) for k, v in identifiers)
        return plain, hashed

    def import_csv(self, path: Path, *, default_reason: str) -> ImportReport:
        """Add every row of a do-not-contact CSV (columns: email, domain, linkedin_url, reason;
        any subset). A bad row is reported with file, row and field; the good rows still land."""
        errors: list[str] = []
        added = 0
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            return ImportReport(0, [f"{path}: cannot read the file ({exc})"])
        reader = csv.DictReader(text.splitlines())
        header = [h.strip().lower() for h in reader.fieldnames or []]
        if not any(h in _COLUMNS for h in header):
            return ImportReport(
                0, [f"{path}: row 1: header: needs a column email, domain or linkedin_url"]
            )
        for line, raw in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            reason = row.get("reason") or default_reason
            found = False
            for column, kind in _COLUMNS.items():
                value = row.get(column, "")
                if not value:
                    continue
                problem = why_invalid(kind, value)
                if problem:
                    errors.append(f"{path}: row {line}: {column}: {problem}")
                    continue
                self.add(kind, value, reason)
                added += 1
                found = True
            if not found and not any(e.startswith(f"{path}: row {line}:") for e in errors):
                errors.append(f"{path}: row {line}: email/domain/linkedin_url: all empty")
        return ImportReport(added, errors)

    def is_erased(self, contact: Contact) -> bool:
        """Whether this person was erased on request (`gtm forget`): their data must not be
        stored again, not even in a thread that would skip them."""
        probes: list[tuple[SuppressionKind, str | None]] = [
            ("email", contact.email),
            ("linkedin", contact.linkedin_url),
            ("person_key", contact.key),
        ]
        return any(self._count("erased", fingerprint(k, v)) for k, v in probes if v)

    def check(self, contact: Contact, account: Account) -> str | None:
        """Why this contact must not be contacted, or None."""
        return self.check_identifiers(
            domain=account.domain,
            person_key=contact.key,
            email=contact.email,
            linkedin_url=contact.linkedin_url,
        )

    def check_identifiers(
        self,
        *,
        domain: str | None = None,
        person_key: str | None = None,
        email: str | None = None,
        linkedin_url: str | None = None,
    ) -> str | None:
        """Why these identifiers must not be contacted, or None: every probe in its plain and
        its hashed (erased) form, the first hit in this order reported."""
        probes: list[tuple[SuppressionKind, str]] = []
        if domain:
            probes.append(("domain", domain))
        if person_key:
            probes.append(("person_key", person_key))
        if email:
            probes += [("email", email), ("domain", normalise("email", email).rsplit("@", 1)[-1])]
        if linkedin_url:
            probes.append(("linkedin", linkedin_url))
        ordered: list[tuple[str, str, str]] = []
        for kind, value in probes:
            ordered.append((kind, kind, normalise(kind, value)))
            ordered.append((kind, "erased", fingerprint(kind, value)))
        if not ordered:
            return None
        found = self._reasons([(k, v) for _, k, v in ordered])
        for asked, probe_kind, probe in ordered:
            if (probe_kind, probe) in found:
                shown = probe if probe_kind != "erased" else "(erased person)"
                return f"{asked} {shown} is on the do-not-contact list: {found[probe_kind, probe]}"
        return None


class SuppressionList(SuppressionStore[sqlite3.Connection]):
    """The list in one SQLite file; `clock` stamps entries and erasure records."""

    def __init__(
        self, path: Path, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._clock = clock
        self._db = connect(
            path,
            "CREATE TABLE IF NOT EXISTS suppressions (kind TEXT NOT NULL, value TEXT NOT NULL,"
            " reason TEXT NOT NULL, added_at TEXT NOT NULL, PRIMARY KEY (kind, value));"
            "CREATE TABLE IF NOT EXISTS erasures (n INTEGER PRIMARY KEY AUTOINCREMENT,"
            " at TEXT NOT NULL, fingerprint TEXT NOT NULL, requested_by TEXT NOT NULL,"
            " erased TEXT NOT NULL);",
        )
        self._upgrade()

    def _upgrade(self) -> None:
        """Give entries that earlier versions stored in another spelling (`de.linkedin.com/…`,
        no scheme) their canonical form too, so the people they name stay suppressed."""
        if self._db.execute("PRAGMA user_version").fetchone()[0] >= _SCHEMA_VERSION:
            return
        rows = self._db.execute(
            "SELECT kind, value, reason, added_at FROM suppressions WHERE kind != 'erased'"
        ).fetchall()
        for r in rows:
            form = canonical(r["kind"], r["value"])
            if form is not None and form != r["value"]:
                self._db.execute(
                    "INSERT OR IGNORE INTO suppressions VALUES (?, ?, ?, ?)",
                    (r["kind"], form, r["reason"], r["added_at"]),
                )
        self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        yield self._db  # autocommit: each statement is its own transaction

    def _put(self, c: sqlite3.Connection, kind: SuppressionKind, form: str, reason: str) -> None:
        c.execute(
            "INSERT OR IGNORE INTO suppressions VALUES (?, ?, ?, ?)",
            (kind, form, reason, self._clock().isoformat()),
        )

    def _delete(self, c: sqlite3.Connection, kind: SuppressionKind, form: str) -> int:
        return c.execute(
            "DELETE FROM suppressions WHERE kind = ? AND value = ?", (kind, form)
        ).rowcount

    def _count(self, kind: SuppressionKind, form: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM suppressions WHERE kind = ? AND value = ?", (kind, form)
        ).fetchone()
        return int(row[0])

    def _reasons(self, probes: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        for kind, form in probes:
            row = self._db.execute(
                "SELECT reason FROM suppressions WHERE kind = ? AND value = ?", (kind, form)
            ).fetchone()
            if row:
                found[kind, form] = row[0]
        return found

    def entries(self) -> list[tuple[str, str, str]]:
        return [
            (k, v, r)
            for k, v, r in self._db.execute(
                "SELECT kind, value, reason FROM suppressions ORDER BY added_at"
            )
        ]

    def record_erasure(self, fingerprint: str, requested_by: str, erased: dict[str, int]) -> None:
        self._db.execute(
            "INSERT INTO erasures (at, fingerprint, requested_by, erased) VALUES (?, ?, ?, ?)",
            (self._clock().isoformat(), fingerprint, requested_by, json.dumps(erased)),
        )
        compact(self._db)

    def erasures(self) -> list[tuple[str, str, str, str]]:
        return [
            (r["at"], r["fingerprint"], r["requested_by"], r["erased"])
            for r in self._db.execute("SELECT * FROM erasures ORDER BY n")
        ]
