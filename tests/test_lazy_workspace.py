"""A workspace builds its graph and its stand-in model only when something uses them (issue 20).

`gtm status` never touches either; `gtm inbox` reads a paused thread's question and state from the
checkpoint tables alone (`waiting_state` through `gtm.app.paused_reader`), as `graph.aget_state`
reads them, and leaves every other thread to the graph: on SQLite and on Postgres, compared with
the graph's own read. Which modules the commands load is checked in tests/test_cli_imports.py.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.serde.types import INTERRUPT, RESUME
from langgraph.types import Interrupt
from pydantic import BaseModel

import agents.personalize
import agents.steps
from agents.graph import checkpoint_serde
from gtm.app import pg_checkpoints
from gtm.app.accounts import load_accounts
from gtm.app.checkpoints import pending_request, thread_config, thread_values, waiting_state
from gtm.app.no_model import NO_MODEL_MESSAGE, RefusingChatModel
from gtm.app.paused_reader import decode_interrupt_write, read_paused
from gtm.app.runner import apply_decision, run_campaign, take_decision
from gtm.app.settings import Settings
from gtm.app.workspace import ModelNotStarted, Workspace, open_workspace
from gtm.domain.models import Decision
from tests.support.openai_server import ScriptedOpenAIServer
from tests.support.postgres import PostgresServer, postgres_server  # noqa: F401
from tests.support.web import WEB_ACCOUNTS, seed


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, model_server: ScriptedOpenAIServer) -> Path:
    """Drafts waiting for approval, made by the real pipeline."""
    d = tmp_path_factory.mktemp("lazy")
    seed(d, model_server.base_url, [("spring", "linkedin", WEB_ACCOUNTS)])
    return d


@pytest.fixture
async def ws(seeded: Path, tmp_path: Path) -> AsyncIterator[Workspace]:
    """A workspace as `gtm inbox` opens it, on a copy of the seeded data (tests change it)."""
    data = tmp_path / "data"
    shutil.copytree(seeded, data)
    async with open_workspace(
        Settings(data_dir=data), with_model=False, memory_on_demand=True
    ) as rt:
        yield rt


def _compiled(rt: Workspace) -> bool:
    return "graph" in vars(rt)  # where functools.cached_property keeps what it built


async def _as_the_graph_reads_it(rt: Workspace, thread_id: str) -> tuple[Any, dict[str, Any]]:
    return await pending_request(rt, thread_id), await thread_values(rt, thread_id)


@pytest.fixture(params=["sqlite", "postgres"])
async def either(
    request: pytest.FixtureRequest,
    seeded: Path,
    tmp_path: Path,
    model_server: ScriptedOpenAIServer,
) -> AsyncIterator[Workspace]:
    """A workspace as `gtm inbox` opens it, with drafts waiting for approval made by the real
    pipeline: a copy of the seeded files (SQLite), or a fresh database of the session's
    Postgres cluster, seeded the same way."""
    data = tmp_path / "data"
    if request.param == "sqlite":
        shutil.copytree(seeded, data)
        async with open_workspace(
            Settings(data_dir=data), with_model=False, memory_on_demand=True
        ) as rt:
            yield rt
        return
    server = request.getfixturevalue("postgres_server")
    assert isinstance(server, PostgresServer)
    url = server.new_database()
    try:
        settings = Settings(
            data_dir=data, database_url=url, model_base_url=model_server.base_url, model="scripted"
        )
        async with open_workspace(settings, with_model=True) as rt:
            listing = load_accounts(WEB_ACCOUNTS)
            summary = await run_campaign(
                rt, listing.accounts, campaign="spring", channel="linkedin", concurrency=2
            )
            assert not summary.failures, summary.failures
        async with open_workspace(settings, with_model=False, memory_on_demand=True) as rt:
            assert pg_checkpoints.postgres_saver(rt.checkpointer) is not None
            yield rt
    finally:
        server.drop(url)


async def test_a_paused_thread_is_read_without_compiling_the_graph(either: Workspace) -> None:
    ws = either
    rows = [r for r in ws.ledger.rows() if r.status == "waiting_for_approval"]
    assert len(rows) >= 3, "the seed made drafts waiting for approval"
    for row in rows:  # the tables' reader answers every one of them
        assert await read_paused(ws.checkpointer, row.thread_id) is not None
    light = [await waiting_state(ws, r.thread_id) for r in rows]
    assert not _compiled(ws), "a paused thread needed the graph"
    for row, (request, values) in zip(rows, light, strict=True):
        assert request is not None and request.draft.body
        assert (request, values) == await _as_the_graph_reads_it(ws, row.thread_id)
        assert values["campaign"] == row.campaign and values["draft"] == request.draft
    assert _compiled(ws)
    assert ws.graph.checkpointer is ws.checkpointer


async def test_any_other_thread_is_read_by_the_graph(either: Workspace) -> None:
    ws = either
    waiting = [r for r in ws.ledger.rows() if r.status == "waiting_for_approval"]
    decided, answered, unusual = waiting[0], waiting[1], waiting[2]
    # a decided thread: resumed, sent by the local twin, finished
    decision = Decision(action="approve", reviewer="t", at=datetime.now(UTC))
    taken = await take_decision(ws, decided.id, decision, confirmed=True)
    assert (await apply_decision(ws, taken.row)).status != "waiting_for_approval"
    # a paused thread whose answer was written but not yet applied (a resume cut short)
    saved = await ws.checkpointer.aget_tuple(thread_config(answered.thread_id))
    assert saved is not None and saved.pending_writes
    task_id = saved.pending_writes[0][0]
    await ws.checkpointer.aput_writes(saved.config, [(RESUME, {"action": "ignore"})], task_id)
    # a paused thread whose question holds a value the reader does not decode (a date)
    saved = await ws.checkpointer.aget_tuple(thread_config(unusual.thread_id))
    assert saved is not None and saved.pending_writes and len(saved.pending_writes) == 1
    task_id, _, (asked,) = saved.pending_writes[0]
    odd = Interrupt(value={**asked.value, "asked_on": date(2026, 1, 2)}, id=asked.id)
    await ws.checkpointer.aput_writes(saved.config, [(INTERRUPT, [odd])], task_id)

    for tid in (decided.thread_id, answered.thread_id, unusual.thread_id, "spring:no-such-thread"):
        assert await read_paused(ws.checkpointer, tid) is None, tid
        assert await waiting_state(ws, tid) == await _as_the_graph_reads_it(ws, tid)
    assert await waiting_state(ws, decided.thread_id) == (
        None,
        await thread_values(ws, decided.thread_id),
    )
    assert await waiting_state(ws, "spring:no-such-thread") == (None, {})
    request, _ = await waiting_state(ws, unusual.thread_id)  # still shown, read by the graph
    assert request is not None and request.draft.body


@pytest.mark.parametrize("either", ["postgres"], indirect=True)
async def test_a_database_that_cannot_answer_is_left_to_the_saver(
    either: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Postgres a read that fails with a connection error is refused, so the graph's read
    (whose saver waits for the database and then says so in one line) answers instead."""
    import psycopg

    row = next(r for r in either.ledger.rows() if r.status == "waiting_for_approval")
    asked: list[str] = []

    def unreachable(saver: Any) -> Any:
        asked.append(row.thread_id)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(pg_checkpoints, "_connection", unreachable)
    assert await read_paused(either.checkpointer, row.thread_id) is None
    assert asked, "the reader did not try the database"
    request, values = await waiting_state(either, row.thread_id)  # the graph reads it
    assert _compiled(either) and len(asked) == 2
    assert request is not None and (request, values) == await _as_the_graph_reads_it(
        either, row.thread_id
    )


