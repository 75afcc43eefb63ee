"""Escalations, as the playbook says: what comes back reaches a human where they work.

`decide` reads the playbook's rules for one classified event (who wrote, from which tier, what
they said); `escalate` carries each escalation out: an alert to the owner, a CRM task due
`due_hours` after the reply, a memory note and a CRM note, suppression on every channel plus the
CRM opt-out write-back. Each is stored once per (event, signal, action) in `tools.escalations`
before it is acted on and marked acted after, so a re-run changes nothing and a crash in between
is finished by the next pass (at worst one alert twice, never none). A side effect that fails
is written on the escalation, which stays open for a human; the others still happen.

What is left for a human is listed by `needs_human` (`gtm inbox`, the web queue,
`gtm escalations list`) with the time left on its deadline; `mark_done` closes one. The passes
that feed this module from the event store are in `gtm.app.escalation_pass`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, cast

from evals.replies import ClassifiedReply
from gtm.app.workspace import Workspace
from gtm.domain.events import Event
from gtm.domain.models import Contact, Touch
from gtm.domain.playbook import EscalationRule, Playbook
from tools.crm import Activity, Task
from tools.escalations import Escalation, EscalationStore
from tools.events import person_of

__all__ = [
    "REPLY_KINDS",
    "decide",
    "escalate",
    "headers_of",
    "mark_done",
    "needs_human",
    "open_store",
    "suppress_person",
    "time_left",
]

log = logging.getLogger("gtm.escalations")

REPLY_KINDS = frozenset({"email_reply", "message_received"})
"""Events whose text a person wrote to us: classified, and counted as replies."""
_INTEREST = frozenset({"interested", "meeting_request"})
_QUOTE_CHARS = 200


def open_store(ws: Workspace) -> EscalationStore:
    """The workspace's escalations, next to its events; close it after use: tables in
    `events.sqlite`, or with `GTM_DATABASE_URL` in the database (on the workspace's pool when
    it has one), so workers on several machines escalate one reply once between them."""
    if ws.settings.database_url is None:
        return EscalationStore(ws.settings.path("events.sqlite"), clock=ws.deps.clock)
    from tools.pg_escalations import PgEscalationStore

    db = ws.database or ws.settings.database_url.get_secret_value()
    # It answers EscalationStore's methods one for one (tests/test_feedback_backends.py).
    return cast(EscalationStore, PgEscalationStore(db, clock=ws.deps.clock))


def headers_of(event: Event) -> dict[str, str]:
    """The headers the reply rules read that an Event keeps: its subject."""
    return {"Subject": event.subject} if event.subject else {}


def decide(
    playbook: Playbook,
    event: Event,
    classified: ClassifiedReply,
    *,
    title: str,
    account_tier: int | None,
) -> list[EscalationRule]:
    """The playbook's rules that apply to this event, in the playbook's order. An opt-out
    raises no follow-up (no alert to chase them, no meeting task): only its suppression and
    the recording of feedback or a competitor it names. An automatic reply is no reply."""
    signals = set(classified.signals)
    raised: set[str] = {s for s in ("product_feedback", "competitor_mentioned") if s in signals}
    if "opt_out" in signals:
        raised.add("opt_out")
    else:
        replied = event.kind in REPLY_KINDS and signals != {"out_of_office"}
        if replied and title and playbook.escalations.is_senior(title):
            raised.add("senior_reply")
        if account_tier == 1 and signals & _INTEREST:
            raised.add("tier1_interest")
        if "meeting_request" in signals:
            raised.add("meeting_request")
    return [r for r in playbook.escalations.rules if r.signal in raised]


def _evidence(classified: ClassifiedReply, signal: str) -> str:
    want = {"senior_reply": "", "tier1_interest": "interested"}.get(signal, signal)
    quotes = [e.quote for e in classified.evidence if not want or e.signal == want]
    if not quotes and signal == "tier1_interest":
        quotes = [e.quote for e in classified.evidence if e.signal == "meeting_request"]
    text = quotes[0] if quotes else classified.text
    return text[:_QUOTE_CHARS]


async def _attempt(what: str, work: Awaitable[Any], notes: list[str]) -> Any:
    """Run one side effect; a failure is noted (the escalation stays open) and the others go
    on, because one provider being down must not hold back the rest."""
    try:
        return await work
    except Exception as exc:  # noqa: BLE001 - recorded on the escalation for a human
        log.warning("escalation: %s failed: %s", what, exc)
        notes.append(f"{what} FAILED: {type(exc).__name__}: {str(exc)[:200]}")
        return None


def _inert(text: str) -> str:
    """An alert's text with no `<...>` control sequences: Slack reads `<!channel>` or
    `<@U123>` in a message as a mention, and a reply's words must not page anyone."""
    return text.replace("<", "‹").replace(">", "›")


