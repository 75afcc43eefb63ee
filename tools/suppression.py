"""Do-not-contact list: emails, domains, LinkedIn profiles. Checked at intake and before send.

An entry is forever. A person who opts out on one channel is entered under every identifier we
know for them (email, profile, person key), so no channel reaches them again. A person erased
on request (`gtm forget`) stays suppressed under a one-way hash, so the list itself no longer
holds who they were.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from gtm.domain.models import Account, Contact
from tools.sqlite import compact, connect

__all__ = ["SuppressionList", "SuppressionKind", "normalise", "fingerprint", "ImportReport"]

SuppressionKind = Literal["email", "domain", "linkedin", "person_key", "erased"]
_COLUMNS: dict[str, SuppressionKind] = {
    "email": "email",
    "domain": "domain",
    "linkedin_url": "linkedin",
    "linkedin": "linkedin",
}


def normalise(kind: SuppressionKind, value: str) -> str:
    v = value.strip().lower()
    if kind == "linkedin":
        v = v.split("?", 1)[0].rstrip("/").replace("http://", "https://")
        v = v.replace("https://linkedin.com", "https://www.linkedin.com")
    if kind == "domain":
        v = v.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
        v = v.removeprefix("www.")
    return v


def fingerprint(kind: SuppressionKind, value: str) -> str:
    """The one-way form an erased person's identifier is kept under."""
    return hashlib.sha256(f"{kind}:{normalise(kind, value)}".encode()).hexdigest()


@dataclass
class ImportReport:
    added: int
    errors: list[str]


class SuppressionList:
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

    def close(self) -> None:
        self._db.close()

    def add(self, kind: SuppressionKind, value: str, reason: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO suppressions VALUES (?, ?, ?, ?)",
            (kind, normalise(kind, value), reason, self._clock().isoformat()),
        )

    def entries(self) -> list[tuple[str, str, str]]:
        return [
            (k, v, r)
            for k, v, r in self._db.execute(
                "SELECT kind, value, reason FROM suppressions ORDER BY added_at"
            )
        ]

    def add_person(
        self, *, email: str | None, linkedin_url: str | None, person_key: str | None, reason: str
    ) -> int:
        """Suppress one person under every identifier given (an opt-out covers all channels)."""
        n = 0
        for kind, value in (
            ("email", email),
            ("linkedin", linkedin_url),
            ("person_key", person_key),
        ):
            if value:
                self.add(kind, value, reason)  # type: ignore[arg-type]
                n += 1
        return n

    def erase(self, identifiers: list[tuple[SuppressionKind, str]], reason: str) -> None:
        """Replace a person's plain entries by hashed ones: still suppressed, no longer named."""
        for kind, value in identifiers:
            self._db.execute(
                "DELETE FROM suppressions WHERE kind = ? AND value = ?",
                (kind, normalise(kind, value)),
            )
            self._db.execute(
                "INSERT OR IGNORE INTO suppressions VALUES ('erased', ?, ?, ?)",
                (fingerprint(kind, value), reason, self._clock().isoformat()),
            )

    def record_erasure(self, fingerprint: str, requested_by: str, erased: dict[str, int]) -> None:
        """Keep proof that an erasure happened, without keeping who it was."""
        import json

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
                problem = _invalid(kind, value)
                if problem:
                    errors.append(f"{path}: row {line}: {column}: {problem}")
                    continue
                self.add(kind, value, reason)
                added += 1
                found = True
            if not found and not any(e.startswith(f"{path}: row {line}:") for e in errors):
                errors.append(f"{path}: row {line}: email/domain/linkedin_url: all empty")
        return ImportReport(added, errors)

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
        probes: list[tuple[SuppressionKind, str]] = []
        if domain:
            probes.append(("domain", domain))
        if person_key:
            probes.append(("person_key", person_key))
        if email:
            probes += [("email", email), ("domain", email.rsplit("@", 1)[-1])]
        if linkedin_url:
            probes.append(("linkedin", linkedin_url))
        for kind, value in probes:
            for probe_kind, probe in (
                (kind, normalise(kind, value)),
                ("erased", fingerprint(kind, value)),
            ):
                row = self._db.execute(
                    "SELECT reason FROM suppressions WHERE kind = ? AND value = ?",
                    (probe_kind, probe),
                ).fetchone()
                if row:
                    shown = probe if probe_kind != "erased" else "(erased person)"
                    return f"{kind} {shown} is on the do-not-contact list: {row[0]}"
        return None


def _invalid(kind: SuppressionKind, value: str) -> str | None:
    v = normalise(kind, value)
    if kind == "email" and (v.count("@") != 1 or "." not in v.rsplit("@", 1)[1]):
        return f"{value!r} is not an email address"
    if kind == "domain" and ("." not in v or " " in v or "@" in v):
        return f"{value!r} is not a domain"
    if kind == "linkedin" and "linkedin.com/" not in v:
        return f"{value!r} is not a LinkedIn profile URL"
    return None
