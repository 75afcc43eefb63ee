"""What comes back after a touch: events, the raw material of sequences, escalations and the
funnel.

An event arrives from a channel (a Dux-Soup webhook, a mailbox, or a person adding it by hand to
the local twins) and carries an idempotency key from its source, so ingesting it twice changes
nothing. It names the person as the channel does; matching it to the touch it answers is the
application's job, and an event that matches no sent touch is listed as unmatched, never
guessed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gtm.domain.models import Channel

__all__ = ["Event", "EventKind", "EventSource", "ReplySignal", "REPLY_SIGNALS"]

EventKind = Literal[
    "connection_accepted",
    "message_received",
    "email_reply",
    "auto_reply",
    "bounce",
    "unsubscribe",
    "meeting_booked",
    "opportunity",
]
"""What happened. A reply, message, bounce, unsubscribe, meeting or opportunity stops the
person's sequence at once; an auto-reply does not, and `connection_accepted` lets a LinkedIn
sequence go on. `opportunity` is a qualified opportunity (added by hand with `gtm events add`
or the drop folder, later from a CRM): there is a deal, so no automated follow-up may go out;
the funnel counts it per month."""

EventSource = Literal["duxsoup", "imap", "local", "web"]
"""Where an event came from; `web` is this installation's own receiver (one-click unsubscribe)."""

ReplySignal = Literal[
    "interested",
    "meeting_request",
    "not_now",
    "not_interested",
    "referral",
    "question",
    "out_of_office",
    "product_feedback",
    "competitor_mentioned",
    "opt_out",
]
"""The playbook's reply signals; one reply may carry several (interested and a question)."""

REPLY_SIGNALS: tuple[ReplySignal, ...] = ReplySignal.__args__  # type: ignore[attr-defined]


class Event(BaseModel):
    """One thing a channel reported about a person we reached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(
        min_length=1,
        description="Idempotency key from the source: webhook event id, email Message-ID, or "
        "a hash of a hand-added event. The same key twice is one event.",
    )
    source: EventSource
    kind: EventKind
    channel: Channel
    at: datetime = Field(description="When it happened, as the source says (UTC).")
    email: str | None = Field(default=None, description="The person's address, for email.")
    linkedin_url: str | None = Field(default=None, description="Their profile, for LinkedIn.")
    in_reply_to: tuple[str, ...] = Field(
        default=(),
        description="Message-IDs this email answers (In-Reply-To, then References).",
    )
    subject: str | None = None
    text: str = Field(
        default="", description="What the person wrote: the new text only, no quoted thread."
    )
