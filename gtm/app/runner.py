"""Drive account threads: batch runs, resumes, reviewer decisions, and their checkpoints.

The CLI and the web inbox both go through these functions, so `gtm approve` and a click in the
browser meet one decision policy (`take_decision`) and resume the graph in exactly the same way.
Checkpoints are read and erased only through `gtm.app.checkpoints`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from langgraph.types import Command, Durability, StateSnapshot

from agents.qualify import rank_accounts
from gtm.app.checkpoints import (
    erase_threads,
    pending_request,
    rewrite_threads,
    thread_config,
    thread_values,
)
from gtm.app.contact_slots import slot_account
from gtm.app.heap import limit_arenas, trimming
from gtm.app.ledger import ThreadRow
from gtm.app.loop_pass import RunSummary, end_of_run
from gtm.app.sendable import EDIT_BLOCKERS, unsendable
from gtm.app.telemetry import callbacks_for
from gtm.app.workers import Lanes, all_or_none
from gtm.app.workspace import Workspace
from gtm.domain.approval import ApprovalRequest
from gtm.domain.models import Account, Channel, Decision, Review
from gtm.domain.threads import thread_id_for

if TYPE_CHECKING:  # psycopg is loaded only by a run on Postgres
    from tools.pg_leases import AccountLeases

__all__ = [
    "RunSummary",
    "run_campaign",
    "advance",
    "thread_values",
    "pending_request",
    "erase_threads",
    "rewrite_threads",
    "decide",
    "take_decision",
    "apply_decision",
    "Taken",
    "review_edit",
    "unsendable",
    "EDIT_BLOCKERS",
    "DecisionRefused",
    "DecisionNotAllowed",
    "Unsendable",
    "EditRefused",
    "NeedsConfirmation",
]


PREVIEW_CHARS = 140
"""How much of a draft the ledger keeps for lists (the inbox queue reads no checkpoint)."""

STALE_PENDING = timedelta(minutes=15)
"""No provider call takes this long (timeouts and retries included): older `pending` is dead."""

# A long run's heap stays flat (`gtm.app.heap`). Capped here, on import, because the commands
# that run threads import this module before they open the workspace and start its threads:
# an arena a thread already has is kept, so a cap set later saves less (27 KB per account of
# growth over 1,500 accounts instead of 18).
limit_arenas()


def _unfinished(snapshot: StateSnapshot) -> bool:
    """Work is left. A process killed after a task saved its writes but before the next
    checkpoint leaves `next` empty while the task is still listed: that thread is not done."""
    return bool(snapshot.next or snapshot.tasks)


def _derive(snapshot: StateSnapshot) -> dict[str, Any]:
    """Ledger fields from a checkpoint: the checkpoint is the truth, the ledger its index."""
    values: dict[str, Any] = snapshot.values or {}
    tier = values.get("tier")
    out: dict[str, Any] = {
        "tier": tier.tier if tier is not None else None,
        "skip_reason": values.get("skip_reason"),
        "detail": values.get("skip_detail", ""),
        "flagged": bool(values.get("flagged")),
    }
    contact, draft = values.get("contact"), values.get("draft")
    if contact is not None:
        out["contact"] = f"{contact.name}, {contact.title}" if contact.title else contact.name
    if draft is not None:
        out["preview"] = " ".join(draft.body.split())[:PREVIEW_CHARS]
    if snapshot.interrupts:
        out["status"] = "waiting_for_approval"
        out["skip_reason"] = None
    elif _unfinished(snapshot):
        out["status"] = "running"  # stopped mid-way (crash or interrupt); a run resumes it
    else:
        out["status"] = values.get("status", "failed")
    return out


async def advance(rt: Workspace, thread_id: str, payload: Any) -> ThreadRow:
    """Run one thread until it pauses or ends, then index where it stands."""
    config = thread_config(thread_id)
    known = rt.ledger.get(thread_id)
    deps = rt.deps_for(known.campaign, variant=known.variant) if known is not None else rt.deps
    # A fresh thread's first leg (intake to the approval pause) has no side effect to protect:
    # its checkpoint is written when it pauses or ends ("exit"), and a crash before that starts
    # it again. Every leg after a decision, which sends, checkpoints each step ("sync").
    durability: Durability = "exit" if isinstance(payload, dict) else "sync"
    try:
        await rt.graph.ainvoke(
            payload, {**config, "callbacks": callbacks_for(rt)}, context=deps, durability=durability
        )
    except Exception as exc:  # noqa: BLE001 - one account's failure must not stop the batch
        snapshot = await rt.graph.aget_state(config)
        derived = _derive(snapshot)
        rt.ledger.update(
            thread_id,
            status="failed",
            tier=derived["tier"],
            detail=f"{type(exc).__name__}: {exc}"[:500],
        )
    else:
        snapshot = await rt.graph.aget_state(config)
        rt.ledger.update(thread_id, **_derive(snapshot))
    row = rt.ledger.get(thread_id)
    assert row is not None
    return row


async def _next_payload(
    rt: Workspace, thread_id: str, inp: dict[str, Any], *, claimed: bool = False
) -> tuple[Any, str]:
    """What to send a thread on this run: fresh input, resume, nothing (done, waiting, busy).

    A thread found done or waiting is re-indexed from its checkpoint: a process killed between
    the checkpoint write and the ledger update leaves the ledger one step behind.
    """
    if not claimed and rt.ledger.busy(thread_id):
        return None, "busy"  # a reviewer's decision is being applied by another process
    config = thread_config(thread_id)
    snapshot = await rt.graph.aget_state(config)
    if not snapshot.values:
        return inp, "new"
    if snapshot.interrupts:
        recorded = rt.ledger.pending(thread_id)
        if recorded is not None and recorded[1] == snapshot.interrupts[0].id:
            # A reviewer decided and the graph has not taken it yet. If the reviewer's process
            # still holds the claim it is applying it now; otherwise it died, and we apply it.
            row = rt.ledger.get(thread_id)
            if claimed or (row is not None and rt.ledger.claim(row.id, "replay")):
                return Command(resume=recorded[0].model_dump(mode="json")), "decided"
            return None, "waiting"
        rt.ledger.update(thread_id, **_derive(snapshot))
        return None, "waiting"
    if _unfinished(snapshot):
        return None, "resume"
    stopped = (row := rt.ledger.get(thread_id)) is not None and row.seq_stopped is not None
    if snapshot.values.get("status") == "deferred" and not (
        stopped and snapshot.values.get("sequence_position")
    ):
        # Re-enter at send: the cap window may have moved on. The approval stands.
        await rt.graph.aupdate_state(config, {"status": "running"}, as_node="approve")
        return None, "resume"
    rt.ledger.update(thread_id, **_derive(snapshot))
    return None, "done"


def _unerased(rt: Workspace, account: Account) -> Account:
    """The account without the people erased on request: a list that still names them must not
    put them back into a checkpoint (intake would skip them, but the thread would keep them)."""
    kept = tuple(c for c in account.contacts if not rt.deps.suppressions.is_erased(c))
    if len(kept) == len(account.contacts):
        return account
    return account.model_copy(update={"contacts": kept})


async def _pool(
    accounts: Iterable[Account], work: Callable[[Account], Awaitable[None]], *, size: int
) -> None:
    """Work `accounts` in their order, `size` at a time: `size` workers each take the next
    account from one shared iterator when they are free. Only the accounts being worked exist
    as coroutines; a task per account made up front held all 10,000 of a long run at once.

    If `work` raises (an account's failure inside the graph does not: `advance` records it),
    or on a Ctrl-C, the workers stop as a Postgres run's lanes do (`all_or_none`)."""
    pending = iter(accounts)

    async def worker() -> None:
        for account in pending:  # `next` is synchronous: two workers never take the same one
            await work(account)

    await all_or_none([asyncio.create_task(worker()) for _ in range(max(1, size))])


async def run_campaign(
    rt: Workspace,
    accounts: list[Account],
    *,
    campaign: str,
    channel: Channel,
    concurrency: int = 4,
    on_progress: Callable[[ThreadRow | None, str], None] | None = None,
    leases: AccountLeases | None = None,
) -> RunSummary:
    """Run every account's thread, at most `concurrency` at a time. Safe to call again.

    With `leases` (Postgres), this process is one of several workers on the campaign: it works
    only the accounts it leases, skips those another worker holds or finished, takes over those
    whose lease ran out, and returns when none is left (`gtm.app.workers`).

    If the campaign has prompt variants (`CampaignBook.resolve`), a new thread is drawn into one
    as its ledger row is created, before anything is drafted; every step of it, follow-ups and
    regenerations included, is then written with that version's prompts (see `advance`).
    """
    # Tier 1 and strong signals first, so they take the caps (`qualification.rank_accounts`).
    playbook = rt.playbook_for(campaign)
    accounts = rank_accounts(accounts, playbook)
    summary = RunSummary(campaign=campaign, total=len(accounts))
    record = rt.campaigns.get(campaign)
    variants = record.variants if record is not None else None
    # A `pending` action this old belongs to a process that died mid-call: a human checks it.
    stale = rt.deps.outbox.recover_stale_pending(rt.deps.clock() - STALE_PENDING)
    summary.needs_human = len(stale)
    gate = asyncio.Semaphore(max(1, concurrency))

    per_account = playbook.contacts_per_account

    async def one(account: Account) -> None:
        async with gate:
            if per_account == 1:
                await one_thread(account, _unerased(rt, account), 0)
                return
            # One thread per person, in rank order, one after the other (`contact_slots`).
            for slot in range(per_account):
                given = await slot_account(rt, campaign, _unerased(rt, account), channel, slot)
                if given is None:
                    break
                await one_thread(account, given, slot)

    async def one_thread(account: Account, given: Account, slot: int) -> None:
        drawn = variants.assign(account.account_id) if variants is not None else None
        row = rt.ledger.ensure(campaign, account, channel, variant=drawn, slot=slot)
        tid = thread_id_for(campaign, account.account_id, slot)
        inp = {"campaign": campaign, "channel": row.channel, "account": given}
        payload, kind = await _next_payload(rt, tid, inp)
        if kind in ("waiting", "done", "busy"):
            summary.already_done += 1
            row = rt.ledger.get(tid) or row
        else:
            if kind in ("resume", "decided"):
                summary.resumed += 1
            rt.ledger.update(tid, status="running")
            row = await advance(rt, tid, payload)
        summary.by_status[row.status] += 1
        if row.status in ("skipped", "rejected") and row.skip_reason:
            summary.skipped_by_reason[row.skip_reason] += 1
        if row.flagged and row.status == "waiting_for_approval":
            summary.flagged += 1
        if row.status == "failed":
            summary.failures.append(f"{row.company}: {row.detail}")
        if on_progress:
            on_progress(row, kind)

    async with trimming():
        if leases is None:  # the campaign's lock file keeps every other process out
            await _pool(accounts, one, size=concurrency)
            await end_of_run(rt, campaign, summary)  # what came back, follow-ups due, red flags
        else:
            await Lanes(leases, campaign).run(
                accounts, one, lanes=concurrency, tail=lambda: end_of_run(rt, campaign, summary)
            )
    return summary


# --------------------------------------------------------------------------- decisions


class DecisionRefused(RuntimeError):
    """The draft cannot take a decision now (unknown id, already decided, being decided)."""


class DecisionNotAllowed(DecisionRefused):
    """The draft is waiting, but the decision policy does not allow this decision on it."""


class Unsendable(DecisionNotAllowed):
    """Approved as written, the draft is something its channel cannot carry (empty, too long,
    template debris): the same findings that refuse an edit refuse it."""


class EditRefused(DecisionNotAllowed):
    """The edited text is empty, or something its channel cannot carry."""


class NeedsConfirmation(DecisionNotAllowed):
    """A flagged draft is approved as written only when the reviewer confirms they checked the
    findings."""


@dataclass(frozen=True)
class Taken:
    """A decision written down: the claimed draft, and guardrail notes for the reviewer."""

    row: ThreadRow
    notes: tuple[str, ...] = ()
    """Findings on an edit that do not stop it ('check: finding'), to show, not to refuse."""


def review_edit(
    rt: Workspace,
    request: ApprovalRequest,
    text: str,
    subject: str | None,
    *,
    campaign: str | None = None,
) -> Review:
    """Guardrails on a reviewer's edit of the requested draft, under its campaign's playbook."""
    from evals.context import CheckContext
    from evals.guardrails import review_draft

    old = request.draft
    new = old.model_copy(
        update={"body": text.strip(), "subject": subject or old.subject, "model": "human"}
    )
    ctx = CheckContext(
        facts=list(request.facts),
        playbook=rt.playbook_for(campaign) if campaign else rt.playbook,
        contact=request.contact,
        sender_name=rt.settings.sender_name,
        sender_company=rt.settings.sender_company,
    )
    return review_draft(new, ctx)


def _allowed(
    rt: Workspace, row: ThreadRow, request: ApprovalRequest, decision: Decision, confirmed: bool
) -> tuple[str, ...]:
    """The decision policy on a waiting draft: raises `DecisionNotAllowed`, or returns notes."""
    if decision.action == "approve":
        # The findings were computed when the draft was written; its text may have changed
        # since (an erasure leaves "[erased]"), so what blocks a send is checked again now.
        current = review_edit(
            rt, request, request.draft.body, request.draft.subject, campaign=row.campaign
        )
        late = [f"{r.check}: {r.finding}" for r in current.failures if r.check in EDIT_BLOCKERS]
        if blockers := list(dict.fromkeys([*unsendable(request), *late])):
            raise Unsendable(
                f"draft {row.id} ({row.company}) cannot be sent as written — "
                + "; ".join(blockers)
                + ". Edit it or regenerate it."
            )
        if request.flagged and not confirmed:
            raise NeedsConfirmation(
                f"draft {row.id} ({row.company}) was flagged by the guardrails: approving it as "
                "written needs confirming that the findings were checked"
            )
    if decision.action == "edit":
        failures = review_edit(
            rt, request, decision.text or "", decision.subject, campaign=row.campaign
        ).failures
        if blockers := [f"{r.check}: {r.finding}" for r in failures if r.check in EDIT_BLOCKERS]:
            raise EditRefused("edit refused — " + "; ".join(blockers))
        return tuple(f"{r.check}: {r.finding}" for r in failures)
    return ()


async def take_decision(
    rt: Workspace, ref: int | str, decision: Decision, *, confirmed: bool
) -> Taken:
    """Claim a waiting draft, hold the decision to the policy, and write it down, exactly once;
    `apply_decision` then resumes the graph with it.

    The policy, for the CLI and the web alike: a draft is approved as written only if its
    channel can carry it, and a flagged one only when `confirmed` (the web's checkbox; `gtm
    approve ID`, typed after `gtm inbox` showed the findings, passes True). An edit must hold
    text that passes `EDIT_BLOCKERS`; its other findings come back as notes. Raises
    `DecisionNotAllowed` for what the policy refuses and `DecisionRefused` for a draft that
    cannot take a decision now (a second decision, whoever makes it).

    Once this returns, the decision survives a crash: the next run (or web inbox) applies it.
    """
    if decision.action == "edit" and not (decision.text or "").strip():
        raise EditRefused("the edited text is empty; nothing was sent")
    row = rt.ledger.get(ref)
    if row is None:
        raise DecisionRefused(f"no draft with id {ref}")
    if row.status != "waiting_for_approval" or row.deciding:
        by = (
            f" by {row.decided_by} at {row.decided_at:%Y-%m-%d %H:%M} UTC" if row.decided_at else ""
        )
        state = "being applied" if row.deciding else row.status
        raise DecisionRefused(f"draft {row.id} ({row.company}) is already decided{by}: {state}")
    if not rt.ledger.claim(row.id, decision.reviewer):
        raise DecisionRefused(
            f"draft {row.id} ({row.company}) is already decided: someone else is deciding it "
            "right now"
        )
    try:
        snapshot = await rt.graph.aget_state(thread_config(row.thread_id))
        if not snapshot.interrupts:
            raise DecisionRefused(f"draft {row.id} ({row.company}) is already decided")
        pause = snapshot.interrupts[0]
        request = ApprovalRequest.from_interrupt(pause.value)
        notes = _allowed(rt, row, request, decision, confirmed)
        rt.ledger.record_decision(row.id, decision=decision, interrupt_id=pause.id)
    except BaseException:
        rt.ledger.release(row.id)
        raise
    taken = rt.ledger.get(row.id)
    assert taken is not None
    return Taken(row=taken, notes=notes)


async def apply_decision(rt: Workspace, row: ThreadRow) -> ThreadRow:
    """Resume the graph with the decision `take_decision` recorded for this draft."""
    try:
        recorded = rt.ledger.pending(row.thread_id)
        if recorded is None:  # applied already (by a run that replayed it)
            return rt.ledger.get(row.id) or row
        payload, kind = await _next_payload(rt, row.thread_id, {}, claimed=True)
        if kind == "resume":
            # The graph took this decision and its process died before the thread ended (a
            # kill mid-send): carry the thread on. The send step never repeats an action that
            # may have happened; it leaves it to a human.
            return await advance(rt, row.thread_id, None)
        if kind != "decided":  # the pause it answered is gone and the thread ended
            return rt.ledger.get(row.id) or row
        return await advance(rt, row.thread_id, payload)
    finally:
        rt.ledger.release(row.id)


async def decide(
    rt: Workspace, ref: int | str, decision: Decision, *, confirmed: bool = True
) -> ThreadRow:
    """Take a reviewer's decision and resume the thread with it, exactly once. Confirmed by
    default, as `gtm approve ID` is."""
    taken = await take_decision(rt, ref, decision, confirmed=confirmed)
    return await apply_decision(rt, taken.row)
