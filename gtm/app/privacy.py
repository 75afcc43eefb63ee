"""Erasure requests (`gtm forget`): remove a person from memory and every local store.

What goes: memory records that name them, their checkpointed threads (a thread carries the
account's contact list and drafts), local CRM contact and touches, local LinkedIn and email
outbox copies, and mentions in local logs. What stays, by design: outbox rows (with the person's
key replaced by a one-way hash, so caps and "never send twice" still hold) and a hashed
suppression entry, so they are never contacted again. An erasure record keeps when, by whom and
how much, not who.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from gtm.app.runner import erase_threads, thread_values
from gtm.app.workspace import Workspace
from gtm.domain.models import Account, Contact
from tools.provider import HoldsPeople
from tools.suppression import SuppressionKind, fingerprint, normalise

__all__ = ["forget", "Erasure", "ForgetError"]


class ForgetError(ValueError):
    """The identifier is neither an email address nor a LinkedIn profile URL."""


@dataclass
class Erasure:
    fingerprint: str
    erased: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Person:
    emails: set[str] = field(default_factory=set)
    urls: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)

    def matches(self, c: Contact) -> bool:
        return bool(
            (c.email and normalise("email", c.email) in self.emails)
            or (c.linkedin_url and normalise("linkedin", c.linkedin_url) in self.urls)
        )

    def add(self, email: str | None, url: str | None, name: str | None) -> None:
        if email:
            self.emails.add(normalise("email", email))
        if url:
            self.urls.add(normalise("linkedin", url))
        if name and name.strip():
            self.names.add(name.strip())

    def identifiers(self) -> list[tuple[SuppressionKind, str]]:
        out: list[tuple[SuppressionKind, str]] = [("email", e) for e in sorted(self.emails)]
        out += [("linkedin", u) for u in sorted(self.urls)]
        out += [("person_key", k) for k in sorted(self.emails | self.urls)]
        return out


def _probe(identifier: str) -> Contact:
    ident = identifier.strip()
    if "linkedin.com/" in ident.lower():
        return Contact(name="", linkedin_url=ident)
    if re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", ident):
        return Contact(name="", email=ident)
    raise ForgetError(f"{identifier!r} is neither an email address nor a LinkedIn profile URL")


def _redact_logs(data_dir: Path, needles: list[str]) -> int:
    pattern = re.compile("|".join(re.escape(n) for n in needles if n), re.IGNORECASE)
    n = 0
    for path in [*data_dir.glob("*.jsonl"), *data_dir.glob("logs/**/*")]:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        redacted, hits = pattern.subn("[erased]", text)
        if hits:
            path.write_text(redacted, encoding="utf-8")
            n += hits
    return n


async def forget(rt: Workspace, identifier: str, *, requested_by: str) -> Erasure:
    """Erase one person, named by email or LinkedIn URL, from every local store."""
    probe = _probe(identifier)
    person = _Person()
    person.add(probe.email, probe.linkedin_url, None)
    deps = rt.deps
    record = await deps.crm.find_contact(probe)
    if record is not None:
        person.add(record.email, record.linkedin_url, record.name)

    # Threads whose account lists this person: their checkpoints hold the person's data.
    threads: list[tuple[str, Account]] = []
    for row in rt.ledger.rows():
        account = (await thread_values(rt, row.thread_id)).get("account")
        if isinstance(account, Account):
            hits = [c for c in account.contacts if person.matches(c)]
            for c in hits:
                person.add(c.email, c.linkedin_url, c.name)
            if hits:
                threads.append((row.thread_id, account))

    key = sorted(person.emails | person.urls)[0]
    result = Erasure(fingerprint=fingerprint("email" if "@" in key else "linkedin", key))
    hard = sorted(person.emails | person.urls)
    accounts = sorted({a.account_id for _, a in threads})

    result.erased["memory records"] = await deps.memory.forget_person(hard)
    if person.names and accounts:
        result.erased["memory records"] += await deps.memory.forget_person(
            sorted(person.names), accounts
        )
    for tid, _ in threads:
        rt.ledger.forget_history(tid)
        rt.ledger.update(
            tid,
            status="skipped",
            skip_reason="erased",
            detail="erased on request",
            contact="",
            preview="",
        )
    if threads:
        rt.ledger.compact()  # the old contact name and draft preview must not linger on disk
    # Checkpoints last: until they go, a second `forget` finds these threads again.
    result.erased["threads"] = await erase_threads(rt, [tid for tid, _ in threads])

    stand_in = f"erased:{result.fingerprint[:16]}"
    result.erased["outbox rows re-keyed"] = sum(
        deps.outbox.erase_contact(k, stand_in) for k in person.emails | person.urls
    )
    # Each backend erases its own copies, or says what a person must erase at the provider.
    stores: list[tuple[str, HoldsPeople]] = [
        ("CRM rows", deps.crm),
        ("LinkedIn outbox actions", deps.linkedin),
        ("emails", deps.email),
    ]
    for label, store in stores:
        erased = await store.erase_person(sorted(person.emails), sorted(person.urls))
        if isinstance(erased, str):
            result.notes.append(erased)
        else:
            result.erased[label] = erased
    result.erased["log mentions"] = _redact_logs(
        rt.settings.data_dir, [*hard, *sorted(person.names)]
    )
    deps.suppressions.erase(person.identifiers(), "erased on request; never contact again")
    deps.suppressions.record_erasure(result.fingerprint, requested_by, result.erased)
    return result
