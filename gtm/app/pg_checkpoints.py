"""Erasing and rewriting what threads' checkpoints hold when they live in Postgres.

`gtm.app.checkpoints` does this for the SQLite checkpointer; `langgraph-checkpoint-postgres`
keeps a checkpoint in three tables instead of two, so it needs its own queries. A checkpoint row
holds the checkpoint as JSON with its plain channel values inline (strings, numbers) and its
metadata as JSON; `checkpoint_blobs` holds the other channel values, serialized, once per
channel version; `checkpoint_writes` the pending writes, serialized. Every one of them goes
through the rewrite; ids, versions and task order stay as they were, so a paused thread resumes
as before. Postgres keeps deleted and overwritten rows in its files until they are vacuumed, so
both functions end with `VACUUM FULL` of the three tables (the WAL and backups keep the old bytes
until they rotate out, as for the other Postgres stores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # psycopg and the Postgres saver load only when a database is in use
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

__all__ = [
    "TABLES",
    "postgres_saver",
    "rewrite_threads",
    "vacuum",
    "latest_checkpoint_row",
    "channel_values",
]

TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


def postgres_saver(saver: object) -> AsyncPostgresSaver | None:
    """`saver` if it is the Postgres checkpointer, else None (without importing it for the
    SQLite one)."""
    if not any(
        c.__module__.startswith("langgraph.checkpoint.postgres") for c in type(saver).__mro__
    ):
        return None
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    return saver if isinstance(saver, AsyncPostgresSaver) else None


async def vacuum(saver: AsyncPostgresSaver) -> None:
    """Rewrite the checkpoint tables so deleted and replaced rows leave their files."""
    async with _connection(saver) as conn:
        for table in TABLES:  # the pool's connections are in autocommit: VACUUM may run
            await conn.execute(f"VACUUM (FULL) {table}")


def _connection(saver: AsyncPostgresSaver) -> Any:
    from psycopg import AsyncConnection

    conn = saver.conn
    if isinstance(conn, AsyncConnection):
        raise TypeError("gtm opens the Postgres checkpointer on a pool, not one connection")
    return conn.connection()


async def rewrite_threads(
    saver: AsyncPostgresSaver, thread_ids: Sequence[str], rewrite: Callable[[Any], Any]
) -> int:
    """Pass every value these threads' checkpoints hold through `rewrite` (which returns its
    argument itself when nothing must change) and keep what changed, in one transaction; then
    vacuum if anything did. Returns how many threads changed."""
    from psycopg.types.json import Jsonb

    serde, changed = saver.serde, set[str]()
    async with _connection(saver) as conn, conn.transaction():
        for tid in thread_ids:
            rows = await (
                await conn.execute(
                    "SELECT checkpoint_ns, checkpoint_id, checkpoint, metadata FROM checkpoints"
                    " WHERE thread_id = %s FOR UPDATE",
                    (tid,),
                )
            ).fetchall()
            for row in rows:
                checkpoint, metadata = row["checkpoint"], row["metadata"]
                inline = checkpoint.get("channel_values")
                values = rewrite(inline) if inline is not None else None
                new_meta = rewrite(metadata) if metadata is not None else None
                if values is inline and new_meta is metadata:
                    continue
                await conn.execute(
                    "UPDATE checkpoints SET checkpoint = %s, metadata = %s WHERE thread_id = %s"
                    " AND checkpoint_ns = %s AND checkpoint_id = %s",
                    (
                        Jsonb({**checkpoint, "channel_values": values}),
                        Jsonb(new_meta),
                        tid,
                        row["checkpoint_ns"],
                        row["checkpoint_id"],
                    ),
                )
                changed.add(tid)
            blobs = await (
                await conn.execute(
                    "SELECT checkpoint_ns, channel, version, type, blob FROM checkpoint_blobs"
                    " WHERE thread_id = %s FOR UPDATE",
                    (tid,),
                )
            ).fetchall()
            for b in blobs:
                if b["type"] == "empty" or b["blob"] is None:
                    continue
                value = serde.loads_typed((b["type"], b["blob"]))
                new = rewrite(value)
                if new is value:
                    continue
                await conn.execute(
                    "UPDATE checkpoint_blobs SET type = %s, blob = %s WHERE thread_id = %s"
                    " AND checkpoint_ns = %s AND channel = %s AND version = %s",
                    (*serde.dumps_typed(new), tid, b["checkpoint_ns"], b["channel"], b["version"]),
                )
                changed.add(tid)
            writes = await (
                await conn.execute(
                    "SELECT checkpoint_ns, checkpoint_id, task_id, idx, type, blob"
                    " FROM checkpoint_writes WHERE thread_id = %s FOR UPDATE",
                    (tid,),
                )
            ).fetchall()
            for w in writes:
                value = serde.loads_typed((w["type"], w["blob"]))
                new = rewrite(value)
                if new is value:
                    continue
                await conn.execute(
                    "UPDATE checkpoint_writes SET type = %s, blob = %s WHERE thread_id = %s"
                    " AND checkpoint_ns = %s AND checkpoint_id = %s AND task_id = %s"
                    " AND idx = %s",
                    (
                        *serde.dumps_typed(new),
                        tid,
                        w["checkpoint_ns"],
                        w["checkpoint_id"],
                        w["task_id"],
                        w["idx"],
                    ),
                )
                changed.add(tid)
    if changed:
        await vacuum(saver)
    return len(changed)


_LATEST = "WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1"
"""`AsyncPostgresSaver.aget_tuple`'s condition for a thread's latest root checkpoint."""


async def latest_checkpoint_row(saver: AsyncPostgresSaver, thread_id: str) -> Any | None:
    """The row `AsyncPostgresSaver.aget_tuple` reads for a thread's latest checkpoint (the
    saver's own `SELECT_SQL`: the checkpoint, its channel blobs, its pending writes), or None
    when the thread has none, when the checkpoint is older than format 4 (the saver would
    first migrate its pending sends) or when the database cannot answer now (the saver's own
    read, which waits for it, is then the one to ask). Used by `gtm.app.paused_reader`."""
    import psycopg

    try:
        async with _connection(saver) as conn:
            cur = await conn.execute(saver.SELECT_SQL + _LATEST, (thread_id,), binary=True)
            row = await cur.fetchone()
    except psycopg.OperationalError:
        return None
    if row is None or row["checkpoint"].get("v", 0) < 4:
        return None
    return row


def channel_values(saver: AsyncPostgresSaver, row: Any) -> dict[str, Any]:
    """A `latest_checkpoint_row`'s channel values as the saver assembles them: the plain ones
    kept inline in the checkpoint's JSON, then each blob deserialized (an "empty" one is no
    value)."""
    blobs = {
        bytes(channel).decode(): saver.serde.loads_typed((bytes(kind).decode(), bytes(blob)))
        for channel, kind, blob in row["channel_values"] or []
        if bytes(kind).decode() != "empty"
    }
    return {**(row["checkpoint"].get("channel_values") or {}), **blobs}
