"""Research: gather facts a message may cite, each with an id and a source.

Sources: the account list row(s), what Dux-Soup saw on the contact's LinkedIn profile
(`tools.profiles`: dated with the day it was seen, stale ones marked), the CRM record (with the
product signals the playbook's `crm_lists.pql_properties` names, worded as a list's PQL column)
and its logged touches, memory of earlier touches, and, when web research is on (`Deps.web`), the
company's website (`agents.web_facts`: facts with a verbatim quote from the page, dated, stale
ones marked). Nothing is inferred: a fact is a statement some source made. Unknown stays
unknown. Text that tries to instruct the writer, from any source, is quarantined: the reviewer
sees it, the writer never does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from langgraph.runtime import Runtime

from agents.context import Deps
from agents.qualify import qualify
from agents.state import State
from agents.web_facts import WebFindings, web_facts
from evals.text import find_injection
from gtm.domain.crm_lists import CrmName
from gtm.domain.models import Account, Contact, Fact, FactKind, Touch
from gtm.domain.pql import pql_facts
from tools.crm import CRM, CompanyRecord, CompanySignals
from tools.profiles import visit_facts

_Found = list[tuple[FactKind, str, str, str | None]]
"""(kind, text, source, url): `url` is a link where a person can check the fact, if known."""

_TRAILING_URL = re.compile(r"[\s:—–-]*\(?(https?://[^\s()]+?)[.,;]?\)?\s*$")

__all__ = ["research", "list_facts", "history_facts", "split_link"]


def split_link(signal: str) -> tuple[str, str | None]:
    """A signal may end with the link it came from, `Raised a Series B (https://…)`: the text
    without it, and the link. The writer sees the text; the reviewer gets the link."""
    m = _TRAILING_URL.search(signal)
    if m is None or not signal[: m.start()].strip():
        return signal, None
    return signal[: m.start()].rstrip(), m.group(1)


def list_facts(account: Account, contact: Contact) -> _Found:
    """What the account list says."""
    src = f"{account.source or 'account list'}:{account.rows[0] if account.rows else '?'}"
    out: _Found = []
    if account.description:
        out.append(
            ("company", f"{account.company}: {account.description}", f"{src}:description", None)
        )
    if account.segment:
        out.append(
            ("company", f"{account.company} works in {account.segment}.", f"{src}:segment", None)
        )
    for s in account.signals:
        text, url = split_link(s)
        out.append(("signal", text, f"{src}:signals", url))
    if account.tech_stack:
        out.append(
            (
                "signal",
                f"{account.company} uses {', '.join(account.tech_stack)}.",
                f"{src}:tech_stack",
                None,
            )
        )
    if account.open_source_user:
        out.append(
            (
                "signal",
                f"{account.company} uses our open-source project.",
                f"{src}:open_source_user",
                None,
            )
        )
    if account.event:
        out.append(("event", f"We met {account.company} at {account.event}.", f"{src}:event", None))
    for f in account.facts:  # columns the user marked as facts, each with file:row:column
        out.append((f.kind, f.text, f.source, f.url))
    if contact.title:
        row = f"{account.source or 'account list'}:{contact.row or '?'}"
        out.append(
            (
                "person",
                f"{contact.name} is {contact.title} at {account.company}.",
                f"{row}:contact_title",
                None,
            )
        )
    for f in contact.profile:  # what the user's own tools say about this person, never scraped
        out.append((f.kind, f.text, f.source, f.url))
    return out


def history_facts(touches: list[Touch]) -> _Found:
    """Earlier sends and decisions: who, when, what was said."""
    out: _Found = []
    for t in touches:
        if t.kind not in ("send", "decision"):
            continue
        when = t.at.date().isoformat()
        who = f" to {t.contact}" if t.contact else ""
        out.append(
            (
                "history",
                f"On {when} ({t.campaign or 'earlier campaign'}) {t.kind}{who}: {t.text[:280]}",
                f"memory:{t.kind}@{when}",
                None,
            )
        )
    return out


async def _company(
    crm: CRM, domain: str, pql_properties: Mapping[CrmName, Mapping[str, str]]
) -> CompanyRecord | None:
    """The CRM's company record; with the product-signal properties the campaign's playbook
    names, where the CRM can hold them. None named: the plain lookup, nothing more asked."""
    if pql_properties and isinstance(crm, CompanySignals):
        return await crm.find_company_with_signals(domain, pql_properties)
    return await crm.find_company(domain)


async def research(state: State, runtime: Runtime[Deps]) -> dict[str, Any]:
    deps = runtime.context
    account = state.account
    assert state.contact is not None, "intake chooses the contact before research"
    found = list_facts(account, state.contact)
    today = deps.clock().date()
    max_age_days = deps.playbook.research.max_fact_age_days
    dated: dict[str, Fact] = {}  # a sighting's facts by text: their day and stale mark
    if deps.profiles is not None and state.contact.linkedin_url:
        # What Dux-Soup saw when it visited the profile for us (never fetched from LinkedIn),
        # read on every pass, so a follow-up sees the newest sighting; one seen longer ago than
        # the playbook's freshness limit is marked stale, as an old web page's facts are.
        if (visited := deps.profiles.get(state.contact.linkedin_url)) is not None:
            for f in visit_facts(
                visited, state.contact.name, today=today, max_age_days=max_age_days
            ):
                found.append((f.kind, f.text, f.source, f.url))
                dated.setdefault(f.text, f)

    company = await _company(deps.crm, account.domain, deps.playbook.crm_lists.pql_properties)
    if company is not None:
        if company.owner:
            found.append(
                (
                    "company",
                    f"Account owner is {company.owner}.",
                    f"crm:company/{company.id}",
                    None,
                )
            )
        # Beside a list column for the same signal, not instead of it: the card shows both.
        for f in pql_facts(account.company, company.pql):
            found.append((f.kind, f.text, f.source, f.url))
        for act in await deps.crm.activities(company.id):
            found.append(
                (
                    "history",
                    f"On {act.at.date().isoformat()} CRM logged a {act.kind}: {act.body[:200]}",
                    f"crm:activity/{act.key[:12]}",
                    None,
                )
            )
    earlier = await deps.memory.history(account.account_id, limit=20)
    found.extend(history_facts(earlier))

    patterns = deps.playbook.guardrails.injection_patterns
    web = WebFindings()
    if deps.web is not None:
        web = await web_facts(
            deps.web,
            deps.model,
            account,
            today=today,
            max_age_days=max_age_days,
            injection_patterns=patterns,
        )

    seen: set[str] = set()
    facts: list[Fact] = []
    quarantined: list[Fact] = []
    events: list[str] = []

    def admissible(text: str, source: str, kind: FactKind, checked: str) -> bool:
        """Sources are data, never orders: text aimed at the writer does not reach it. The
        reviewer sees all of it, a link as text, never as something to click."""
        hit = find_injection(checked, patterns)
        if hit is None:
            return True
        quarantined.append(
            Fact(id=f"q{len(quarantined) + 1}", text=checked, source=source, kind=kind)
        )
        events.append(f"research: quarantined a fact from {source}: it contains {hit[1]}")
        return False

    for kind, text, source, url in found:
        if text in seen:
            continue
        seen.add(text)
        whole = f"{text} {url}" if url else text  # a link can carry the payload too
        if admissible(text, source, kind, whole):
            mark = dated.get(text)
            facts.append(
                Fact(
                    id=f"f{len(facts) + 1}",
                    text=text,
                    source=source,
                    kind=kind,
                    url=url,
                    published=mark.published if mark else None,
                    stale=mark is not None and mark.stale,
                )
            )
    if aged := [f for f in facts if f.text in dated and f.stale]:
        events.append(
            f"research: {len(aged)} LinkedIn profile fact(s) seen more than {max_age_days} "
            "day(s) ago marked stale"
        )
    for hidden in web.hidden:
        quarantined.append(
            Fact(
                id=f"q{len(quarantined) + 1}",
                text=hidden.text,
                source=hidden.source,
                kind="website",
            )
        )
        events.append(f"research: quarantined hidden text from {hidden.source}: {hidden.why}")
    for w in web.facts:
        if w.text in seen:
            continue
        seen.add(w.text)
        if admissible(w.text, w.url, "website", f"{w.text} {w.quote}"):
            facts.append(
                Fact(
                    id=f"f{len(facts) + 1}",
                    text=w.text,
                    source=w.url,
                    kind="website",
                    url=w.url,
                    quote=w.quote,
                    fetched_at=w.fetched_at,
                    published=w.published,
                    stale=w.stale,
                )
            )
    card = qualify(account, state.contact, facts, deps.playbook)
    return {
        "facts": facts,
        "quarantined": quarantined,
        "qualification": card,
        "events": [
            f"research: {len(facts)} fact(s)",
            f"research: qualification score {card.score:g} of {card.max_score:g}",
            *events,
            *web.events,
        ],
    }
