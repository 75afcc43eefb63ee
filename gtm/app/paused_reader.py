"""A thread paused at its approval, read straight from the checkpoint tables (issue 20).

`gtm inbox` shows a page of paused drafts; each needs the approval request and the state of its
thread's latest checkpoint. Read through the checkpointer, the one pending write (LangGraph's
`__interrupt__`) is revived as a `langgraph.types.Interrupt`, and importing `langgraph.types`
loads langchain-core's runnables with LangSmith and the OpenTelemetry SDK: about 0.3 s, a
third of the command. This reader runs the saver's own queries on the saver's own connection
(SQLite: `checkpoints` and `writes`; Postgres: the saver's `SELECT_SQL` over `checkpoints`,
`checkpoint_blobs` and `checkpoint_writes`), decodes the checkpoint with the saver's serializer
as the saver does, and decodes the interrupt write itself with `ormsgpack`, mapping LangGraph's
`Interrupt` to its value without importing it.

It answers only the case `gtm.app.checkpoints.waiting_state` answered from the checkpointer
before: the latest checkpoint has exactly one pending write, on `__interrupt__`, holding one
`Interrupt` whose fields are plain msgpack (no extension type inside). Anything else (no
checkpoint, several writes, a resume written, an Interrupt with any other extension type, a
Postgres checkpoint older than format 4, a database that went away) is refused with None, and
the caller asks the graph. The decoding mirrors `JsonPlusSerializer` of langgraph-checkpoint
(`langgraph/checkpoint/serde/jsonplus.py`: `_msgpack_default` writes a dataclass as extension
type 2, `EXT_CONSTRUCTOR_KW_ARGS`, holding `(module, name, {field: value})`; its ext hook
revives it with `Interrupt(**fields)`, which keeps `value` as given). It never guesses: an
extension code, class, field or shape it does not know is a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ormsgpack
from langgraph.checkpoint.serde.types import INTERRUPT
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from gtm.app import pg_checkpoints

__all__ = ["Paused", "read_paused", "decode_interrupt_write"]

EXT_CONSTRUCTOR_KW_ARGS = 2
"""jsonplus's extension code for a dataclass (and a namedtuple): `(module, name, kwargs)`."""
INTERRUPT_CLASS = ("langgraph.types", "Interrupt")
INTERRUPT_FIELDS = frozenset({"value", "id", "response_schema"})
"""`Interrupt`'s dataclass fields, as `_msgpack_default` writes them (langgraph 1.x). A field
outside these (the deprecated `ns`, `when`, `resumable` of older data) is refused."""


@dataclass(frozen=True)
class Paused:
    """What a paused thread's latest checkpoint holds: the interrupt's value (the approval
    request as the approve node asked it) and the checkpoint's channel values."""

    value: Any
    channel_values: dict[str, Any]


@dataclass(frozen=True)
class _Interrupt:
    value: Any


class _Decoder:
    """An `ormsgpack` ext hook that knows one extension: LangGraph's `Interrupt`, whose own
    fields hold no extension at all. `ormsgpack` turns an exception raised in the hook into a
    bare `ValueError`, so the hook records a refusal here and the caller checks it."""

    def __init__(self) -> None:
        self.refused = False

    def interrupt(self, code: int, data: bytes) -> Any:
        if code != EXT_CONSTRUCTOR_KW_ARGS:
            return self._refuse()
        tup = ormsgpack.unpackb(data, ext_hook=self.plain, option=ormsgpack.OPT_NON_STR_KEYS)
        if (
            not isinstance(tup, list)
            or len(tup) != 3
            or tuple(tup[:2]) != INTERRUPT_CLASS
            or not isinstance(tup[2], dict)
            or "value" not in tup[2]
            or not set(tup[2]) <= INTERRUPT_FIELDS
        ):
            return self._refuse()
        return _Interrupt(tup[2]["value"])

    def plain(self, code: int, data: bytes) -> Any:
        return self._refuse()

    def _refuse(self) -> None:
        self.refused = True
        return None


def decode_interrupt_write(kind: str, blob: bytes) -> Any | None:
    """The value of the one `Interrupt` a pending `__interrupt__` write holds (serialized as
    `(kind, blob)` by the saver's serializer), or None when the write is anything else."""
    if kind != "msgpack":
        return None
    decoder = _Decoder()
    try:
        written = ormsgpack.unpackb(
            blob, ext_hook=decoder.interrupt, option=ormsgpack.OPT_NON_STR_KEYS
        )
    except ValueError:  # not msgpack, or a hook failure: leave it to the serializer
        return None
    if decoder.refused:
        return None
    asked = written if isinstance(written, list) else [written]
    if len(asked) != 1 or not isinstance(asked[0], _Interrupt):
        return None
    return asked[0].value


async def read_paused(saver: object, thread_id: str) -> Paused | None:
    """The thread's approval request and checkpoint values when its latest checkpoint has
    exactly one pending write, the approval interrupt; None in every other case."""
    if isinstance(saver, AsyncSqliteSaver):
        return await _read_sqlite(saver, thread_id)
    if (pg := pg_checkpoints.postgres_saver(saver)) is not None:
        row = await pg_checkpoints.latest_checkpoint_row(pg, thread_id)
        if row is None:
            return None
        writes = row["pending_writes"] or []
        if len(writes) != 1 or bytes(writes[0][1]).decode() != INTERRUPT:
            return None
        value = decode_interrupt_write(bytes(writes[0][2]).decode(), bytes(writes[0][3]))
        if value is None:
            return None
        return Paused(value, pg_checkpoints.channel_values(pg, row))
    return None


_LATEST = (
    "SELECT checkpoint_id, type, checkpoint FROM checkpoints"
    " WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1"
)
_WRITES = (
    "SELECT channel, type, value FROM writes"
    " WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id = ? LIMIT 2"
)
"""`AsyncSqliteSaver.aget_tuple`'s two queries for the latest checkpoint of the root namespace
and its pending writes (at most two: one is all this reader accepts, so their order does not
matter)."""


async def _read_sqlite(saver: AsyncSqliteSaver, thread_id: str) -> Paused | None:
    await saver.setup()
    async with saver.lock, saver.conn.cursor() as cur:
        await cur.execute(_LATEST, (thread_id,))
        latest = await cur.fetchone()
        if latest is None:
            return None
        checkpoint_id, kind, blob = latest
        await cur.execute(_WRITES, (thread_id, checkpoint_id))
        writes = list(await cur.fetchall())
    if len(writes) != 1 or writes[0][0] != INTERRUPT:
        return None
    value = decode_interrupt_write(writes[0][1], writes[0][2])
    if value is None:
        return None
    checkpoint = saver.serde.loads_typed((kind, blob))
    return Paused(value, dict(checkpoint["channel_values"]))
