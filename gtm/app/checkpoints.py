"""The one owner of checkpoint access: a thread's config, its values, its approval request,
and erasing or rewriting what its checkpoints hold.

The runner, the web inbox and `forget` go through these functions; nothing else addresses the
checkpointer, so where threads live (SQLite today) is decided in one place.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agents.state import State
from gtm.app import pg_checkpoints
from gtm.app.paused_reader import read_paused
from gtm.app.workspace import Workspace
from gtm.domain.approval import ApprovalRequest

__all__ = [
    "thread_config",
    "thread_values",
    "pending_request",
    "waiting_state",
    "erase_threads",
    "rewrite_threads",
    "thread_unfinished",
    "reopen_thread",
]


def thread_config(thread_id: str) -> RunnableConfig:
    """The checkpointer's address of one account thread (`gtm.domain.threads.thread_id_for`)."""
    return {"configurable": {"thread_id": thread_id}}


async def thread_unfinished(rt: Workspace, thread_id: str) -> bool:
    """The thread has work left (paused, stopped mid-way, or re-opened and not yet run)."""
    snapshot = await rt.graph.aget_state(thread_config(thread_id))
    return bool(snapshot.next or snapshot.tasks or snapshot.interrupts)


async def reopen_thread(rt: Workspace, thread_id: str, values: dict[str, Any]) -> None:
    """Re-open a finished thread for its next sequence step: write `values` as if intake had
    just run, so the next `ainvoke(None)` goes research → personalize → review → approve →
    send → record again. Intake's choices (tier, contact) stand; the send node checks
    suppression again, as for any touch."""
    await rt.graph.aupdate_state(thread_config(thread_id), values, as_node="intake")


async def thread_values(rt: Workspace, thread_id: str) -> dict[str, Any]:
    """The state a thread's latest checkpoint holds; empty if it has none."""
    snapshot = await rt.graph.aget_state(thread_config(thread_id))
    return dict(snapshot.values or {})


async def pending_request(rt: Workspace, thread_id: str) -> ApprovalRequest | None:
    """What a waiting thread asks its reviewer, or None if it is not waiting."""
    snapshot = await rt.graph.aget_state(thread_config(thread_id))
    if not snapshot.interrupts:
        return None
    return ApprovalRequest.from_interrupt(snapshot.interrupts[0].value)


_STATE_KEYS = frozenset(f.name for f in dataclasses.fields(State))


async def waiting_state(
    rt: Workspace, thread_id: str
) -> tuple[ApprovalRequest | None, dict[str, Any]]:
    """`pending_request` and `thread_values` in one read, for listings (`gtm inbox`).

    A thread simply paused at its approval has, beside its latest checkpoint, one pending write:
    the `__interrupt__` of the paused task (LangGraph records only control writes for a task that
    paused, and the checkpoint's channel values are the state the step started from). Then the
    question and the state are read from the checkpoint tables (`gtm.app.paused_reader`), as
    `graph.aget_state` reads them, and neither the graph nor `langgraph.types` (with the
    tracing it brings) is loaded (issue 20). Any other thread (an answer being applied, a
    finished task's output, an error, several questions, no checkpoint, a value the reader
    does not decode) is read by the graph itself."""
    paused = await read_paused(rt.checkpointer, thread_id)
    if paused is not None:
        state = {k: v for k, v in paused.channel_values.items() if k in _STATE_KEYS}
        return ApprovalRequest.from_interrupt(paused.value), state
    snapshot = await rt.graph.aget_state(thread_config(thread_id))
    request = (
        ApprovalRequest.from_interrupt(snapshot.interrupts[0].value)
        if snapshot.interrupts
        else None
    )
    return request, dict(snapshot.values or {})


async def erase_threads(rt: Workspace, thread_ids: list[str]) -> int:
    """Delete these threads' checkpoints, then reclaim the file space so the data leaves the
    disk too (SQLite keeps deleted pages until VACUUM). Returns how many threads it erased."""
    saver = rt.graph.checkpointer
    if not thread_ids or saver is None or isinstance(saver, bool):
        return 0
    for tid in thread_ids:
        await saver.adelete_thread(tid)
    if isinstance(saver, AsyncSqliteSaver):
        await saver.conn.execute("VACUUM")
        await saver.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    elif (pg := pg_checkpoints.postgres_saver(saver)) is not None:
        await pg_checkpoints.vacuum(pg)
    return len(thread_ids)


async def rewrite_threads(
    rt: Workspace, thread_ids: list[str], rewrite: Callable[[Any], Any]
) -> int:
    """Pass every value these threads' checkpoints hold (channel values, metadata, pending
    writes, the whole history) through `rewrite`, keep what it changes, then reclaim the file
    space so the old bytes leave the disk. `rewrite` returns its argument itself when nothing
    in it must change: such values are not touched. Ids, parents and task order stay as they
    were, so a paused thread resumes as before. Returns how many threads it changed."""
    saver = rt.graph.checkpointer
    if not thread_ids or saver is None or isinstance(saver, bool):
        return 0
    if (pg := pg_checkpoints.postgres_saver(saver)) is not None:
        return await pg_checkpoints.rewrite_threads(pg, thread_ids, rewrite)
    if not isinstance(saver, AsyncSqliteSaver):
        raise TypeError(f"rewriting checkpoints in a {type(saver).__name__} is not supported")
    await saver.setup()
    serde, changed = saver.serde, set[str]()
    async with saver.lock:
        db = saver.conn
        for tid in thread_ids:
            rows = await db.execute_fetchall(
                "SELECT checkpoint_ns, checkpoint_id, type, checkpoint, metadata FROM checkpoints"
                " WHERE thread_id = ?",
                (tid,),
            )
            for ns, cid, kind, blob, meta in rows:
                checkpoint = serde.loads_typed((kind, blob))
                values = rewrite(checkpoint["channel_values"])
                metadata = json.loads(meta) if meta is not None else None
                new_meta = rewrite(metadata)
                if values is checkpoint["channel_values"] and new_meta is metadata:
                    continue
                kind, blob = serde.dumps_typed({**checkpoint, "channel_values": values})
                if new_meta is not None:  # as the saver writes it
                    meta = json.dumps(new_meta, ensure_ascii=False).encode("utf-8", "ignore")
                await db.execute(
                    "UPDATE checkpoints SET type = ?, checkpoint = ?, metadata = ?"
                    " WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                    (kind, blob, meta, tid, ns, cid),
                )
                changed.add(tid)
            writes = await db.execute_fetchall(
                "SELECT checkpoint_ns, checkpoint_id, task_id, idx, type, value FROM writes"
                " WHERE thread_id = ?",
                (tid,),
            )
            for ns, cid, task, idx, kind, blob in writes:
                value = serde.loads_typed((kind, blob))
                new = rewrite(value)
                if new is value:
                    continue
                await db.execute(
                    "UPDATE writes SET type = ?, value = ? WHERE thread_id = ?"
                    " AND checkpoint_ns = ? AND checkpoint_id = ? AND task_id = ? AND idx = ?",
                    (*serde.dumps_typed(new), tid, ns, cid, task, idx),
                )
                changed.add(tid)
        await db.commit()
        if changed:
            await db.execute("VACUUM")
            await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return len(changed)
