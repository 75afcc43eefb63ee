"""Domain models: what the pipeline reads, produces and decides.

Pure pydantic, no I/O. Every other layer (tools, memory, evals, agents, the CLI) speaks in
these types, so they are the one place where the shape of an account, a fact or a draft is
defined.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Account",
    "AccountStatus",
    "Channel",
    "CheckResult",
    "Contact",
    "Decision",
    "DecisionAction",
    "Draft",
    "Fact",
    "FactKind",
    "OutboxEntry",
    "TouchFacts",
    "OutboxState",
    "Receipt",
    "Review",
    "SkipReason",
    "Step",
    "Touch",
    "idempotency_key",
]

Channel = Literal["linkedin", "email"]
"""The two outreach channels. LinkedIn's first touch is a connection request with a note."""

Step = Literal["linkedin_visit", "linkedin_connect", "linkedin_message", "email"]
"""One provider action. A LinkedIn first touch is a visit followed by a connect."""

SkipReason = Literal[
    "out_of_tier",
    "suppressed",
    "customer",
    "open_deal",
    "competitor",
    "cooldown",
    "duplicate",
    "no_reachable_contact",
    "rejected",
    "erased",
    "sequence_stopped",
    "recent_activity",
]
"""Why an account ends without a send. Every skip records one of these plus a detail line."""

AccountStatus = Literal[
    "queued",
    "running",
    "waiting_for_approval",
    "sent",
    "skipped",
    "rejected",
    "failed",
    "deferred",
]
"""Where an account thread stands; `waiting_for_approval` is paused at the human step."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Contact(_Model):
    """One person at an account, as given in the account list."""

    name: str = Field(description="Full name as it should appear in a greeting.")
    title: str = Field(default="", description="Job title; decides escalations (VP and above).")
    linkedin_url: str | None = Field(default=None, description="Public profile URL.")
    email: str | None = Field(default=None, description="Work email address.")
    row: int | None = Field(default=None, description="CSV line the contact came from.")
    profile: tuple[Fact, ...] = Field(
        default=(),
        description="What the user's own tools say about this person (a LinkedIn headline or "
        "summary from a Dux-Soup or Sales Navigator export, the list's notes): facts about this "
        "contact only, each with its 'file:row:column' source.",
    )

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.split() else self.name

    @property
    def key(self) -> str:
        """Stable identity of the person across channels (email first, then profile URL)."""
        return (self.email or self.linkedin_url or self.name).strip().lower()


class Account(_Model):
    """One company on an account list, with its contacts and the signals the list carries."""

    account_id: str = Field(description="Stable id: the company's domain, lower-cased.")
    company: str = Field(description="Company name.")
    domain: str = Field(description="Primary web domain, e.g. 'acme.ai'.")
    website: str | None = Field(default=None, description="Homepage URL, if given.")
    segment: str = Field(default="", description="What the company does, in the list's words.")
    description: str = Field(default="", description="One or two sentences about the company.")
    signals: tuple[str, ...] = Field(
        default=(), description="Buying or usage signals, one short statement each."
    )
    tech_stack: tuple[str, ...] = Field(default=(), description="Known tools, e.g. 'Pinecone'.")
    open_source_user: bool = Field(
        default=False, description="Uses our open-source product: first touch must not pitch."
    )
    event: str | None = Field(default=None, description="Event where we met them, if any.")
    owner: str | None = Field(default=None, description="Account owner to notify.")
    contacts: tuple[Contact, ...] = Field(default=(), description="People, in list order.")
    source: str = Field(default="", description="Where the account came from (file name).")
    rows: tuple[int, ...] = Field(default=(), description="CSV lines that made this account.")
    facts: tuple[Fact, ...] = Field(
        default=(),
        description="Cells of columns the user marked as facts (a --map file), each with its "
        "'file:row:column' source.",
    )


FactKind = Literal["company", "person", "signal", "history", "event", "website"]


class Fact(_Model):
    """A research finding a message may cite. Facts without a source do not exist."""

    id: str = Field(description="Short id unique within one account's research, e.g. 'f3'.")
    text: str = Field(description="The fact, in one sentence, as specific as the source allows.")
    source: str = Field(description="Where it came from: 'accounts.csv:4:signals', 'crm:…', URL.")
    kind: FactKind = "company"
    url: str | None = Field(
        default=None,
        description="A link where a person can check the fact, if its source gave one.",
    )
    cited_before: bool = Field(
        default=False,
        description="An earlier touch of this thread's sequence cited it: a follow-up must "
        "cite something else too.",
    )
    quote: str | None = Field(
        default=None,
        description="The sentence of the page at `url` the fact was taken from, verbatim.",
    )
    fetched_at: datetime | None = Field(
        default=None, description="When the page at `url` was fetched (website facts)."
    )
    published: date | None = Field(
        default=None, description="The date the page states, if it states one."
    )
    stale: bool = Field(
        default=False,
        description="Published longer ago than the playbook's freshness limit: not news.",
    )


class Draft(_Model):
    """A message written for one contact on one channel."""

    channel: Channel
    step: Step = Field(description="The provider action that would deliver it.")
    subject: str | None = Field(default=None, description="Email subject; None on LinkedIn.")
    body: str = Field(description="The message text exactly as it would be sent.")
    cited_fact_ids: tuple[str, ...] = Field(default=(), description="Facts the writer used.")
    prompt_version: str = Field(description="'name@version' of the prompt that produced it.")
    model: str = Field(description="Model that produced it, or 'human' for an edit.")


class CheckResult(_Model):
    """One guardrail's verdict on one draft."""

    check: str = Field(description="Check name, e.g. 'banned_phrases'.")
    passed: bool
    score: float = Field(ge=0.0, le=1.0, description="1.0 is best.")
    finding: str = Field(default="", description="What is wrong, quoting the offending span.")
    spans: tuple[str, ...] = Field(default=(), description="Offending text spans, verbatim.")
    instruction: str = Field(default="", description="What the writer should change.")


