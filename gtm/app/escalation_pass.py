"""The passes over what came back: every event is looked at once by each.

1. `apply_rules` (no model; every ingest runs it on what it took in): an `unsubscribe` event, or
   a reply whose text or subject the playbook's opt-out phrases match, suppresses the person at
   once under every identifier we know (the event's address and profile, the contact key of the
   touch it answers). A `bounce` suppresses that address only: the Event carries no hard/soft
   distinction, so every bounce is taken as hard, and it is no opt-out, so other channels stay.
2. `escalate_pending` (`gtm escalations run`): each reply is classified with the model
   (`evals.reply_classifier`), the person, tier and owner are looked up (the thread the event
   answers, with several people per account the one whose person the touch went to, then the
   CRM), and `gtm.app.escalations.escalate` acts on it. Opened without a model, a reply the
   rules call an opt-out is escalated on the rules' verdict (a model could add nothing an
   opt-out acts on); any other reply waits for a pass with a model.

Which events passed which stage is kept in `tools.escalations`, so neither pass acts twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evals.replies import ClassifiedReply, SignalEvidence, classify
from evals.reply_classifier import classify_reply
from gtm.app.checkpoints import thread_values
from gtm.app.contact_slots import MAX_SLOTS
from gtm.app.escalations import (
    REPLY_KINDS,
    escalate,
    headers_of,
    open_store,
    suppress_person,
)
from gtm.app.workspace import ModelNotStarted, Workspace
from gtm.domain.events import Event
from gtm.domain.identity import profile_url
from gtm.domain.models import Contact, OutboxEntry
from gtm.domain.playbook import Playbook
from gtm.domain.threads import thread_id_for
from tools.escalations import Escalation
from tools.events import StoredEvent

__all__ = ["PendingReport", "apply_rules", "escalate_pending"]


def _unsubscribed(event: Event) -> ClassifiedReply:
    """An `unsubscribe` event is an opt-out by itself, whatever it says."""
    quote = f"{event.source} unsubscribe event"
    return ClassifiedReply(
        text=event.text,
        signals=("opt_out",),
        evidence=(SignalEvidence(signal="opt_out", quote=quote, source="rule"),),
        opt_out_by="rule",
    )


def _not_through(ws: Workspace, done: set[str]) -> list[StoredEvent]:
    """The events no pass of a stage has taken (`done`: the keys that passed it), oldest first.
    Each tick of `gtm serve` runs both passes: they read the events' keys (one query, nothing
    validated) and load only the events left, instead of loading the whole history to skip
    nearly all of it (at 10,000 events: 178 ms a load, three loads a tick)."""
    return [s for k in ws.events.keys() if k not in done and (s := ws.events.get(k)) is not None]


def apply_rules(ws: Workspace, keys: Sequence[str] | None = None) -> int:
    """The deterministic pass over events not yet through it (only those of `keys`, when
    given): opt-outs and bounces suppress at once, with or without a model. Returns how many
    events it suppressed someone for."""
    n = 0
    with open_store(ws) as store:
        done = store.stage_done("rules")
        if keys is None:
            todo = _not_through(ws, done)
        else:
            todo = [s for k in dict.fromkeys(keys) if (s := ws.events.get(k)) is not None]
        for stored in todo:
            ev = stored.event
            if ev.key in done:
                continue
            entry = ws.deps.outbox.get(stored.outbox_key) if stored.outbox_key else None
            key = entry.contact_key if entry else None
            note = ""
            if ev.kind == "unsubscribe":
                note = "opt-out"
            elif (
                ev.kind in REPLY_KINDS
                and classify(ev.text, headers_of(ev), None, ws.playbook).opt_out_by
            ):
                note = "opt-out by rule"
            if note:
                suppress_person(ws, ev, None, reason=f"opted out ({ev.kind} {ev.key})", key=key)
                n += 1
            elif ev.kind == "bounce" and ev.email:
                ws.deps.suppressions.add_person(
                    email=ev.email, linkedin_url=None, person_key=None,
                    reason=f"bounced ({ev.key})",
                )  # fmt: skip
                note, n = "bounce", n + 1
            store.mark_stage(ev.key, "rules", note)
    return n


@dataclass
class PendingReport:
    """What one `escalate_pending` pass did."""

    events: int = 0
    escalations: list[Escalation] = field(default_factory=list)
    waiting_for_model: int = 0
    """Replies left for a pass with a model (this workspace was opened without one)."""
    errors: list[str] = field(default_factory=list)


def _is_for(contact: Contact | None, entry: OutboxEntry) -> bool:
    """The thread's person is the one this outbox entry went to: by the contact key, or by the
    address the entry records (`touch.recipient`)."""
    if contact is None:
        return False
    if contact.key == entry.contact_key:
        return True
    sent_to = (entry.touch.recipient or "").strip().lower()
    mine = {(contact.email or "").strip().lower()}
    if contact.linkedin_url:
        mine.add(profile_url(contact.linkedin_url) or contact.linkedin_url.strip().lower())
    return bool(sent_to) and sent_to in mine


async def _thread_of(ws: Workspace, entry: OutboxEntry) -> tuple[str, dict[str, Any]]:
    """The thread of `entry`'s account in its campaign that writes to the person the entry went
    to, with its checkpoint values: with several people per account that may be any slot's
    (`campaign:account#2`...). The account's first thread when none names the person."""
    first = thread_id_for(entry.campaign, entry.account_id)
    first_values = await thread_values(ws, first)
    if _is_for(first_values.get("contact"), entry):
        return first, first_values
    for slot in range(1, MAX_SLOTS):
        tid = thread_id_for(entry.campaign, entry.account_id, slot)
        values = await thread_values(ws, tid)
        if _is_for(values.get("contact"), entry):
            return tid, values
    return first, first_values


