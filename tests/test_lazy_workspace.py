"""A workspace builds its graph and its stand-in model only when something uses them (issue 20).

`gtm status` never touches either; `gtm inbox` reads a paused thread's question and state from the
checkpointer alone (`waiting_state`), as `graph.aget_state` reads them, and leaves every other
thread to the graph. Which modules the commands load is checked in tests/test_cli_imports.py.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.serde.types import RESUME
from pydantic import BaseModel

import agents.personalize
import agents.steps
from gtm.app.checkpoints import pending_request, thread_config, thread_values, waiting_state
from gtm.app.no_model import NO_MODEL_MESSAGE, RefusingChatModel
from gtm.app.runner import apply_decision, take_decision
from gtm.app.settings import Settings
from gtm.app.workspace import ModelNotStarted, Workspace, open_workspace
from gtm.domain.models import Decision
from tests.support.openai_server import ScriptedOpenAIServer
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


async def test_a_paused_thread_is_read_without_compiling_the_graph(ws: Workspace) -> None:
    rows = [r for r in ws.ledger.rows() if r.status == "waiting_for_approval"]
    assert len(rows) >= 3, "the seed made drafts waiting for approval"
    light = [await waiting_state(ws, r.thread_id) for r in rows]
    assert not _compiled(ws), "a paused thread needed the graph"
    for row, (request, values) in zip(rows, light, strict=True):
        assert request is not None and request.draft.body
        assert (request, values) == await _as_the_graph_reads_it(ws, row.thread_id)
        assert values["campaign"] == row.campaign and values["draft"] == request.draft
    assert _compiled(ws)
    assert ws.graph.checkpointer is ws.checkpointer


async def test_any_other_thread_is_read_by_the_graph(ws: Workspace) -> None:
    waiting = [r for r in ws.ledger.rows() if r.status == "waiting_for_approval"]
    decided, answered = waiting[0], waiting[1]
    # a decided thread: resumed, sent by the local twin, finished
    decision = Decision(action="approve", reviewer="t", at=datetime.now(UTC))
    taken = await take_decision(ws, decided.id, decision, confirmed=True)
    assert (await apply_decision(ws, taken.row)).status != "waiting_for_approval"
    # a paused thread whose answer was written but not yet applied (a resume cut short)
    saved = await ws.checkpointer.aget_tuple(thread_config(answered.thread_id))
    assert saved is not None and saved.pending_writes
    task_id = saved.pending_writes[0][0]
    await ws.checkpointer.aput_writes(saved.config, [(RESUME, {"action": "ignore"})], task_id)

    for tid in (decided.thread_id, answered.thread_id, "spring:no-such-thread"):
        assert await waiting_state(ws, tid) == await _as_the_graph_reads_it(ws, tid)
    assert await waiting_state(ws, decided.thread_id) == (
        None,
        await thread_values(ws, decided.thread_id),
    )
    assert await waiting_state(ws, "spring:no-such-thread") == (None, {})


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
