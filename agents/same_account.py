"""One account never gets the same message twice: the review's rule for several people there.

When a campaign reaches several people of one account (`Playbook.contacts_per_account`), each
has a thread of their own. A draft may not share its skeleton with a draft already written for a
colleague at the same account in the same campaign, however short, and whatever the
campaign-wide near-duplicate threshold allows: the colleagues compare notes. The drafts are
read from memory, where each thread keeps its own keys (`memory_thread`).

The account speaks with one voice, too: a reply, opt-out, meeting or opportunity from someone
there the campaign never wrote to (an address at the company's domain, a person on the account
list, a CRM contact of the company) pauses every sequence of the campaign at the account
(`unwritten_colleague_stop_reason`, asked where `agents.followup.colleague_stop_reason` is).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from langgraph.config import get_config

from agents.context import Deps
from agents.followup import _SAID, STOPPING_KINDS
from agents.state import State
from evals.checks import jaccard
from evals.text import longest_common_run, shingles, skeleton
from gtm.domain.events import EventKind
from gtm.domain.identity import PERSONAL_MAIL, at_company, profile_url
from gtm.domain.models import Account, CheckResult, Contact, OutboxEntry, Review, Touch
from gtm.domain.playbook import Playbook
from gtm.domain.threads import thread_id_for
from tools.crm import CRM, CompanyRecord, ContactRecord
from tools.events import EventStore, StoredEvent
from tools.suppression import normalise

__all__ = [
    "PassLookups",
    "memory_thread",
    "same_account_duplicate",
    "unwritten_colleague_stop_reason",
    "with_colleagues",
]


def memory_thread(state: State) -> str:
    """The prefix of this thread's draft keys in memory: the account's thread id, as always; for
    the thread of a further person at the account, that thread's own id, so colleagues' drafts
    do not overwrite each other's. Outside a graph run, the account's thread id."""
    base = thread_id_for(state.campaign, state.account.account_id)
    try:
        tid = str(get_config().get("configurable", {}).get("thread_id") or "")
    except RuntimeError:  # not inside a graph run
        return base
    return tid if tid.startswith(f"{base}#") else base


def same_account_duplicate(
    text: str, colleagues: list[Touch], playbook: Playbook
) -> CheckResult | None:
    """A failed `near_duplicates` verdict if `text` shares its skeleton with a colleague's draft:
    the same words once names and numbers are masked, or a masked-shingle overlap at the
    playbook's `near_duplicate_shingle` with no minimum length. None if it shares none."""
    mine = skeleton(text)
    worst: tuple[float, Touch] | None = None
    for t in colleagues:
        same = bool(mine) and mine == skeleton(t.text)
        sim = 1.0 if same else jaccard(shingles(text), shingles(t.text))
        if sim >= playbook.guardrails.near_duplicate_shingle and (worst is None or sim > worst[0]):
            worst = (sim, t)
    if worst is None:
        return None
    sim, peer = worst
    who = peer.contact or "a colleague"
    shared = longest_common_run(text, peer.text)
    return CheckResult(
        check="near_duplicates",
        passed=False,
        score=1 - sim,
        finding=f"same skeleton as the draft for {who} at this account (shingle overlap "
        f"{sim:.0%}): one account never gets the same message twice",
        spans=(shared,) if shared.strip() else (text[:60],),
        instruction=f"This reads like the message to {who} at the same company. Write to this "
        "person's own role with a different opening, angle and structure.",
    )


async def with_colleagues(deps: Deps, state: State, text: str, verdict: Review) -> Review:
    """`verdict` with the same-account rule applied to `text`. The colleagues' drafts are this
    campaign's drafts in memory for someone else at the account."""
    me = state.contact.name if state.contact else ""
    colleagues = [
        t
        for t in await deps.memory.history(state.account.account_id, limit=200)
        if t.kind == "draft" and t.campaign == state.campaign and t.contact != me
    ]
    failed = same_account_duplicate(text, colleagues, deps.playbook)
    if failed is None or any(r.check == "near_duplicates" for r in verdict.failures):
        return verdict  # nothing found, or already failed on another account's draft
    kept = tuple(r for r in verdict.results if r.check != "near_duplicates")
    return Review(results=(*kept, failed))


_UNHEARD_STOPS: frozenset[EventKind] = STOPPING_KINDS - {"bounce"}
"""What from someone at the account the campaign never wrote to pauses its sequences there: a
reply, an opt-out, a meeting or an opportunity is the account speaking. A bounce is not: it
only says an address (written to by another campaign) is dead."""