async def _context(
    ws: Workspace, stored: StoredEvent
) -> tuple[Contact | None, int | None, str, str | None, str, Playbook]:
    """Who the event is about: contact, tier, owner, account and company, and the playbook of
    the campaign it answers; from the thread it answers first, then the CRM."""
    ev = stored.event
    entry = ws.deps.outbox.get(stored.outbox_key) if stored.outbox_key else None
    contact: Contact | None = None
    tier: int | None = None
    owner: str | None = None
    account_id: str | None = None
    company = ""
    pb = ws.playbook
    if entry is not None:
        pb, account_id = ws.playbook_for(entry.campaign), entry.account_id
        tid, values = await _thread_of(ws, entry)
        if (row := ws.ledger.get(tid)) is not None:
            tier, company = row.tier, row.company
        if (account := values.get("account")) is not None:
            owner, company = account.owner, company or account.company
            if tier is None and (hit := pb.tier_of(account)) is not None:
                tier = hit.tier
        if _is_for(c := values.get("contact"), entry):
            contact = c  # the thread's person, only when it is the one this touch went to
    probe = contact or Contact(name="", email=ev.email, linkedin_url=ev.linkedin_url)
    record = await ws.deps.crm.find_contact(probe)
    if record is not None and (contact is None or not contact.title):
        contact = Contact(
            name=record.name or probe.name,
            title=record.title or probe.title,
            email=probe.email or record.email,
            linkedin_url=probe.linkedin_url or record.linkedin_url,
        )
    if owner is None and account_id:
        found = await ws.deps.crm.find_company(account_id)
        owner = found.owner if found else None
    return contact, tier, owner or pb.escalations.default_owner, account_id, company, pb


async def escalate_pending(ws: Workspace) -> PendingReport:
    """Classify and escalate every event not yet escalated. Replies need the model: opened
    without one, they wait (their opt-out rules already ran in `apply_rules`)."""
    apply_rules(ws)
    report = PendingReport()
    no_model = isinstance(ws.deps.model, ModelNotStarted)
    with open_store(ws) as store:
        done = store.stage_done("escalated")
    for stored in _not_through(ws, done):
        ev = stored.event
        classified: ClassifiedReply | None = None
        if ev.kind == "unsubscribe":
            classified = _unsubscribed(ev)
        elif ev.kind in REPLY_KINDS:
            by_rule = classify(ev.text, headers_of(ev), None, ws.playbook)
            if no_model and by_rule.opt_out_by:
                classified = by_rule  # a model could add nothing an opt-out would act on
            elif no_model:
                report.waiting_for_model += 1
                continue
            else:
                try:
                    classified = await classify_reply(
                        ws.deps.model, ev.text, headers=headers_of(ev), playbook=ws.playbook
                    )
                except Exception as exc:  # noqa: BLE001 - the event waits for the next pass
                    report.errors.append(f"{ev.key}: classifying failed: {type(exc).__name__}")
                    continue
        if classified is not None:
            try:
                contact, tier, owner, account_id, company, pb = await _context(ws, stored)
            except Exception as exc:  # noqa: BLE001 - the CRM is down: try again next pass
                report.errors.append(f"{ev.key}: looking up the person failed: {exc}")
                continue
            report.escalations += await escalate(
                ws, ev, classified, contact=contact, account_tier=tier, owner=owner,
                account_id=account_id, company=company, playbook=pb,
            )  # fmt: skip
        with open_store(ws) as store:
            store.mark_stage(
                ev.key, "escalated", ",".join(classified.signals) if classified else ""
            )
        report.events += 1
    return report
