"""Drive account threads: batch runs, resumes, and reviewer decisions.

The CLI and the web inbox both go through these functions, so `gtm approve` and a click in the
browser resume the graph in exactly the same way.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command, StateSnapshot

from gtm.ledger import ThreadRow, thread_id_for
from gtm.models import Account, AccountStatus, Channel, Decision
from gtm.runtime import Runtime

__all__ = [
    "RunSummary",
    "run_campaign",
    "advance",
    "pending_payload",
    "decide",
    "DecisionRefused",
]


STALE_PENDING = timedelta(minutes=15)
"""No provider call takes this long (timeouts and retries included): older `pending` is dead."""


def _config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


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
    if snapshot.interrupts:
        out["status"] = "waiting_for_approval"
        out["skip_reason"] = None
    elif _unfinished(snapshot):
        out["status"] = "running"  # stopped mid-way (crash or interrupt); a run resumes it
    else:
        out["status"] = values.get("status", "failed")
    return out


async def advance(rt: Runtime, thread_id: str, payload: Any) -> ThreadRow:
    """Run one thread until it pauses or ends, then index where it stands."""
    config = _config(thread_id)
    try:
        await rt.graph.ainvoke(payload, config, context=rt.deps, durability="sync")
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


@dataclass
class RunSummary:
    campaign: str
    total: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    flagged: int = 0
    already_done: int = 0
    resumed: int = 0
    failures: list[str] = field(default_factory=list)
    needs_human: int = 0
    """Outbox actions found pending from a dead process at the start, now `unknown`."""


async def _next_payload(rt: Runtime, thread_id: str, inp: dict[str, Any]) -> tuple[Any, str]:
    """What to send a thread on this run: fresh input, resume, nothing (done or waiting).

    A thread found done or waiting is re-indexed from its checkpoint: a process killed between
    the checkpoint write and the ledger update leaves the ledger one step behind.
    """
    config = _config(thread_id)
    snapshot = await rt.graph.aget_state(config)
    if not snapshot.values:
        return inp, "new"
    if snapshot.interrupts:
        recorded = rt.ledger.pending(thread_id)
        if recorded is not None and recorded[1] == snapshot.interrupts[0].id:
            # A reviewer decided, and the process died before the graph took the decision.
            return Command(resume=recorded[0].model_dump(mode="json")), "decided"
        rt.ledger.update(thread_id, **_derive(snapshot))
        return None, "waiting"
    if _unfinished(snapshot):
        return None, "resume"
    if snapshot.values.get("status") == "deferred":
        # Re-enter at send: the cap window may have moved on. The approval stands.
        await rt.graph.aupdate_state(config, {"status": "running"}, as_node="approve")
        return None, "resume"
    rt.ledger.update(thread_id, **_derive(snapshot))
    return None, "done"


async def run_campaign(
    rt: Runtime,
    accounts: list[Account],
    *,
    campaign: str,
    channel: Channel,
    concurrency: int = 4,
    on_progress: Callable[[ThreadRow | None, str], None] | None = None,
) -> RunSummary:
    """Run every account's thread, at most `concurrency` at a time. Safe to call again."""
    summary = RunSummary(campaign=campaign, total=len(accounts))
    # A `pending` action this old belongs to a process that died mid-call: a human checks it.
    stale = rt.deps.outbox.recover_stale_pending(rt.deps.clock() - STALE_PENDING)
    summary.needs_human = len(stale)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(account: Account) -> None:
        async with gate:
            row = rt.ledger.ensure(campaign, account, channel)
            tid = thread_id_for(campaign, account.account_id)
            inp = {"campaign": campaign, "channel": row.channel, "account": account}
            payload, kind = await _next_payload(rt, tid, inp)
            if kind in ("waiting", "done"):
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

    await asyncio.gather(*(one(a) for a in accounts))
    return summary


async def pending_payload(rt: Runtime, row: ThreadRow) -> dict[str, Any] | None:
    """The approval payload a waiting thread shows, or None if it is not waiting."""
    snapshot = await rt.graph.aget_state(_config(row.thread_id))
    if not snapshot.interrupts:
        return None
    value = snapshot.interrupts[0].value
    return value if isinstance(value, dict) else None


class DecisionRefused(RuntimeError):
    """The draft cannot take this decision now (unknown id, already decided, in progress)."""


async def decide(rt: Runtime, ref: int | str, decision: Decision) -> ThreadRow:
    """Resume a waiting thread with a reviewer's decision, exactly once."""
    row = rt.ledger.get(ref)
    if row is None:
        raise DecisionRefused(f"no draft with id {ref}")
    if row.status != "waiting_for_approval":
        by = f" by {row.decided_by} at {row.decided_at:%Y-%m-%d %H:%M}" if row.decided_at else ""
        raise DecisionRefused(
            f"draft {row.id} ({row.company}) is already decided{by}: {row.status}"
        )
    if not rt.ledger.claim(row.id, decision.reviewer):
        raise DecisionRefused(
            f"draft {row.id} ({row.company}) is being decided by someone else right now"
        )
    try:
        snapshot = await rt.graph.aget_state(_config(row.thread_id))
        if not snapshot.interrupts:
            raise DecisionRefused(f"draft {row.id} ({row.company}) is already decided")
        rt.ledger.record_decision(row.id, decision=decision, interrupt_id=snapshot.interrupts[0].id)
        return await advance(rt, row.thread_id, Command(resume=decision.model_dump(mode="json")))
    finally:
        rt.ledger.release(row.id)


def status_counts(rows: list[ThreadRow]) -> Counter[AccountStatus]:
    return Counter(r.status for r in rows)
