"""The do-not-contact list (`tools.suppression.SuppressionList`) on Postgres.

Same methods, same answers, same canonical forms (the functions of `tools.suppression` decide
them; this module only stores). Every entry is one row under its (kind, value) key, so two
processes entering one person store them once. An erasure rewrites the table afterwards, so the
plain values it replaced leave the table's files (the server's WAL keeps them until it rotates).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from gtm.domain.models import Account, Contact
from tools.pg import Database, open_database
from tools.suppression import (
    ImportReport,
    SuppressionError,
    SuppressionKind,
    SuppressionList,
    fingerprint,
    normalise,
    why_invalid,
)

__all__ = ["PgSuppressionList"]

_PUT = (
    "INSERT INTO suppressions (kind, value, reason, added_at) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (kind, value) DO NOTHING"
)


class PgSuppressionList:
    """`tools.suppression.SuppressionList` on a Postgres database (`GTM_DATABASE_URL`)."""

    def __init__(
        self, db: Database | str, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._clock = clock
        self._db, self._owned = open_database(db)

    def close(self) -> None:
        if self._owned:
            self._db.close()

    def add(self, kind: SuppressionKind, value: str, reason: str) -> None:
        """Enter one identifier; raises `SuppressionError` when it is not a valid `kind`."""
        problem = why_invalid(kind, value)
        if problem:
            raise SuppressionError(problem)
        self._put(kind, normalise(kind, value), reason)

    def _put(self, kind: SuppressionKind, form: str, reason: str) -> None:
        with self._db.connection() as conn:
            conn.execute(_PUT, (kind, form, reason, self._clock()))

    def entries(self) -> list[tuple[str, str, str]]:
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT kind, value, reason FROM suppressions ORDER BY added_at, seq"
            ).fetchall()
        return [(k, v, r) for k, v, r in rows]

    def add_person(
        self, *, email: str | None, linkedin_url: str | None, person_key: str | None, reason: str
    ) -> int:
        """Suppress one person under every identifier given, malformed ones too, in one
        transaction (`SuppressionList.add_person`)."""
        given: list[tuple[SuppressionKind, str | None]] = [
            ("email", email),
            ("linkedin", linkedin_url),
            ("person_key", person_key),
        ]
        now = self._clock()
        n = 0
        with self._db.connection() as conn:
            for kind, value in given:
                if value and value.strip():
                    conn.execute(_PUT, (kind, normalise(kind, value), reason, now))
                    n += 1
        return n

    def erase(self, identifiers: list[tuple[SuppressionKind, str]], reason: str) -> int:
        """Replace a person's plain entries by hashed ones, in one transaction: still
        suppressed, no longer named. Returns how many plain entries it replaced."""
        n = 0
        with self._db.connection() as conn:
            for kind, value in identifiers:
                n += conn.execute(
                    "DELETE FROM suppressions WHERE kind = %s AND value = %s",
                    (kind, normalise(kind, value)),
                ).rowcount
                conn.execute(_PUT, ("erased", fingerprint(kind, value), reason, self._clock()))
        return n

    def named(self, identifiers: list[tuple[SuppressionKind, str]]) -> tuple[int, bool]:
        """How many plain entries name these identifiers, and whether one of them is already
        kept as an erased person's hash."""
        plain = sum(self._count(kind, normalise(kind, value)) for kind, value in identifiers)
        hashed = any(self._count("erased", fingerprint(k, v)) for k, v in identifiers)
        return plain, hashed

    def _count(self, kind: SuppressionKind, form: str) -> int:
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM suppressions WHERE kind = %s AND value = %s", (kind, form)
            ).fetchone()
        return int(row[0]) if row else 0

    def record_erasure(self, fingerprint: str, requested_by: str, erased: dict[str, int]) -> None:
        """Keep proof that an erasure happened, without keeping who it was; then rewrite the
        list so the plain entries `erase` removed leave no bytes in its files."""
        with self._db.connection() as conn:
            conn.execute(
                "INSERT INTO erasures (at, fingerprint, requested_by, erased)"
                " VALUES (%s, %s, %s, %s)",
                (self._clock(), fingerprint, requested_by, json.dumps(erased)),
            )
        self._db.vacuum_full("suppressions")

    def erasures(self) -> list[tuple[str, str, str, str]]:
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT at, fingerprint, requested_by, erased FROM erasures ORDER BY n"
            ).fetchall()
        return [(at.astimezone(UTC).isoformat(), f, by, e) for at, f, by, e in rows]

    def import_csv(self, path: Path, *, default_reason: str) -> ImportReport:
        """Add every row of a do-not-contact CSV (`SuppressionList.import_csv`: same columns,
        same row errors)."""
        return SuppressionList.import_csv(self, path, default_reason=default_reason)  # type: ignore[arg-type]

    def is_erased(self, contact: Contact) -> bool:
        """Whether this person was erased on request (`gtm forget`)."""
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
        """`SuppressionList.check_identifiers`: every probe in its plain and hashed form, the
        first hit in the same order; all probes in one query."""
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
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT kind, value, reason FROM suppressions WHERE (kind, value) IN ("
                + ", ".join(["(%s, %s)"] * len(ordered))
                + ")",
                [x for _, k, v in ordered for x in (k, v)],
            ).fetchall()
        found = {(k, v): r for k, v, r in rows}
        for asked, probe_kind, probe in ordered:
            if (probe_kind, probe) in found:
                shown = probe if probe_kind != "erased" else "(erased person)"
                return f"{asked} {shown} is on the do-not-contact list: {found[probe_kind, probe]}"
        return None
