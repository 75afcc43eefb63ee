"""Send: perform the approved actions exactly once, within the playbook's caps.

Every action is reserved in the outbox under its idempotency key *before* the provider call.
An action found `pending` on entry means an earlier attempt died between the call and the record:
it becomes `unknown` and is never retried automatically.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from langgraph.runtime import Runtime

from agents.context import Deps
from agents.intake import suppression_reason
from agents.state import State
from gtm.models import Receipt, Step, idempotency_key
from tools.channels import ChannelError
from tools.outbox import iso_week_start

__all__ = ["send", "steps_for", "cap_for"]


def steps_for(draft_step: Step) -> tuple[Step, ...]:
    """Provider actions that deliver a draft: a LinkedIn note goes after a profile visit."""
    if draft_step == "linkedin_connect":
        return ("linkedin_visit", "linkedin_connect")
    return (draft_step,)


def cap_for(deps: Deps, step: Step, now: datetime) -> tuple[int, datetime]:
    """(limit, window start) for a step, from the playbook."""
    caps = deps.playbook.caps
    week = iso_week_start(now)
    if step == "linkedin_visit":
        return caps.linkedin_profile_visits_per_week, week
    if step == "linkedin_connect":
        return caps.linkedin_connection_requests_per_week, week
    if step == "linkedin_message":
        return caps.linkedin_messages_per_week, week
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return caps.emails_per_day, day


async def _perform(deps: Deps, state: State, step: Step, key: str) -> Receipt:
    draft, contact = state.draft, state.contact
    assert draft is not None and contact is not None
    if step == "linkedin_visit":
        return await deps.linkedin.visit(contact.linkedin_url or "", key=key)
    if step == "linkedin_connect":
        return await deps.linkedin.connect(contact.linkedin_url or "", draft.body, key=key)
    if step == "linkedin_message":
        return await deps.linkedin.message(contact.linkedin_url or "", draft.body, key=key)
    return await deps.email.send(
        to=contact.email or "",
        to_name=contact.name,
        subject=draft.subject or "",
        body=draft.body,
        key=key,
    )


async def send(state: State, runtime: Runtime[Deps]) -> dict[str, Any]:
    deps = runtime.context
    draft, contact = state.draft, state.contact
    assert draft is not None and contact is not None

    blocked = await suppression_reason(deps, state.account, contact)
    if blocked is not None:
        reason, detail = blocked
        return {
            "status": "skipped",
            "skip_reason": reason,
            "skip_detail": f"at send time: {detail}",
            "events": [f"send: blocked at send time ({reason}): {detail}"],
        }

    sender = deps.linkedin.sender if draft.channel == "linkedin" else deps.email.sender
    sent: list[str] = list(state.sent_keys)
    events: list[str] = []
    for step in steps_for(draft.step):
        key = idempotency_key(state.campaign, state.account.account_id, contact.key, step)
        existing = deps.outbox.get(key)
        if existing is not None:
            if existing.state == "sent":
                if key not in sent:
                    sent.append(key)
                events.append(f"send: {step} already sent ({existing.provider_id})")
                continue
            found = existing.state
            if found == "pending":
                found = "unknown"
                deps.outbox.mark_unknown(
                    key, "found pending on resume: the provider call may or may not have happened"
                )
            return {
                "status": "failed",
                "sent_keys": sent,
                "skip_detail": f"{step} is '{found}' in the outbox; check the provider by hand, "
                "it will not be retried",
                "events": [*events, f"send: {step} needs a human (outbox state unknown/failed)"],
            }
        now = deps.clock()
        limit, since = cap_for(deps, step, now)
        used = deps.outbox.count(sender, step, since)
        if used >= limit:
            nxt = since + (timedelta(days=7) if step != "email" else timedelta(days=1))
            return {
                "status": "deferred",
                "sent_keys": sent,
                "skip_detail": f"{step} cap reached for {sender}: {used}/{limit} since "
                f"{since.date().isoformat()}; waits until {nxt.date().isoformat()}",
                "events": [*events, f"send: deferred, {step} cap {used}/{limit}"],
            }
        entry, created = deps.outbox.reserve(
            key=key,
            campaign=state.campaign,
            account_id=state.account.account_id,
            contact_key=contact.key,
            step=step,
            channel=draft.channel,
            sender=sender,
        )
        if not created:  # another process reserved it between our get() and reserve()
            return {
                "status": "failed",
                "sent_keys": sent,
                "skip_detail": f"{step} was reserved concurrently (state {entry.state})",
                "events": [*events, f"send: {step} reserved concurrently, not sending"],
            }
        try:
            receipt = await _perform(deps, state, step, key)
        except ChannelError as exc:
            deps.outbox.mark_failed(key, str(exc))
            return {
                "status": "failed",
                "sent_keys": sent,
                "skip_detail": f"{step} failed: {exc}",
                "events": [*events, f"send: {step} failed: {exc}"],
            }
        deps.outbox.mark_sent(key, receipt.provider_id)
        sent.append(key)
        events.append(f"send: {step} sent ({receipt.provider_id})")
    return {"status": "sent", "sent_keys": sent, "events": events}
