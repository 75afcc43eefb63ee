"""Graph state: what one account thread carries from intake to record.

Input, working and output state are separate types. Every field is replaced by the node that
writes it, except `events`, which accumulates (explicit `operator.add` reducer).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated

from gtm.domain.models import (
    Account,
    AccountStatus,
    Channel,
    Contact,
    Decision,
    Draft,
    Fact,
    Review,
    SkipReason,
)
from gtm.domain.playbook import TierMatch
from gtm.domain.qualification import Qualification

__all__ = ["InputState", "State", "OutputState"]


@dataclass(kw_only=True)
class InputState:
    """What a batch run hands each thread."""

    campaign: str
    """Campaign name; part of every idempotency key."""
    channel: Channel
    """Channel of the first touch."""
    account: Account
    """The account, with its contacts and list signals."""


@dataclass(kw_only=True)
class OutputState:
    """What a finished (or paused) thread reports."""

    status: AccountStatus = "queued"
    """Where the thread stands."""
    skip_reason: SkipReason | None = None
    """Why it ended without a send, if it did."""
    skip_detail: str = ""
    """One human-readable line behind the reason."""
    draft: Draft | None = None
    """The current draft (after any human edit)."""
    decision: Decision | None = None
    """The reviewer's decision, once made."""
    sent_keys: list[str] = field(default_factory=list)
    """Outbox keys of the actions performed."""


@dataclass(kw_only=True)
class State(InputState, OutputState):
    """Working state of one account thread."""

    tier: TierMatch | None = None
    """The playbook tier the account matched."""
    contact: Contact | None = None
    """The person this thread writes to (the first reachable, unsuppressed contact)."""
    facts: list[Fact] = field(default_factory=list)
    """Research facts; a draft may cite only these."""
    quarantined: list[Fact] = field(default_factory=list)
    """Research text that tries to instruct the writer: never shown to it, checked by review."""
    qualification: Qualification | None = None
    """The MEDDIC and PQL card research filled from `facts` (`agents.qualify`); None before
    research, and in threads checkpointed before the card existed."""
    review: Review | None = None
    """Guardrail verdicts on the current draft."""
    revisions: int = 0
    """Automatic rewrites so far for the current draft."""
    flagged: bool = False
    """The draft still fails a guardrail after the last rewrite: the reviewer is warned."""
    instructions: str = ""
    """What the next rewrite must change (from review findings or a human)."""
    sequence_position: int = 0
    """Which step of the playbook's sequence this thread is on: 0 is the first touch, 1 the
    first follow-up. Part of every idempotency key after the first touch."""
    earlier_cited: list[str] = field(default_factory=list)
    """The texts of the facts earlier touches of this sequence cited: a follow-up must cite
    something else too (`evals.followups.cites_something_new`)."""
    events: Annotated[list[str], operator.add] = field(default_factory=list)
    """Audit trail, one line per step."""
