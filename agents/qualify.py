"""Qualification: the MEDDIC and product-qualified-signal card of one account, and the order
accounts run in.

Deterministic and explainable, no model: the playbook's `qualification:` rules (title words,
words in facts, PQL thresholds, weights) are matched against research facts, and every value
on the card names the facts behind it. A fact only counts if it is in the research given (so
its id exists) and is not stale (unless the playbook says stale facts count). What no fact
backs is "unknown".

`rank_accounts` orders a run's accounts by tier, then by the score of the card their list data
alone gives (before any research), so Tier 1 and strong signals take the caps first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from evals.text import find_injection
from gtm.domain.models import Account, Contact, Fact
from gtm.domain.patterns import any_of
from gtm.domain.playbook import Playbook
from gtm.domain.qualification import (
    MEDDIC,
    Element,
    ElementName,
    Evidence,
    PqlRule,
    PqlSignal,
    Qualification,
    Rules,
    TextRule,
    TitleRule,
)

__all__ = ["Ranked", "list_card", "qualify", "rank_accounts", "ranking"]

VALUE_CHARS = 200
"""A value on the card is the backing fact's text, cut to this length."""

_NUM = (
    r"(?<![\w.,])(?P<num>[+\-\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)"
    r"(?P<mult>\s?[kKmM](?![A-Za-z]))?(?P<pct>\s?%)?"
)
_NO_STOP = r"(?:(?![.;!?](?:\s|$))[^\d\n])"


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _counts(fact: Fact, kinds: Sequence[str], rules: Rules) -> bool:
    return fact.kind in kinds and (rules.count_stale_facts or not fact.stale)


def _evidence(fact: Fact, matched: str) -> Evidence:
    return Evidence(fact_id=fact.id, source=fact.source, matched=matched, stale=fact.stale)


def _value(fact: Fact) -> str:
    text = " ".join(fact.text.split())
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1].rstrip() + "…"


def _title_text(fact: Fact, company: str, rule: TitleRule) -> str | None:
    """The part of a fact a title rule reads: from a title column only, the company's name
    taken out ("Chief Labs" does not make everyone there an executive)."""
    if rule.source_columns:
        column = _key(fact.source.rsplit(":", 1)[-1])
        if column not in {_key(c) for c in rule.source_columns}:
            return None
    return fact.text.replace(company, " ") if company else fact.text


def _element(name: ElementName, facts: Sequence[Fact], company: str, rules: Rules) -> Element:
    rule = rules.rule(name)
    gate = any_of(rule.patterns)  # one scan says whether any of the rule's patterns is there
    found: list[tuple[Fact, str]] = []
    for fact in facts:
        if len(found) >= rules.max_evidence or not _counts(fact, rule.kinds, rules):
            continue
        if isinstance(rule, TitleRule):
            text = _title_text(fact, company, rule)
        else:
            assert isinstance(rule, TextRule)
            text = fact.text
        if text is None or (gate is not None and gate.search(text) is None):
            continue
        hit = next((m for p in rule.patterns if (m := p.search(text))), None)
        if hit is not None:
            found.append((fact, hit.group(0)))
    if not found:
        return Element(name=name)
    return Element(
        name=name,
        value=_value(found[0][0]),
        evidence=tuple(_evidence(f, m) for f, m in found),
    )


