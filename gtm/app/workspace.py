"""Assemble a run: stores under the data directory, the checkpointer, the model, the graph.

The CLI and the web inbox open one `Workspace`, use it, and close it. Nothing here runs at import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from agents.context import Deps
from gtm.app.campaigns import CampaignBook
from gtm.app.lazy_memory import LazyMemory
from gtm.app.ledger import Ledger
from gtm.app.llm import open_chat_model
from gtm.app.providers import open_providers
from gtm.app.settings import Settings
from gtm.domain.playbook import Playbook, load_playbook
from tools.events import EventStore
from tools.profiles import ProfileStore

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

    from agents.state import InputState, OutputState, State
    from gtm.app.cassette import Cassette
    from memory.chroma import ChromaMemory
    from tools.pg import Database

    Graph = CompiledStateGraph[State, Deps, InputState, OutputState]

__all__ = ["Workspace", "open_workspace", "ModelNotStarted"]


class ModelNotStarted:
    """Stands in for the model in commands that must not need one (approve, edit, reject, and
    the listings: inbox, status).

    If a graph path unexpectedly reaches the writer, the command fails loudly instead of
    starting a model behind the reviewer's back: the first attribute asked of this stand-in
    builds `gtm.app.no_model.RefusingChatModel` and answers with that model's, so LangChain
    handles the call as with any model until generating raises. The chat model is built only
    then because its class loads langchain-core's runnables and tracing (langsmith,
    OpenTelemetry), most of a listing command's start-up (issue 20).
    """

    def __init__(self) -> None:
        self._refusing: BaseChatModel | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_refusing":  # copy and pickle probes
            raise AttributeError(name)
        if self._refusing is None:
            from gtm.app.no_model import RefusingChatModel

            self._refusing = RefusingChatModel()
        return getattr(self._refusing, name)


@dataclass
class Workspace:
    settings: Settings
    playbook: Playbook
    """The playbook this command was opened with; a campaign may run under its own."""
    deps: Deps
    checkpointer: BaseCheckpointSaver[Any]
    """Where the threads' checkpoints live: what `graph` runs on."""
    ledger: Ledger
    model_description: str
    campaigns: CampaignBook
    events: EventStore
    """What came back (accepts, replies, bounces...), once each, matched to sent touches."""
    profiles: ProfileStore
    """What the user's own tools (Dux-Soup's visits) saw on people's LinkedIn profiles."""
    database: Database | None = None
    """The stores' shared Postgres pool (`GTM_DATABASE_URL`), for the stores opened on demand
    (escalations, red flags, model usage, the providers' send keys); None: SQLite files."""

    @functools.cached_property
    def graph(self) -> Graph:
        """The compiled outreach graph on `checkpointer`, built when first asked for: compiling
        loads LangGraph's graph module and every node, which `gtm status` never needs (issue
        20)."""
        from agents.graph import build_graph

        return build_graph(self.checkpointer)

    def playbook_for(self, campaign: str) -> Playbook:
        """The playbook `campaign` was started with (or adopted), else this command's."""
        record = self.campaigns.get(campaign)
        return record.playbook if record is not None else self.playbook

    def deps_for(self, campaign: str, *, variant: str | None = None) -> Deps:
        """The graph's context for one of `campaign`'s threads: its own playbook's caps,
        tiers and guardrails, whatever playbook this command was given, and the thread's prompt
        `variant` (the ledger's), if its campaign splits accounts among prompt versions."""
        pb = self.playbook_for(campaign)
        changes: dict[str, Any] = {}
        if pb is not self.deps.playbook:
            changes["playbook"] = pb
        if variant is not None and variant != self.deps.prompt_version:
            changes["prompt_version"] = variant
        return dataclasses.replace(self.deps, **changes) if changes else self.deps