def _failed(notes: list[str]) -> bool:
    return any("FAILED" in n for n in notes)


async def _act(
    ws: Workspace,
    rule: EscalationRule,
    esc: Escalation,
    event: Event,
    classified: ClassifiedReply,
    contact: Contact | None,
    account_id: str | None,
) -> tuple[str, str | None]:
    """Carry out one escalation; returns what it did and who closed it (None: left open)."""
    deps, notes = ws.deps, list[str]()
    probe = contact or Contact(name="", email=event.email, linkedin_url=event.linkedin_url)
    who = f"{esc.contact} at {esc.company}" if esc.company else esc.contact
    say = _inert(f'{esc.owner}: {rule.description} {who} ({event.kind}): "{esc.evidence}"')
    if rule.action in ("alert_owner_now", "notify_owner", "create_task"):
        if rule.action == "create_task" and esc.due_at is None:
            notes.append("the playbook rule gives no due_hours: no CRM task")
        elif rule.action == "create_task" and esc.due_at is not None:
            company = None
            if account_id:
                company = await _attempt("CRM lookup", deps.crm.find_company(account_id), notes)
            if company is None:
                notes.append("no CRM company for this account: create the task by hand")
            else:
                record = await _attempt("CRM lookup", deps.crm.find_contact(probe), notes)
                task = Task(
                    key=f"escalation:{esc.key}",
                    company_id=company.id,
                    contact_id=record.id if record else None,
                    title=f"Book the meeting {esc.contact} asked for",
                    due_at=esc.due_at,
                    owner=esc.owner,
                )
                if (
                    tid := await _attempt("CRM task", deps.crm.create_task(task), notes)
                ) is not None:
                    notes.append(f"CRM task {tid} due {esc.due_at:%Y-%m-%d %H:%M} UTC")
        if deps.alerts is None:
            notes.append("no alert channel configured: shown in the inbox only")
        else:
            before = len(notes)
            await _attempt("alert", deps.alerts.alert("escalation", say), notes)
            if len(notes) == before:
                notes.append(f"alerted {esc.owner}")
        return "; ".join(notes), None
    if rule.action == "record":
        text = f"{rule.signal.replace('_', ' ')} from {esc.contact}: {esc.evidence}"
        if account_id:
            touch = Touch(
                account_id=account_id, kind="note", text=text, at=event.at,
                contact=contact.name if contact else "", channel=event.channel,
            )  # fmt: skip
            key = f"escalation:{esc.key}"
            await _attempt("memory note", deps.memory.remember(touch, key=key), notes)
            company = await _attempt("CRM lookup", deps.crm.find_company(account_id), notes)
            if company is not None:
                record = await _attempt("CRM lookup", deps.crm.find_contact(probe), notes)
                note = Activity(
                    key=key, company_id=company.id, contact_id=record.id if record else None,
                    kind="note", subject=rule.signal, body=text, at=event.at,
                )  # fmt: skip
                await _attempt("CRM note", deps.crm.log_activity(note), notes)
            if not _failed(notes):
                notes.append("recorded in memory" + (" and the CRM" if company else ""))
        else:
            notes.append("no account matched: not recorded in memory or the CRM")
        return "; ".join(notes), None
    # suppress_everywhere
    n = suppress_person(ws, event, contact, reason=f"opted out ({event.kind} {event.key})")
    notes.append(f"suppressed under {n} identifier(s)")
    written = await _attempt("CRM opt-out", deps.crm.mark_opted_out(probe), notes)
    if written is not None:
        notes.append("CRM opt-out written" if written else "the CRM holds no opt-out for them")
    if classified.opt_out_by == "model":
        notes.append("only the model read an opt-out here: suppressed to be safe, please check")
        return "; ".join(notes), None
    return "; ".join(notes), (None if _failed(notes) else "automatic")


