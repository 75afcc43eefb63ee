"""The outreach graph as LangGraph Server serves it (`langgraph.json`, `langgraph dev`).

The server owns the threads and the checkpointer; gtm supplies the graph and its dependencies.
`make_graph` is the graph factory `langgraph.json` names, and the server calls it for every run,
state read and schema fetch. Reads get the bare graph. Runs get it bound to this process's
workspace: the data directory's stores (outbox, suppression list, memory, events), the providers
and the model that `Settings` describe (`GTM_*` and the config file), opened on the first run,
kept for the life of the process and closed by `lifespan` (`http.app` in `langgraph.json`).
Nothing is opened at import.

The approval pause is `agents.approve`'s: an Agent Inbox `HumanInterrupt` (`action_request`,
`config`, `description`, with gtm's whole request under `request`), answered with a
`HumanResponse` (`accept`, `edit`, `response`, `ignore`) through the server's
`Command(resume=...)`. Sends go through the data directory's outbox, whose keys (campaign,
account, contact, step, channel) turn a second resume, a re-run or a second thread of the same
account into a no-op instead of a second message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph_sdk.runtime import ServerRuntime
from pydantic import TypeAdapter
from starlette.applications import Starlette

from agents.context import Deps
from agents.graph import build_graph
from agents.state import InputState, OutputState, State
from gtm.app.settings import load_settings
from gtm.app.workspace import Workspace, open_workspace

__all__ = ["ServedGraph", "make_graph", "app", "lifespan", "close_workspace"]


@dataclass
class _Process:
    """The process's workspace, opened once, on the first run."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stack: contextlib.AsyncExitStack | None = None
    workspace: Workspace | None = None


_process = _Process()
_input = TypeAdapter(InputState)


async def _open_workspace() -> Workspace:
    async with _process.lock:
        if _process.workspace is None:
            stack = contextlib.AsyncExitStack()
            try:
                ws = await stack.enter_async_context(
                    open_workspace(load_settings(), with_model=True)
                )
            except BaseException:
                await stack.aclose()
                raise
            _process.stack, _process.workspace = stack, ws
        return _process.workspace


async def close_workspace() -> None:
    """Close the stores and stop the model this process opened (nothing, if it opened none)."""
    async with _process.lock:
        stack, _process.stack, _process.workspace = _process.stack, None, None
    if stack is not None:
        await stack.aclose()


def _typed(value: Any) -> Any:
    """A run's JSON input as the graph's typed `InputState` fields (the account a pydantic
    `Account`, not a dict); resumes (`Command`) and `None` pass through."""
    if not isinstance(value, dict):
        return value
    typed = _input.validate_python(value)
    return {f.name: getattr(typed, f.name) for f in dataclasses.fields(typed)}


class ServedGraph(CompiledStateGraph[State, Deps, InputState, OutputState]):
    """The outreach graph, run with the workspace's `Deps` whatever context the server passes.

    The server hands every run a JSON context (the assistant's, merged with the request's);
    gtm's dependencies are live clients that no JSON describes, so this graph declares no
    context schema, refuses a non-empty one, and runs each thread with the workspace's `Deps`
    for its campaign (the playbook the campaign was started with, as `gtm run` does).
    """

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        if kwargs.pop("context", None):
            raise ValueError(
                "the outreach graph takes no run context: its stores, providers and model "
                "come from the server's GTM_* settings"
            )
        ws = _process.workspace
        if ws is None:
            raise RuntimeError("the workspace is not open: runs go through make_graph")
        typed = _typed(input)
        if isinstance(typed, dict):
            campaign = typed["campaign"]
        else:  # a resume: the thread already holds its campaign
            campaign = (await self.aget_state(config or {})).values.get("campaign")
        deps = ws.deps_for(campaign) if isinstance(campaign, str) else ws.deps
        async for chunk in super().astream(typed, config, context=deps, **kwargs):
            yield chunk


def _served() -> ServedGraph:
    graph = build_graph()
    attrs = {k: v for k, v in vars(graph).items() if k != "__orig_class__"}  # as Pregel.copy
    attrs["context_schema"] = None
    return ServedGraph(**attrs)


async def make_graph(runtime: ServerRuntime[None]) -> ServedGraph:
    """The graph for one server call; a run first opens the workspace (once per process)."""
    if runtime.execution_runtime is not None:
        await _open_workspace()
    return _served()


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Close the workspace when the server stops."""
    try:
        yield
    finally:
        await close_workspace()


app = Starlette(lifespan=lifespan)
"""Adds no route: `langgraph.json` names it (`http.app`) so that the server runs `lifespan`."""