@lru_cache(maxsize=64)
def _figure_patterns(words: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """A signal's patterns, compiled once: for each word in turn, a number just before it and
    a number just after it."""
    each: list[re.Pattern[str]] = []
    for w in words:
        before = rf"{_NUM}\s*(?:[A-Za-z][\w-]*\s+){{0,2}}?(?<!\w)(?:{w})(?!\w)"
        after = rf"(?<!\w)(?:{w})(?!\w){_NO_STOP}{{0,30}}?{_NUM}"
        each += [re.compile(before, re.IGNORECASE), re.compile(after, re.IGNORECASE)]
    return tuple(each)


def _figure(text: str, rule: PqlRule) -> re.Match[str] | None:
    """The figure a fact gives for the signal: a number just before one of its words ("12 new
    sign-ups"), else just after it in the same sentence ("sign-ups: 12")."""
    gate = any_of(rule.patterns)
    if gate is not None and gate.search(text) is None:  # none of its words: no figure either
        return None
    for pattern in _figure_patterns(rule.words):
        if m := pattern.search(text):
            return m
    return None


def _number(m: re.Match[str]) -> float:
    n = float(m.group("num").replace(",", "").replace("\u2212", "-"))
    mult = (m.group("mult") or "").strip().lower()
    return n * {"k": 1_000, "m": 1_000_000}.get(mult, 1)


def _pql(rule: PqlRule, facts: Sequence[Fact], rules: Rules) -> PqlSignal:
    for fact in facts:
        if not _counts(fact, rule.kinds, rules):
            continue
        m = _figure(fact.text, rule)
        if m is None:
            continue
        number = _number(m)
        written = m.group("num") + (m.group("mult") or "").strip() + (m.group("pct") or "").strip()
        return PqlSignal(
            name=rule.name,
            label=rule.label,
            value=written,
            number=number,
            at_least=rule.at_least,
            met=number >= rule.at_least,
            evidence=(_evidence(fact, m.group(0)),),
        )
    return PqlSignal(name=rule.name, label=rule.label, at_least=rule.at_least)


def qualify(
    account: Account, contact: Contact | None, facts: Sequence[Fact], playbook: Playbook
) -> Qualification:
    """The card for one thread, from its research facts under the playbook's rules."""
    rules = playbook.qualification
    meddic = tuple(_element(n, facts, account.company, rules) for n in MEDDIC)
    pql = tuple(_pql(r, facts, rules) for r in rules.pql)
    score = sum(rules.rule(e.name).weight for e in meddic if e.known) + sum(
        r.weight for r, s in zip(rules.pql, pql, strict=True) if s.met
    )
    card = Qualification(
        contact=contact.name if contact is not None else "",
        meddic=meddic,
        pql=pql,
        score=score,
        max_score=rules.max_score,
    )
    assert card.fact_ids() <= {f.id for f in facts}, "a card cites only facts it was given"
    return card


def _list_research(account: Account, playbook: Playbook) -> list[Fact]:
    """The facts the account list alone gives (every contact's title and profile included),
    numbered and screened for injected instructions as research does."""
    # Imported here: research calls `qualify`, so a module-level import would be circular.
    from agents.research import list_facts

    patterns = playbook.guardrails.injection_patterns
    people = account.contacts or (Contact(name=""),)
    facts: list[Fact] = []
    seen: set[str] = set()
    for person in people:
        for kind, text, source, url in list_facts(account, person):
            if text in seen or find_injection(f"{text} {url or ''}", patterns) is not None:
                continue
            seen.add(text)
            facts.append(
                Fact(id=f"f{len(facts) + 1}", text=text, source=source, kind=kind, url=url)
            )
    return facts


def list_card(account: Account, playbook: Playbook) -> Qualification:
    """The card the account list alone gives, before any research: what ranking reads."""
    return qualify(account, None, _list_research(account, playbook), playbook)


@dataclass(frozen=True)
class Ranked:
    """One account's place in a run, and why."""

    account: Account
    tier: int | None
    card: Qualification
    position: int
    """Its place on the list as given: the last tie-breaker."""


def ranking(accounts: Sequence[Account], playbook: Playbook) -> list[Ranked]:
    """Every account with its tier and list card, best first: tier (1 first, none last), then
    the card's score, then list order. The same list gives the same order every time."""
    out = []
    for i, account in enumerate(accounts):
        match = playbook.tier_of(account)
        out.append(Ranked(account, match.tier if match else None, list_card(account, playbook), i))
    return sorted(
        out,
        key=lambda r: (r.tier is None, r.tier or 0, -r.card.score, r.position),
    )


def rank_accounts(accounts: Sequence[Account], playbook: Playbook) -> list[Account]:
    """The order a run should take its accounts in: `ranking`'s when the playbook turns ranking
    on (`qualification.rank_accounts`), else the list's own."""
    if not playbook.qualification.rank_accounts:
        return list(accounts)
    return [r.account for r in ranking(accounts, playbook)]
