"""The embedded CRM: a SQLite file with the same interface as the HubSpot and Attio clients."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from gtm.domain.models import Account, Contact
from tools.crm import Activity, CompanyRecord, ContactRecord, Task, normalise_linkedin
from tools.sqlite import compact, connect

__all__ = ["LocalCRM"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS companies (
    n INTEGER PRIMARY KEY AUTOINCREMENT, domain TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    lifecycle_stage TEXT, owner TEXT, open_deals INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS contacts (
    n INTEGER PRIMARY KEY AUTOINCREMENT, company_id TEXT, name TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '', email TEXT UNIQUE, linkedin_url TEXT UNIQUE,
    opted_out INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS activities (
    n INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, company_id TEXT NOT NULL,
    contact_id TEXT, kind TEXT NOT NULL, subject TEXT, body TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    n INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, company_id TEXT NOT NULL,
    contact_id TEXT, title TEXT NOT NULL, due_at TEXT NOT NULL, owner TEXT);
"""


def _email(value: str | None) -> str | None:
    return value.strip().lower() if value else None


class LocalCRM:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._db = connect(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    async def aclose(self) -> None:
        self.close()

    async def check(self) -> str:
        return f"SQLite CRM in {self._path.parent}"

    @staticmethod
    def _company(r: sqlite3.Row) -> CompanyRecord:
        return CompanyRecord(
            id=f"co_{r['n']}",
            domain=r["domain"],
            name=r["name"],
            lifecycle_stage=r["lifecycle_stage"],
            owner=r["owner"],
            open_deals=r["open_deals"],
        )

    @staticmethod
    def _contact(r: sqlite3.Row) -> ContactRecord:
        return ContactRecord(
            id=f"ct_{r['n']}",
            company_id=r["company_id"],
            name=r["name"],
            title=r["title"],
            email=r["email"],
            linkedin_url=r["linkedin_url"],
            opted_out=bool(r["opted_out"]),
        )

    async def find_company(self, domain: str) -> CompanyRecord | None:
        r = self._db.execute(
            "SELECT * FROM companies WHERE domain = ?", (domain.strip().lower(),)
        ).fetchone()
        return self._company(r) if r else None

    async def upsert_company(self, account: Account) -> CompanyRecord:
        self._db.execute(
            "INSERT OR IGNORE INTO companies (domain, name, owner) VALUES (?, ?, ?)",
            (account.domain.lower(), account.company, account.owner),
        )
        found = await self.find_company(account.domain)
        assert found is not None
        return found

    def _find_contact_row(self, contact: Contact) -> sqlite3.Row | None:
        if contact.email:
            r = self._db.execute(
                "SELECT * FROM contacts WHERE email = ?", (_email(contact.email),)
            ).fetchone()
            if r:
                return r  # type: ignore[no-any-return]
        if contact.linkedin_url:
            r = self._db.execute(
                "SELECT * FROM contacts WHERE linkedin_url = ?",
                (normalise_linkedin(contact.linkedin_url),),
            ).fetchone()
            if r:
                return r  # type: ignore[no-any-return]
        return None

    async def find_contact(self, contact: Contact) -> ContactRecord | None:
        r = self._find_contact_row(contact)
        return self._contact(r) if r else None

    async def upsert_contact(self, contact: Contact, company_id: str) -> ContactRecord:
        if self._find_contact_row(contact) is None:
            self._db.execute(
                "INSERT INTO contacts (company_id, name, title, email, linkedin_url)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    company_id,
                    contact.name,
                    contact.title,
                    _email(contact.email),
                    normalise_linkedin(contact.linkedin_url),
                ),
            )
        found = await self.find_contact(contact)
        assert found is not None
        return found

    async def log_activity(self, activity: Activity) -> str:
        self._db.execute(
            "INSERT OR IGNORE INTO activities"
            " (key, company_id, contact_id, kind, subject, body, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                activity.key,
                activity.company_id,
                activity.contact_id,
                activity.kind,
                activity.subject,
                activity.body,
                activity.at.isoformat(),
            ),
        )
        r = self._db.execute("SELECT n FROM activities WHERE key = ?", (activity.key,)).fetchone()
        return f"act_{r['n']}"

    async def create_task(self, task: Task) -> str:
        self._db.execute(
            "INSERT OR IGNORE INTO tasks (key, company_id, contact_id, title, due_at, owner)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                task.key,
                task.company_id,
                task.contact_id,
                task.title,
                task.due_at.isoformat(),
                task.owner,
            ),
        )
        r = self._db.execute("SELECT n FROM tasks WHERE key = ?", (task.key,)).fetchone()
        return f"task_{r['n']}"

    async def mark_opted_out(self, contact: Contact) -> bool:
        """Set the opt-out flag on the person's record; False when the CRM has no such person
        (a record is not created just to hold the flag)."""
        row = self._find_contact_row(contact)
        if row is None:
            return False
        self._db.execute("UPDATE contacts SET opted_out = 1 WHERE n = ?", (row["n"],))
        return True

    async def activities(self, company_id: str) -> list[Activity]:
        rows = self._db.execute(
            "SELECT * FROM activities WHERE company_id = ? ORDER BY at, n", (company_id,)
        ).fetchall()
        return [
            Activity(
                key=r["key"],
                company_id=r["company_id"],
                contact_id=r["contact_id"],
                kind=r["kind"],
                subject=r["subject"],
                body=r["body"],
                at=datetime.fromisoformat(r["at"]),
            )
            for r in rows
        ]

    # Admin helpers (CLI, tests): state a CRM would hold that this pipeline does not write.
    def set_company(
        self,
        domain: str,
        *,
        name: str | None = None,
        lifecycle_stage: str | None = None,
        owner: str | None = None,
        open_deals: int | None = None,
    ) -> None:
        d = domain.strip().lower()
        self._db.execute(
            "INSERT OR IGNORE INTO companies (domain, name) VALUES (?, ?)", (d, name or d)
        )
        self._db.execute(
            "UPDATE companies SET lifecycle_stage = COALESCE(?, lifecycle_stage),"
            " owner = COALESCE(?, owner), open_deals = COALESCE(?, open_deals) WHERE domain = ?",
            (lifecycle_stage, owner, open_deals, d),
        )

    async def erase_person(self, emails: Sequence[str], urls: Sequence[str]) -> int | str:
        """Delete the person, and the touches and tasks logged against them; count the rows."""
        probes = [Contact(name="", email=e) for e in emails]
        probes += [Contact(name="", linkedin_url=u) for u in urls]
        n = 0
        for probe in probes:
            row = self._find_contact_row(probe)
            if row is None:
                continue
            cid = f"ct_{row['n']}"
            n += 1
            for table in ("activities", "tasks"):
                n += self._db.execute(f"DELETE FROM {table} WHERE contact_id = ?", (cid,)).rowcount
            self._db.execute("DELETE FROM contacts WHERE n = ?", (row["n"],))
        if n:
            compact(self._db)
        return n

    def set_opted_out(self, contact: Contact, opted_out: bool = True) -> None:
        if self._find_contact_row(contact) is None:
            self._db.execute(
                "INSERT INTO contacts (company_id, name, title, email, linkedin_url)"
                " VALUES (NULL, ?, ?, ?, ?)",
                (
                    contact.name,
                    contact.title,
                    _email(contact.email),
                    normalise_linkedin(contact.linkedin_url),
                ),
            )
        row = self._find_contact_row(contact)
        assert row is not None
        self._db.execute(
            "UPDATE contacts SET opted_out = ? WHERE n = ?", (int(opted_out), row["n"])
        )
