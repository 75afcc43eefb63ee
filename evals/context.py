"""What a draft is judged against: its research, the playbook, who it is to and from, and the
other drafts of its batch. Every check in `evals.checks` takes one `CheckContext`."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from evals.text import Vocabulary, find_injection, norm
from gtm.domain.models import Account, CheckResult, Contact, Draft, Fact
from gtm.domain.playbook import Playbook

__all__ = ["Check", "CheckContext", "Peer"]


@dataclass(frozen=True)
class Peer:
    """Another draft of the same batch (campaign run), for the near-duplicate check."""

    label: str
    text: str
    cosine: float | None = None
    """Embedding similarity to the draft under review, when an embedder measured it."""


@dataclass(frozen=True)
class CheckContext:
    """Everything a draft is judged against: the research, the playbook, who it is for."""

    facts: Sequence[Fact]
    playbook: Playbook
    account: Account | None = None
    contact: Contact | None = None
    sender_name: str = ""
    sender_company: str = ""
    peers: Sequence[Peer] = field(default=())

    quarantined: Sequence[Fact] = field(default=())
    """Facts research kept from the writer because they carry instructions (never evidence)."""

    @cached_property
    def planted(self) -> dict[str, int]:
        """Facts that try to instruct the writer: id → where the injected part starts.

        They are data to flag, never evidence: no claim is supported by them."""
        found = {}
        for f in (*self.facts, *self.quarantined):
            hit = find_injection(f.text, self.playbook.guardrails.injection_patterns)
            if hit is not None:
                found[f.id] = hit[0]
        return found

    @cached_property
    def trusted_facts(self) -> tuple[Fact, ...]:
        return tuple(f for f in self.facts if f.id not in self.planted)

    @cached_property
    def fact_vocabulary(self) -> Vocabulary:
        return Vocabulary.of(f.text for f in self.trusted_facts)

    @cached_property
    def vocabulary(self) -> Vocabulary:
        """What the draft may claim: the facts plus who it is to and from."""
        a, c = self.account, self.contact
        return Vocabulary.of(
            [
                *(f.text for f in self.trusted_facts),
                *((a.company, a.domain, a.segment, a.description) if a else ()),
                *((c.name, c.title) if c else ()),
                self.sender_name,
                self.sender_company,
            ]
        )

    @cached_property
    def merge_fields(self) -> frozenset[str]:
        """Words a mail merge fills in: names and company. They do not make a draft specific."""
        parts = []
        if self.account:
            parts += [self.account.company, self.account.domain.split(".")[0]]
        if self.contact:
            parts.append(self.contact.name)
        parts += [self.sender_name, self.sender_company]
        return frozenset(norm(w) for p in parts for w in re.split(r"[\s\-.]+", p) if w)


Check = Callable[[Draft, CheckContext], CheckResult]