def _own(contact: Contact, entries: Iterable[OutboxEntry]) -> set[str]:
    """Every canonical identifier the person is known by: their own events are `stop_reason`'s
    business, and this rule is about someone else."""
    ids = {contact.key}
    for value in (contact.email, contact.linkedin_url):
        if value:
            ids.add(normalise("email", value) if "@" in value else profile_url(value) or value)
    ids |= {e.touch.recipient or "" for e in entries if e.contact_key == contact.key}
    ids.discard("")
    return {i.strip().lower() for i in ids}


class Lookups(Protocol):
    """The two CRM questions the rule asks: a `CRM`, or a pass's `PassLookups` over one."""

    async def find_company(self, domain: str) -> CompanyRecord | None: ...

    async def find_contact(self, contact: Contact) -> ContactRecord | None: ...


class PassLookups:
    """A CRM's answers remembered for one pass over a campaign's threads.

    The rule asks the CRM about every unmatched event for every thread at an account the
    campaign wrote to, and the same events come up for each of them: a follow-up pass over T
    threads with E such events asked T x E times (every `gtm serve` tick, against the CRM's API
    rate limit). Through this, each person and each domain is asked once per pass. A pass is
    minutes long; a new pass asks again."""

    def __init__(self, crm: CRM) -> None:
        self._crm = crm
        self._companies: dict[str, CompanyRecord | None] = {}
        self._contacts: dict[tuple[str | None, str | None], ContactRecord | None] = {}

    async def find_company(self, domain: str) -> CompanyRecord | None:
        key = domain.strip().lower()
        if key not in self._companies:
            self._companies[key] = await self._crm.find_company(domain)
        return self._companies[key]

    async def find_contact(self, contact: Contact) -> ContactRecord | None:
        key = (contact.email, contact.linkedin_url)
        if key not in self._contacts:
            self._contacts[key] = await self._crm.find_contact(contact)
        return self._contacts[key]


async def unwritten_colleague_stop_reason(
    store: EventStore | None,
    crm: Lookups | None,
    entries: Iterable[OutboxEntry],
    account: Account,
    contact: Contact,
) -> str | None:
    """Why `contact`'s sequence at `account` must pause because someone there this campaign
    never wrote to replied, opted out, booked a meeting or became an opportunity; None if no one.

    `entries` are the campaign's outbox entries. Only what happened since the campaign first
    wrote to the account counts (before that there is no sequence of ours to coordinate; older
    history is the cooldowns' business). Someone is at the account when the event's address is
    at the account's domain or a subdomain (`at_company`: never a personal mail provider's), when
    they are on the account list, or when an event no touch was matched to names a CRM contact
    of the account's CRM company. Colleagues the campaign wrote to are `colleague_stop_reason`'s.
    """
    entries = list(entries)
    ours = [e for e in entries if e.account_id == account.account_id]
    if store is None or not ours:
        return None
    since = min(e.created_at for e in ours)  # the stores return only events at or after it
    own = _own(contact, ours)
    found: dict[str, tuple[StoredEvent, str]] = {}

    def consider(events: Iterable[StoredEvent], how: str) -> None:
        for ev in events:
            if (
                ev.event.kind in _UNHEARD_STOPS
                and (ev.person or "").strip().lower() not in own
                and ev.event.key not in found
            ):
                found[ev.event.key] = (ev, how)

    if account.domain.strip().lower() not in PERSONAL_MAIL:
        at_domain = store.events(domain=account.domain, since=since)
        consider(
            [e for e in at_domain if at_company(e.person, account.domain)],
            "by their address at the company's domain",
        )
    for other in account.contacts:
        if other.key != contact.key:
            for ident in dict.fromkeys(i for i in (other.email, other.linkedin_url) if i):
                consider(store.events(person=ident, since=since), "on the account list")
    if crm is not None:
        # Unmatched events that name nobody by a company address: a LinkedIn reply, a personal
        # mailbox. The CRM may know the person as one of the company's contacts.
        loose = [
            e
            for kind in sorted(_UNHEARD_STOPS)
            for e in store.events(kind=kind, matched=False, since=since)
            if not e.event.email or _host(e.event.email) in PERSONAL_MAIL
        ]
        company = await crm.find_company(account.domain) if loose else None
        for ev in loose:
            if company is None:
                break
            probe = Contact(name="", email=ev.event.email, linkedin_url=ev.event.linkedin_url)
            record = await crm.find_contact(probe)
            if record is not None and record.company_id == company.id:
                consider([ev], "a CRM contact of the company")
    if not found:
        return None
    ev, how = min(found.values(), key=lambda hit: hit[0].event.at)
    # No address in the line: it lands in the ledger, which erasure does not rewrite.
    return (
        f"someone else at this account ({how}), not written to in this campaign, "
        f"{_SAID[ev.event.kind]} on {ev.event.at:%Y-%m-%d %H:%M} UTC (event {ev.event.key[:40]})"
    )


def _host(email: str) -> str:
    return email.rsplit("@", 1)[-1].strip().lower().rstrip(".")