@contextlib.contextmanager
def _closing_all(*things: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for t in things:
            t.close()


def _chroma(build: Callable[[type[ChromaMemory]], ChromaMemory]) -> LazyMemory:
    """The workspace's Chroma memory, built by `build` from the class when first used."""

    def open_() -> ChromaMemory:
        from memory.chroma import ChromaMemory

        return build(ChromaMemory)

    return LazyMemory(open_)


@contextlib.asynccontextmanager
async def open_workspace(
    settings: Settings,
    *,
    with_model: bool,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    playbook: Playbook | None = None,
    prompts_dir: Path | None = None,
    prompt_version: str | None = None,
    cassette: Cassette | None = None,
    memory_on_demand: bool = False,
) -> AsyncIterator[Workspace]:
    """Open every store under `settings.data_dir`; start the model only if `with_model`
    (recording its answers into, or replaying them from, `cassette`: `gtm eval`).

    `memory_on_demand` (commands that list what the ledger holds: `gtm inbox`, `gtm status`)
    leaves account memory closed until something calls it (then it opens as usual), so such a
    command does not import Chroma first; otherwise memory opens here, as errors should."""
    from gtm.app.stores import open_checkpointer, open_stores

    pb = playbook or load_playbook(settings.playbook)
    # SQLite files, or Postgres for the stores that have it (refused first if it is behind)
    closing_stores = contextlib.ExitStack()  # closed by the `with` below, after the memory
    opened = closing_stores.enter_context(open_stores(settings, clock))
    outbox, suppressions, events = opened.outbox, opened.suppressions, opened.events
    ledger, campaigns, profiles = opened.ledger, opened.campaigns, opened.profiles
    # the class comes in as an argument: chromadb is imported when the memory opens
    memory = _chroma(
        lambda ChromaMemory: (
            ChromaMemory.server(
                settings.chroma_url.get_secret_value(),
                token=settings.chroma_token.get_secret_value() if settings.chroma_token else None,
                tenant=settings.chroma_tenant,
                database=settings.chroma_database,
            )
            if settings.chroma_url
            else ChromaMemory(settings.path("memory", "chroma"))
        )
    )
    if not memory_on_demand:
        try:
            memory.open()
        except BaseException:
            closing_stores.close()  # a memory that fails to open leaves no store open
            raise
    with closing_stores, _closing_all(memory):
        async with contextlib.AsyncExitStack() as stack:
            providers = await stack.enter_async_context(
                open_providers(settings, clock=clock, database=opened.database)
            )
            model: BaseChatModel
            if with_model:
                model, description = await stack.enter_async_context(
                    open_chat_model(
                        settings.model_settings(),
                        log_dir=settings.data_dir / "logs",
                        cassette=cassette,
                    )
                )
            else:
                # a stand-in that fails on use, typed as the model it stands in for
                model, description = cast("BaseChatModel", ModelNotStarted()), "not started"
            saver = await stack.enter_async_context(open_checkpointer(settings))
            web = None
            if settings.web_contact:  # opt-in: research reaches the internet only when asked
                from tools.web import WebResearcher, WebSettings

                web = await stack.enter_async_context(
                    WebResearcher(
                        settings.data_dir / "web", WebSettings(contact=settings.web_contact)
                    )
                )
            deps = Deps(
                model=model,
                model_name=description,
                crm=providers.crm,
                linkedin=providers.linkedin,
                email=providers.email,
                memory=memory if memory_on_demand else memory.open(),
                outbox=outbox,
                suppressions=suppressions,
                playbook=pb,
                clock=clock,
                sender_name=settings.sender_name,
                sender_company=settings.sender_company,
                prompts_dir=prompts_dir,
                prompt_version=prompt_version,
                alerts=providers.alerts,
                events=events,
                profiles=profiles,
                web=web,
            )
            yield Workspace(
                settings=settings,
                playbook=pb,
                deps=deps,
                checkpointer=saver,
                ledger=ledger,
                model_description=description,
                campaigns=campaigns,
                events=events,
                profiles=profiles,
                database=opened.database,
            )