def suppress_person(
    ws: Workspace, event: Event, contact: Contact | None, *, reason: str, key: str | None = None
) -> int:
    """Every identifier the event and the contact give, on the do-not-contact list."""
    n = ws.deps.suppressions.add_person(
        email=event.email, linkedin_url=event.linkedin_url, person_key=key, reason=reason
    )
    if contact is not None:
        n += ws.deps.suppressions.add_person(
            email=contact.email,
            linkedin_url=contact.linkedin_url,
            person_key=contact.key,
            reason=reason,
        )
    return n


async def escalate(
    ws: Workspace,
    event: Event,
    classified: ClassifiedReply,
    *,
    contact: Contact | None,
    account_tier: int | None,
    owner: str,
    account_id: str | None = None,
    company: str = "",
    playbook: Playbook | None = None,
) -> list[Escalation]:
    """Decide from the playbook which escalations `event` raises and carry them out, once:
    an escalation already stored and acted on is returned as it is, unchanged."""
    pb = playbook or ws.playbook
    title = contact.title if contact else ""
    who = (contact.name if contact and contact.name else person_of(event)) or "someone"
    who = f"{who}, {title}" if title else who
    out: list[Escalation] = []
    with open_store(ws) as store:
        for rule in decide(pb, event, classified, title=title, account_tier=account_tier):
            due = event.at + timedelta(hours=rule.due_hours) if rule.due_hours else None
            esc, _ = store.add(
                event_key=event.key,
                signal=rule.signal,
                action=rule.action,
                person=person_of(event) or "",
                contact=who,
                company=company,
                owner=owner,
                evidence=_evidence(classified, rule.signal),
                due_at=due,
            )
            if esc.acted_at is None:
                outcome, closed_by = await _act(
                    ws, rule, esc, event, classified, contact, account_id
                )
                store.acted(esc.id, outcome, done_by=closed_by)
                esc = store.get(esc.id) or esc
            out.append(esc)
    return out


def needs_human(ws: Workspace, *, include_done: bool = False) -> list[Escalation]:
    """Open escalations, nearest deadline first (all of them with `include_done`)."""
    with open_store(ws) as store:
        return store.listing(include_done=include_done)


def mark_done(ws: Workspace, esc_id: int, by: str) -> Escalation | None:
    """A human handled escalation `esc_id`; None when there is no such escalation."""
    with open_store(ws) as store:
        return store.mark_done(esc_id, by)


def time_left(esc: Escalation, now: datetime) -> str:
    """The deadline as a person reads it: `due in 47h 5m` (days past three days),
    `overdue by 2h 0m`, `no deadline`."""
    left = esc.time_left(now)
    if esc.done:
        return "done"
    if left is None:
        return "no deadline"
    minutes = int(abs(left).total_seconds() // 60)
    span = (
        f"{minutes // 1440}d {minutes // 60 % 24}h"
        if minutes >= 3 * 1440
        else f"{minutes // 60}h {minutes % 60}m"
    )
    return f"due in {span}" if left >= timedelta(0) else f"overdue by {span}"