@dataclass
class _Other:
    value: Any
    id: str


_SERDE = checkpoint_serde()


def _written(value: Any) -> tuple[str, bytes]:
    """`value` serialized as the checkpointer writes a pending write."""
    return _SERDE.dumps_typed(value)


@pytest.mark.parametrize(
    "value",
    [
        {"request": {"draft": {"body": "Hi Zoë — a “quote”", "cited_fact_ids": ["f1", "f2"]}}},
        {"n": 1, "x": 1.5, "big": 2**40, "none": None, "yes": True, "raw": b"\x00\xff"},
        {1: "non-string key", "nested": [[{"a": []}], ()]},
        "a plain string",
        None,
    ],
)
def test_the_reader_decodes_an_interrupt_as_the_serializer_does(value: Any) -> None:
    revived = _SERDE.loads_typed(_written([Interrupt(value=value, id="abc")]))
    assert decode_interrupt_write(*_written([Interrupt(value=value, id="abc")])) == (
        revived[0].value
    )
    # one Interrupt not in a list is read the same way
    assert decode_interrupt_write(*_written(Interrupt(value=value, id="abc"))) == revived[0].value


@pytest.mark.parametrize(
    "written",
    [
        _written([Interrupt(value={"at": datetime(2026, 1, 2, tzinfo=UTC)}, id="a")]),
        _written([Interrupt(value={"when": date(2026, 1, 2)}, id="a")]),
        _written([Interrupt(value={"inner": Interrupt(value=1, id="b")}, id="a")]),
        _written([Interrupt(value=1, id="a"), Interrupt(value=2, id="b")]),
        _written([]),
        _written([_Other(value={"request": {}}, id="a")]),  # the same fields, another class
        _written({"value": {"request": {}}, "id": "a"}),  # the fields without the class
        _written(["not an interrupt"]),
        ("json", b'{"value": 1}'),
        ("pickle", b"\x80\x04N."),
        ("msgpack", b"\xc1 not msgpack"),
    ],
    ids=[
        "a datetime inside",
        "a date inside",
        "an interrupt inside",
        "two questions",
        "no question",
        "another dataclass",
        "a plain mapping",
        "a string",
        "json",
        "pickle",
        "broken bytes",
    ],
)
def test_the_reader_refuses_anything_else(written: tuple[str, bytes]) -> None:
    assert decode_interrupt_write(*written) is None


