"""Erasure requests (`gtm forget`): remove a person from memory and every local store.

What goes: memory records that name them, their own threads (the checkpoints of a thread that
wrote to them, with its drafts and decisions), local CRM contact and touches, local LinkedIn and
email outbox copies, what came back from them, what Dux-Soup saw on their profile, and mentions
in local logs and in alerts Slack has not taken yet. A thread that wrote to someone else at
their account stays, with its status and history: only their entry in its account's contact
list, and every mention of them, leave its checkpoints and its ledger row. What stays, by
design: outbox rows (with the person's key replaced by a one-way hash, so caps and "never send
twice" still hold) and a hashed suppression entry, so they are never contacted again. An
erasure record keeps when, by whom and how much, not who. A request that matches nothing
erases and records nothing, and says so.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gtm.app.checkpoints import erase_threads, rewrite_threads, thread_values
from gtm.app.escalations import open_store as open_escalations
from gtm.app.ledger import ThreadRow
from gtm.app.workspace import Workspace
from gtm.domain.identity import PROFILE_URL_EXAMPLE, profile_url
from gtm.domain.models import Account, Contact
from tools.provider import HoldsPeople
from tools.suppression import SuppressionKind, email_address, fingerprint, normalise

__all__ = ["forget", "identify", "Erasure", "ForgetError", "NothingToForget", "ForgetBusy"]

ERASED = "[erased]"
"""What a mention of an erased person becomes in text that stays."""


class ForgetError(ValueError):
    """The identifier is neither an email address nor a LinkedIn profile URL, or the erasure
    cannot run now."""


class NothingToForget(ForgetError):
    """Nothing stored names the person: nothing was erased and no erasure was recorded."""


class ForgetBusy(ForgetError):
    """A decision is being applied to a thread that names the person: nothing was erased."""


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
    spellings: set[str] = field(default_factory=set)
    """Identifiers as they were written where they were found, for finding them in text."""

    def matches(self, c: Contact) -> bool:
        return bool(
            (c.email and normalise("email", c.email) in self.emails)
            or (c.linkedin_url and normalise("linkedin", c.linkedin_url) in self.urls)
        )

    def add(self, email: str | None, url: str | None, name: str | None) -> bool:
        """Learn identifiers; True when one of them is new."""
        before = len(self.emails) + len(self.urls) + len(self.names)
        if email and email.strip():
            self.emails.add(normalise("email", email))
            self.spellings.add(email.strip())
        if url and url.strip():
            self.urls.add(normalise("linkedin", url))
            self.spellings.add(url.strip())
        if name and name.strip():
            self.names.add(name.strip())
        return len(self.emails) + len(self.urls) + len(self.names) > before

    def identifiers(self) -> list[tuple[SuppressionKind, str]]:
        out: list[tuple[SuppressionKind, str]] = [("email", e) for e in sorted(self.emails)]
        out += [("linkedin", u) for u in sorted(self.urls)]
        out += [("person_key", k) for k in sorted(self.emails | self.urls)]
        return out

    def _pattern(self) -> re.Pattern[str]:
        """Any mention: an address or profile (under any spelling of its host), or a name as a
        whole word."""
        alts = [re.escape(v) for v in sorted(self.emails | self.spellings, key=len, reverse=True)]
        alts += [
            r"(?:https?://)?(?:[a-z-]+\.)?linkedin\.com/in/"
            + re.escape(u.rsplit("/", 1)[-1])
            + r"/?(?![\w%-])"
            for u in sorted(self.urls)
        ]
        alts += [r"(?<!\w)" + re.escape(n) + r"(?!\w)" for n in sorted(self.names)]
        return re.compile("|".join(alts), re.IGNORECASE)

    def redact(self, text: str) -> str:
        return self._pattern().sub(ERASED, text)

    def scrub(self, value: Any) -> Any:
        """`value` without the person: off every account's contact list, and every mention in
        text replaced. Returns `value` itself when nothing in it names them."""
        return _Scrubber(self, self._pattern()).scrub(value)


@dataclass
class _Scrubber:
    person: _Person
    pattern: re.Pattern[str]

    def redact(self, text: str) -> str:
        return self.pattern.sub(ERASED, text)

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.pattern.sub(ERASED, value) if self.pattern.search(value) else value
        if isinstance(value, Account):
            kept = tuple(c for c in value.contacts if not self.person.matches(c))
            if len(kept) < len(value.contacts):
                value = value.model_copy(update={"contacts": kept})
        if isinstance(value, BaseModel):
            changed = self._changed({k: getattr(value, k) for k in type(value).model_fields})
            return value.model_copy(update=changed) if changed else value
        if isinstance(value, dict):
            changed = self._changed(value)
            return {**value, **changed} if changed else value
        if isinstance(value, list | tuple | set | frozenset):
            items = [self.scrub(v) for v in value]
            if all(a is b for a, b in zip(items, value, strict=True)):
                return value
            if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
                return type(value)(*items)
            return type(value)(items)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changed = self._changed(
                {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            )
            if not changed:
                return value
            new = copy.copy(value)
            for k, v in changed.items():
                object.__setattr__(new, k, v)  # frozen dataclasses too
            return new
        return value

    def _changed(self, fields: dict[Any, Any]) -> dict[Any, Any]:
        out = {}
        for k, v in fields.items():
            new = self.scrub(v)
            if new is not v:
                out[k] = new
        return out


def identify(identifier: str) -> Contact:
    """The person an erasure request names, by email or profile URL in its one form; raises
    `ForgetError` for anything else."""
    ident = identifier.strip()
    if url := profile_url(ident):
        return Contact(name="", linkedin_url=url)
    if email := email_address(ident):
        return Contact(name="", email=email)
    if "linkedin.com" in ident.lower():
        raise ForgetError(
            f"{identifier!r} is not a LinkedIn member profile URL (like {PROFILE_URL_EXAMPLE})"
        )
    raise ForgetError(
        f"{identifier!r} is neither an email address nor a LinkedIn profile URL "
        f"(like {PROFILE_URL_EXAMPLE})"
    )


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


async def _threads(rt: Workspace, person: _Person) -> tuple[list[ThreadRow], list[ThreadRow]]:
    """Threads whose account lists the person: (theirs, others'). Theirs wrote to them; the
    others wrote to someone else there, or to no one. Identifiers found on one list are looked
    for on every other, until no new one turns up."""
    listed: list[tuple[ThreadRow, Account, Any]] = []
    for row in rt.ledger.rows():
        values = await thread_values(rt, row.thread_id)
        if isinstance(values.get("account"), Account):
            listed.append((row, values["account"], values.get("contact")))
    hits: dict[str, tuple[ThreadRow, Any]] = {}
    grew = True
    while grew:
        grew = False
        for row, account, contact in listed:
            for c in account.contacts:
                if person.matches(c):
                    hits[row.thread_id] = (row, contact)
                    grew = person.add(c.email, c.linkedin_url, c.name) or grew
    theirs = [r for r, c in hits.values() if isinstance(c, Contact) and person.matches(c)]
    return theirs, [r for r, _ in hits.values() if r not in theirs]


async def forget(rt: Workspace, identifier: str, *, requested_by: str) -> Erasure:
    """Erase one person, named by email or LinkedIn URL, from every local store. Raises
    `NothingToForget`, having changed nothing, when no store holds them."""
    probe = identify(identifier)
    person = _Person()
    person.add(probe.email, probe.linkedin_url, None)
    deps = rt.deps
    record = await deps.crm.find_contact(probe)
    if record is not None:
        person.add(record.email, record.linkedin_url, record.name)
    theirs, others = await _threads(rt, person)
    busy = [r for r in theirs + others if rt.ledger.busy(r.thread_id)]
    if busy:
        raise ForgetBusy(
            f"a decision on draft {busy[0].id} is being applied right now; "
            "run the erasure again when it is done"
        )

    key = sorted(person.emails | person.urls)[0]
    result = Erasure(fingerprint=fingerprint("email" if "@" in key else "linkedin", key))
    hard = sorted(person.emails | person.urls)
    accounts = sorted({r.account_id for r in theirs + others})

    result.erased["memory records"] = await deps.memory.forget_person(hard)
    if person.names and accounts:
        result.erased["memory records"] += await deps.memory.forget_person(
            sorted(person.names), accounts
        )
    for row in theirs:
        rt.ledger.forget_history(row.thread_id)
        rt.ledger.update(
            row.thread_id,
            status="skipped",
            skip_reason="erased",
            detail="erased on request",
            contact="",
            preview="",
        )
    # Elsewhere only their address, profile and "Name (account)" label go, never a bare name:
    # another person may share it. (Review names a near-duplicate peer by that label, and a
    # reviewer's reason on any thread may give their address.)
    elsewhere = _elsewhere(person, accounts)
    near = {r.thread_id for r in theirs + others}
    rest = [r for r in rt.ledger.rows() if r.thread_id not in near]
    redacted = [_redact_row(rt, row, person.redact) for row in others]
    redacted += [_redact_row(rt, row, elsewhere.redact) for row in rest]
    notes = rt.ledger.redact_notes([r.thread_id for r in others], person.redact)
    notes += rt.ledger.redact_notes([r.thread_id for r in rest], elsewhere.redact)
    result.erased["decision notes redacted"] = notes
    if theirs or any(redacted) or notes:
        rt.ledger.compact()  # the old contact name and draft preview must not linger on disk
    # Checkpoints last: until they change, a second `forget` finds these threads again.
    result.erased["threads"] = await erase_threads(rt, [r.thread_id for r in theirs])
    result.erased["threads kept without them"] = await rewrite_threads(
        rt, [r.thread_id for r in others], person.scrub
    ) + await rewrite_threads(rt, [r.thread_id for r in rest], elsewhere.scrub)

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
    result.erased["events"] = rt.events.erase_person(sorted(person.emails), sorted(person.urls))
    result.erased["LinkedIn profile fields"] = rt.profiles.erase_person(sorted(person.urls))
    escalations = open_escalations(rt)
    try:
        result.erased["escalations"] = escalations.erase_person(sorted(person.emails | person.urls))
    finally:
        escalations.close()
    if deps.alerts is not None:  # an alert Slack has not taken yet goes out without them
        result.erased["queued alerts redacted"] = deps.alerts.redact_waiting(person.redact)
    result.erased["log mentions"] = _redact_logs(
        rt.settings.data_dir, [*hard, *sorted(person.names)]
    )
    plain, hashed = deps.suppressions.named(person.identifiers())
    if not (plain or result.notes or any(result.erased.values())):
        if hashed:
            raise NothingToForget(
                f"nothing about {identifier.strip()} is stored: they were erased before, and "
                "stay on the do-not-contact list as a one-way hash"
            )
        raise NothingToForget(
            f"nothing stored names {identifier.strip()}: no thread, memory record, outbox "
            "entry, CRM contact or do-not-contact entry. Nothing was erased or recorded; check "
            "the spelling, or add them to the do-not-contact list"
        )
    result.erased["do-not-contact entries hashed"] = deps.suppressions.erase(
        person.identifiers(), "erased on request; never contact again"
    )
    deps.suppressions.record_erasure(result.fingerprint, requested_by, result.erased)
    return result


def _elsewhere(person: _Person, accounts: list[str]) -> _Scrubber:
    """What is erased outside their accounts' threads: their addresses and profiles, and the
    "Name (account)" label review gives a near-duplicate peer."""
    hard = dataclasses.replace(person, names=set())._pattern().pattern
    labels = [re.escape(f"{n} ({a})") for n in sorted(person.names) for a in accounts]
    return _Scrubber(person, re.compile("|".join([hard, *labels]), re.IGNORECASE))


def _redact_row(rt: Workspace, row: ThreadRow, redact: Callable[[str], str]) -> bool:
    """Take the person out of another contact's ledger row (a skip detail may list them, a
    reject's reason may name them). A row with a decision being applied is left: applying it
    re-derives the row from the checkpoint, which no longer names them."""
    detail, contact, preview = (redact(t) for t in (row.detail, row.contact, row.preview))
    if (detail, contact, preview) == (row.detail, row.contact, row.preview) or row.deciding:
        return False
    rt.ledger.update(
        row.thread_id,
        status=row.status,
        tier=row.tier,
        skip_reason=row.skip_reason,
        detail=detail,
        flagged=row.flagged,
        contact=contact,
        preview=preview,
    )
    return True
