"""Sequences: take every sent thread whose next follow-up is due through the graph again.

The playbook says what follows a first touch (`Playbook.sequences`); this module decides, per
thread of a campaign, whether that next step is due, and if so re-opens the thread through the
checkpointer (`gtm.app.checkpoints.reopen_thread`) so the follow-up is researched, written,
reviewed, approved and sent like a first touch. It runs at the end of every `gtm run`.

A thread gets no further step when its sequence was stopped (a reply, opt-out, bounce or meeting
in the event store, or a reviewer's `gtm stop`; the same from anyone else the campaign wrote to
at the account, or from someone there it never wrote to since it first did), when the playbook
has no further step, or when its last step did not end `sent` (rejected, skipped, failed).
Before re-opening, the stop conditions are read from the event store; the send node reads them
again right before the provider call. Exactly once: the follow-up's outbox key carries its
sequence position.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agents.followup import accepted_at, colleague_stop_reason, stop_reason, thread_keys
from agents.personalize import step_at
from agents.same_account import PassLookups, unwritten_colleague_stop_reason
from gtm.app.checkpoints import reopen_thread, thread_unfinished, thread_values
from gtm.app.ledger import ThreadRow
from gtm.app.runner import advance
from gtm.app.workspace import Workspace
from gtm.domain.models import Contact, Fact, OutboxEntry, idempotency_key
from gtm.domain.playbook import Playbook
from gtm.domain.sequences import SequenceStep

__all__ = [
    "SequenceReport",
    "advance_sequences",
    "due_at",
    "due_follow_ups",
    "reopened_values",
]


@dataclass
class SequenceReport:
    """What one pass over a campaign's sent threads did."""

    advanced: list[ThreadRow] = field(default_factory=list)
    """Threads taken into their next step, as they stand after it (usually waiting for
    approval, or sent when the tier allows and nobody needs to look)."""
    waiting: int = 0
    """Next step not due yet, or waiting for the connection to be accepted."""
    stopped: list[str] = field(default_factory=list)
    """Sequences stopped on this pass, one line each: company and why."""
    finished: int = 0
    """Threads whose sequence has no further step."""
    due: int = 0
    """Threads whose next step was due on this pass."""


def due_at(
    rt: Workspace,
    row: ThreadRow,
    contact: Contact,
    position: int,
    step: SequenceStep,
    playbook: Playbook,
) -> datetime | None:
    """When the step after `position` is due: `wait_days` after the previous step was sent, or
    after the connection was accepted. None: it waits for an event (no accept yet), or the
    previous step is not in the outbox as sent."""
    prev_step = step_at(row.channel, position, playbook)
    if prev_step == "linkedin_connect" and step.after == "accepted":
        keys = thread_keys(rt.deps.outbox, row.campaign, row.account_id, contact.key)
        accepted = accepted_at(rt.events, contact, keys)
        return accepted + timedelta(days=step.wait_days) if accepted is not None else None
    key = idempotency_key(row.campaign, row.account_id, contact.key, prev_step, position)
    entry = rt.deps.outbox.get(key)
    if entry is None or entry.state != "sent":
        return None
    if step.after == "accepted":  # a later LinkedIn step that still wants the acceptance
        keys = thread_keys(rt.deps.outbox, row.campaign, row.account_id, contact.key)
        accepted = accepted_at(rt.events, contact, keys)
        if accepted is None:
            return None
        return max(accepted, entry.updated_at) + timedelta(days=step.wait_days)
    return entry.updated_at + timedelta(days=step.wait_days)


def _cited_texts(values: dict[str, Any]) -> list[str]:
    """The facts the thread's last draft cited, by text (ids are re-drawn by each research)."""
    draft = values.get("draft")
    facts: list[Fact] = values.get("facts") or []
    if draft is None:
        return []
    by_id = {f.id: f.text for f in facts}
    return [by_id[i] for i in draft.cited_fact_ids if i in by_id]


