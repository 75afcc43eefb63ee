"""Do-not-contact list: emails, domains, LinkedIn profiles. Checked at intake and before send."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from gtm.models import Account, Contact
from tools.sqlite import connect

__all__ = ["SuppressionList", "SuppressionKind", "normalise"]

SuppressionKind = Literal["email", "domain", "linkedin", "person_key"]


def normalise(kind: SuppressionKind, value: str) -> str:
    v = value.strip().lower()
    if kind == "linkedin":
        v = v.split("?", 1)[0].rstrip("/").replace("http://", "https://")
        v = v.replace("https://linkedin.com", "https://www.linkedin.com")
    if kind == "domain":
        v = v.removeprefix("www.")
    return v


class SuppressionList:
    def __init__(self, path: Path) -> None:
        self._db = connect(
            path,
            "CREATE TABLE IF NOT EXISTS suppressions (kind TEXT NOT NULL, value TEXT NOT NULL,"
            " reason TEXT NOT NULL, added_at TEXT NOT NULL, PRIMARY KEY (kind, value));",
        )

    def close(self) -> None:
        self._db.close()

    def add(self, kind: SuppressionKind, value: str, reason: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO suppressions VALUES (?, ?, ?, ?)",
            (kind, normalise(kind, value), reason, datetime.now(UTC).isoformat()),
        )

    def entries(self) -> list[tuple[str, str, str]]:
        return [
            (k, v, r)
            for k, v, r in self._db.execute(
                "SELECT kind, value, reason FROM suppressions ORDER BY added_at"
            )
        ]

    def check(self, contact: Contact, account: Account) -> str | None:
        """Why this contact must not be contacted, or None."""
        probes: list[tuple[SuppressionKind, str]] = [
            ("domain", account.domain),
            ("person_key", contact.key),
        ]
        if contact.email:
            probes += [("email", contact.email), ("domain", contact.email.rsplit("@", 1)[-1])]
        if contact.linkedin_url:
            probes.append(("linkedin", contact.linkedin_url))
        for kind, value in probes:
            row = self._db.execute(
                "SELECT reason FROM suppressions WHERE kind = ? AND value = ?",
                (kind, normalise(kind, value)),
            ).fetchone()
            if row:
                return f"{kind} {normalise(kind, value)} is on the do-not-contact list: {row[0]}"
        return None