class Review(_Model):
    """All guardrail verdicts for one draft, and what to do next."""

    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def instructions(self) -> list[str]:
        return [r.instruction or r.finding for r in self.failures]


DecisionAction = Literal["approve", "edit", "reject", "regenerate"]


class Decision(_Model):
    """A reviewer's answer to a pending draft; the value the graph resumes with."""

    action: DecisionAction
    text: str | None = Field(default=None, description="Edited body (action 'edit').")
    subject: str | None = Field(default=None, description="Edited email subject, optional.")
    reason: str | None = Field(default=None, description="Why it was rejected.")
    instructions: str | None = Field(default=None, description="What to change on regenerate.")
    reviewer: str = Field(default="unknown", description="Who decided.")
    at: datetime = Field(description="When the decision was made (UTC).")


OutboxState = Literal["pending", "sent", "failed", "unknown"]


class TouchFacts(_Model):
    """The facts of one touch that the outbox keeps beside its key (all optional: rows written
    before they were kept have none)."""

    recipient: str | None = Field(
        default=None,
        description="The address the action went to: the canonical profile URL on LinkedIn, "
        "the email address by email. Replies and accepts are matched by it.",
    )
    position: int = Field(default=0, ge=0, description="Sequence position: 0 the first touch.")
    tier: int | None = Field(default=None, description="The account's tier when it was sent.")
    prompt_version: str | None = Field(default=None, description="'name@version' that wrote it.")
    genericness: float | None = Field(
        default=None, ge=0, le=1, description="Review's genericness score of the sent text."
    )
    verdict: Literal["clean", "findings"] | None = Field(
        default=None,
        description="`clean`: every guardrail passed; `findings`: approved despite findings.",
    )


class OutboxEntry(_Model):
    """One provider action, recorded before it is attempted so it can never happen twice."""

    key: str = Field(description="Idempotency key, see `idempotency_key`.")
    campaign: str
    account_id: str
    contact_key: str
    step: Step
    channel: Channel
    sender: str = Field(description="Sender seat (LinkedIn seat or email address).")
    state: OutboxState
    provider_id: str | None = Field(default=None, description="Provider's id for the action.")
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    touch: TouchFacts = Field(default_factory=TouchFacts)
    """What was sent, to whom, and how it was judged: what events are matched by and what the
    funnel is broken down by. Empty on rows recorded before it was kept."""


def idempotency_key(
    campaign: str, account_id: str, contact_key: str, step: Step, position: int = 0
) -> str:
    """The one key under which an action may exist: campaign, account, contact, step, and the
    step's position in the playbook's sequence (0: the first touch, 1: the first follow-up...).

    The channel is implied by the step, so it is part of the key through it. The first touch's
    key is exactly what it was before sequences existed, so existing outboxes keep their meaning.
    """
    if position < 0:
        raise ValueError(f"a sequence position is 0 or more, not {position}")
    parts = (campaign, account_id, contact_key, step) + ((str(position),) if position else ())
    raw = "\x1f".join(parts)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class Touch(_Model):
    """An earlier interaction with an account, as memory remembers it."""

    account_id: str
    kind: Literal["fact", "draft", "decision", "send", "skip", "note"]
    text: str
    at: datetime
    campaign: str = ""
    contact: str = Field(default="", description="Who it concerned (name), if a person.")
    channel: str = ""


class Receipt(_Model):
    """What a provider returned for an action."""

    provider_id: str = Field(description="Provider's id: message id, queue id, activity id.")
    detail: str = ""
