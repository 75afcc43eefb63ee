"""What ends a sequence, and what lets a LinkedIn follow-up start: read from the event store.

One set of rules for the application, which checks them before re-entering a thread for its next
step, and for the send node, which checks them again right before the provider call (an event
may arrive while a follow-up waits for approval). An event counts when it names the person by
either identifier the contact has, or when it was matched to one of the thread's own sent
touches. Every event of the person counts, whichever campaign it answered: a follow-up that was
not sent is a lost message, one sent after a reply is the disaster the sequence must avoid.

A campaign that reaches several people of one account runs one coordinated sequence there:
`colleague_stop_reason` stops a person's thread when anyone else this campaign has written to at
the same account replied, opted out, bounced, booked or became an opportunity.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from gtm.domain.events import EventKind
from gtm.domain.models import Contact, OutboxEntry
from tools.events import EventStore, StoredEvent
from tools.outbox import Outbox

__all__ = [
    "STOPPING_KINDS",
    "stop_reason",
    "accepted_at",
    "thread_keys",
    "colleague_stop_reason",
]

STOPPING_KINDS: frozenset[EventKind] = frozenset(
    {"message_received", "email_reply", "bounce", "unsubscribe", "meeting_booked", "opportunity"}
)
"""Kinds of event that end a person's sequence at once. An auto-reply (out of office) does not;
a connection being accepted is what a LinkedIn follow-up waits for. An opportunity means a
deal is open: a person now handles the account, not a sequence."""

_SAID = {
    "message_received": "replied on LinkedIn",
    "email_reply": "replied by email",
    "bounce": "the email bounced",
    "unsubscribe": "opted out",
    "meeting_booked": "booked a meeting",
    "opportunity": "became a qualified opportunity",
}


def _events_of(
    store: EventStore, contact: Contact, keys: Iterable[str], kind: EventKind | None = None
) -> list[StoredEvent]:
    found: dict[str, StoredEvent] = {}
    for ident in (contact.email, contact.linkedin_url):
        if ident:
            for e in store.events(person=ident, kind=kind):
                found[e.event.key] = e
    for key in keys:
        for e in store.events(outbox_key=key, kind=kind):
            found[e.event.key] = e
    return sorted(found.values(), key=lambda e: e.event.at)


def thread_keys(outbox: Outbox, campaign: str, account_id: str, contact_key: str) -> list[str]:
    """The outbox keys of every action sent to this person in this account's thread."""
    sent = outbox.entries(
        campaign=campaign, state="sent", account_id=account_id, contact_key=contact_key
    )
    return [e.key for e in sent]


def stop_reason(store: EventStore, contact: Contact, keys: Iterable[str]) -> str | None:
    """Why this person's sequence must stop, naming the first event that says so; None if
    nothing has. `keys` are the outbox keys of the thread's sent touches."""
    for e in _events_of(store, contact, keys):
        if e.event.kind in STOPPING_KINDS:
            return (
                f"{contact.name} {_SAID[e.event.kind]} on {e.event.at:%Y-%m-%d %H:%M} UTC "
                f"(event {e.event.key[:40]})"
            )
    return None


def accepted_at(store: EventStore, contact: Contact, keys: Iterable[str]) -> datetime | None:
    """When the person accepted the connection request, if they have (the earliest event)."""
    found = _events_of(store, contact, keys, kind="connection_accepted")
    return found[0].event.at if found else None


def colleague_stop_reason(
    store: EventStore | None, entries: Iterable[OutboxEntry], account_id: str, contact_key: str
) -> str | None:
    """Why a person's sequence at `account_id` must stop because of a colleague; None if no one.

    `entries` are the campaign's outbox entries (any state: one `unknown` may have reached the
    person). A colleague is anyone else an entry at this account was for; an event counts when
    it answers one of their entries or names them by the address or key the entry holds, as
    `stop_reason` counts a person's own. With colleagues and no event store to ask, the answer
    is a stop: a message is not sent blind.
    """
    theirs = [e for e in entries if e.account_id == account_id and e.contact_key != contact_key]
    if not theirs:
        return None
    if store is None:
        return "a colleague at this account was written to and there is no event store to check"
    found: dict[str, StoredEvent] = {}
    people = dict.fromkeys(
        p for e in theirs for p in (e.touch.recipient, e.contact_key) if p and p.strip()
    )
    for person in people:
        for ev in store.events(person=person):
            found[ev.event.key] = ev
    for e in theirs:
        for ev in store.events(outbox_key=e.key):
            found[ev.event.key] = ev
    for ev in sorted(found.values(), key=lambda x: x.event.at):
        if ev.event.kind in STOPPING_KINDS:
            # No address in the line: it lands in the ledger, which erasure does not rewrite.
            return (
                f"a colleague at this account {_SAID[ev.event.kind]} on "
                f"{ev.event.at:%Y-%m-%d %H:%M} UTC (event {ev.event.key[:40]})"
            )
    return None
