"""Record: write what happened to the CRM and to memory, so nobody types it in by hand.

Every write is idempotent (CRM activities keyed by the outbox key, memory by thread, sequence
step and kind), so a re-run after a crash records each thing once, and a follow-up adds to what
the first touch left instead of overwriting it.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agents.context import Deps
from agents.same_account import memory_thread
from agents.state import State
from gtm.domain.models import Touch
from tools.crm import Activity

__all__ = ["record"]


async def record(state: State, runtime: Runtime[Deps]) -> dict[str, Any]:
    deps = runtime.context
    now = deps.clock()
    account, contact, draft = state.account, state.contact, state.draft
    thread = f"{state.campaign}:{account.account_id}"
    # Each step of a sequence is its own touch in memory; the first keeps its historic keys. A
    # further person's thread at the account keys its drafts by its own thread id.
    mine = memory_thread(state)
    prefix = f"{mine}:{state.sequence_position}" if state.sequence_position else mine
    touches: list[tuple[str, Touch]] = []
    common = {"account_id": account.account_id, "campaign": state.campaign, "at": now}
    who = contact.name if contact else ""

    for fact in state.facts:
        if fact.kind != "history":
            touches.append(
                (f"{thread}:fact:{fact.id}", Touch(kind="fact", text=fact.text, **common))
            )
    if draft is not None:
        touches.append(
            (
                f"{prefix}:draft",
                Touch(kind="draft", text=draft.body, contact=who, channel=draft.channel, **common),
            )
        )
    if state.decision is not None:
        d = state.decision
        touches.append(
            (
                f"{prefix}:decision",
                Touch(
                    kind="decision",
                    text=f"{d.action} by {d.reviewer}"
                    + (f": {d.reason}" if d.reason else "")
                    + (f": {d.instructions}" if d.instructions else ""),
                    contact=who,
                    **common,
                ),
            )
        )

    events: list[str] = []
    if state.sent_keys and draft is not None and contact is not None:
        # Every action that happened is logged, also when a later step failed or waits (a visit
        # sent before the connect hit the cap is still a touch the CRM must show).
        company = await deps.crm.upsert_company(account)
        person = await deps.crm.upsert_contact(contact, company.id)
        for key in state.sent_keys:
            entry = deps.outbox.get(key)
            if entry is None:
                continue
            await deps.crm.log_activity(
                Activity(
                    key=key,
                    company_id=company.id,
                    contact_id=person.id,
                    kind=entry.step,
                    subject=draft.subject,
                    body=draft.body if entry.step != "linkedin_visit" else "Profile visit",
                    at=entry.updated_at,
                )
            )
        if state.status == "sent":
            touches.append(
                (
                    f"{prefix}:send",
                    Touch(
                        kind="send", text=draft.body, contact=who, channel=draft.channel, **common
                    ),
                )
            )
        events.append(f"record: {len(state.sent_keys)} activity(ies) logged on {company.id}")
    elif state.status in ("skipped", "rejected"):
        touches.append(
            (
                f"{prefix}:skip",
                Touch(
                    kind="skip",
                    text=f"{state.skip_reason}: {state.skip_detail}",
                    contact=who,
                    **common,
                ),
            )
        )
    for key, touch in touches:
        await deps.memory.remember(touch, key=key)
    events.append(f"record: {len(touches)} memory record(s)")
    return {"events": events}