def reopened_values(values: dict[str, Any], position: int, step: SequenceStep) -> dict[str, Any]:
    """The state a follow-up starts from: the same account, contact and tier; a new position;
    what was cited so far; nothing of the last step's draft, review or decision."""
    earlier = list(dict.fromkeys([*(values.get("earlier_cited") or []), *_cited_texts(values)]))
    return {
        "sequence_position": position,
        "earlier_cited": earlier,
        "status": "running",
        "skip_reason": None,
        "skip_detail": "",
        "draft": None,
        "decision": None,
        "review": None,
        "revisions": 0,
        "flagged": False,
        "instructions": "",
        "sent_keys": [],
        "facts": [],
        "quarantined": [],
        "events": [
            f"sequence: follow-up {position} due ({step.action}, {step.wait_days} day(s) after "
            f"{'the accept' if step.after == 'accepted' else 'the previous step'})"
        ],
    }


async def _due_threads(
    rt: Workspace, campaign: str, report: SequenceReport
) -> AsyncIterator[tuple[ThreadRow, dict[str, Any], int, SequenceStep]]:
    """Every thread of `campaign` whose next step is due now, with its checkpoint values, the
    position of that step and the step; records in the ledger where every other thread's
    sequence stands (its step, when the next is due, why it stopped) and counts it in `report`."""
    playbook = rt.playbook_for(campaign)
    now = rt.deps.clock()
    # Read once per pass: an action sent later in the pass is to someone already in it, and
    # the send node asks again, fresh, right before the provider call.
    crm = PassLookups(rt.deps.crm)  # each person and domain asked once in this pass
    by_account: dict[str, list[OutboxEntry]] = {}
    for entry in rt.deps.outbox.entries(campaign=campaign):
        by_account.setdefault(entry.account_id, []).append(entry)
    for row in rt.ledger.rows(campaign=campaign, status="sent"):
        if row.seq_stopped is not None or rt.ledger.busy(row.thread_id):
            continue
        if await thread_unfinished(rt, row.thread_id):
            continue  # re-opened by a run that died before indexing it: `gtm run` resumes it
        values = await thread_values(rt, row.thread_id)
        contact: Contact | None = values.get("contact")
        position = int(values.get("sequence_position") or 0)
        if contact is None:
            continue
        step = playbook.sequences.follow_up(row.channel, position + 1)
        if step is None:
            rt.ledger.set_sequence(row.thread_id, position=position, next_due=None)
            report.finished += 1
            continue
        keys = thread_keys(rt.deps.outbox, campaign, row.account_id, contact.key)
        entries = by_account.get(row.account_id, [])  # both answers look at this account only
        why = stop_reason(rt.events, contact, keys) or colleague_stop_reason(
            rt.events, entries, row.account_id, contact.key
        )
        if why is None and (account := values.get("account")) is not None:
            why = await unwritten_colleague_stop_reason(rt.events, crm, entries, account, contact)
        if why is not None:
            rt.ledger.stop_sequence(row.id, why)
            report.stopped.append(f"{row.company}: {why}")
            continue
        due = due_at(rt, row, contact, position, step, playbook)
        rt.ledger.set_sequence(row.thread_id, position=position, next_due=due)
        if due is None or due > now:
            report.waiting += 1
            continue
        yield row, values, position + 1, step


async def due_follow_ups(rt: Workspace, campaign: str) -> SequenceReport:
    """What `advance_sequences` would find, without taking any thread further: `due` counts
    the follow-ups due now (so a caller can start a model only when one will be drafted);
    stopped sequences are recorded as stopped, as the real pass would."""
    report = SequenceReport()
    async for _ in _due_threads(rt, campaign, report):
        report.due += 1
    return report


async def advance_sequences(rt: Workspace, campaign: str) -> SequenceReport:
    """Take every thread of `campaign` whose next follow-up is due into that step; record in
    the ledger where each sequence stands (its step, when the next is due, why it stopped)."""
    report = SequenceReport()
    async for row, values, position, step in _due_threads(rt, campaign, report):
        report.due += 1
        # Ledger first: a crash before the checkpoint is re-opened leaves a `running` row over
        # a finished checkpoint, which the next run re-indexes as `sent` and takes up again
        # here (the position is always read from the checkpoint, never from the ledger).
        rt.ledger.update(row.thread_id, status="running")
        rt.ledger.set_sequence(row.thread_id, position=position, next_due=None)
        await reopen_thread(rt, row.thread_id, reopened_values(values, position, step))
        after = await advance(rt, row.thread_id, None)
        if after.skip_reason == "sequence_stopped":
            rt.ledger.stop_sequence(after.id, after.detail)
            report.stopped.append(f"{after.company}: {after.detail}")
        report.advanced.append(rt.ledger.get(after.id) or after)
    return report