def test_the_reader_refuses_fields_an_interrupt_no_longer_has() -> None:
    """Old data dirs may hold an Interrupt written with `ns`/`when`/`resumable`: LangGraph's
    constructor derives the id from them; this reader does not guess."""
    import ormsgpack

    fields = {"value": {"request": {}}, "when": "during", "resumable": True, "ns": ["approve"]}
    inner = ormsgpack.packb(["langgraph.types", "Interrupt", fields])
    blob = ormsgpack.packb([ormsgpack.Ext(2, inner)])
    assert _SERDE.loads_typed(("msgpack", blob))[0].value == {"request": {}}  # LangGraph reads it
    assert decode_interrupt_write("msgpack", blob) is None
    fields = {"value": {"request": {}}, "id": "a"}  # today's shape, written by hand: read
    inner = ormsgpack.packb(["langgraph.types", "Interrupt", fields])
    assert decode_interrupt_write("msgpack", ormsgpack.packb([ormsgpack.Ext(2, inner)])) == {
        "request": {}
    }


class _Answer(BaseModel):
    text: str


async def test_the_model_stand_in_still_fails_loudly_when_used(ws: Workspace) -> None:
    model = ws.deps.model
    assert isinstance(model, ModelNotStarted) and ws.model_description == "not started"
    reader = model.with_structured_output(_Answer, method="function_calling")
    assert isinstance(model._refusing, RefusingChatModel)  # built by that first use
    with pytest.raises(RuntimeError, match="does not start a model") as raised:
        await reader.ainvoke("hello")
    assert str(raised.value) == NO_MODEL_MESSAGE


def test_the_stand_in_builds_nothing_until_used() -> None:
    assert ModelNotStarted()._refusing is None
    with pytest.raises(AttributeError):
        ModelNotStarted().__wrapped__  # noqa: B018 (a dunder probe is not a use)


def test_the_writers_step_constants_keep_their_old_import_path() -> None:
    assert agents.personalize.PROMPT_FOR_STEP is agents.steps.PROMPT_FOR_STEP
    assert agents.personalize.first_step is agents.steps.first_step
    assert agents.personalize.step_at is agents.steps.step_at
