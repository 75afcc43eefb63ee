"""The outreach graph, wired exactly as drawn in DESIGN.md §2. Only wiring lives here.

The builders import LangGraph's graph module and the nodes (with the model client and tracing
they bring) when they run, so a command that only opens checkpoints (it needs
`checkpoint_serde`) does not load them (issue 20).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from agents.state import InputState, OutputState, State
from gtm.domain import models
from gtm.domain.playbook import TierMatch
from gtm.domain.qualification import Qualification

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

    from agents.context import Deps

__all__ = ["build_graph", "route_after_intake", "checkpoint_serde"]


def checkpoint_serde() -> JsonPlusSerializer:
    """Checkpoint serializer that revives only our own state types (explicit allowlist)."""
    allowed: list[type[Any]] = [
        models.Account,
        models.Contact,
        models.Fact,
        models.Draft,
        models.CheckResult,
        models.Review,
        models.Decision,
        TierMatch,
        Qualification,
        State,
        InputState,
        OutputState,
    ]
    return JsonPlusSerializer(allowed_msgpack_modules=[(t.__module__, t.__name__) for t in allowed])


def route_after_intake(state: State) -> Literal["research", "record"]:
    """Skipped accounts go straight to record, which stores the reason."""
    return "record" if state.status == "skipped" else "research"


def build_graph(
    checkpointer: BaseCheckpointSaver[str] | None = None,
) -> CompiledStateGraph[State, Deps, InputState, OutputState]:
    from langgraph.graph import END, START, StateGraph

    from agents.approve import approve, route_after_approve
    from agents.context import Deps
    from agents.intake import intake
    from agents.personalize import personalize
    from agents.record import record
    from agents.research import research
    from agents.review import review, route_after_review
    from agents.send import send

    builder = StateGraph(
        State, context_schema=Deps, input_schema=InputState, output_schema=OutputState
    )
    builder.add_node("intake", intake)
    builder.add_node("research", research)
    builder.add_node("personalize", personalize)
    builder.add_node("review", review)
    builder.add_node("approve", approve)
    builder.add_node("send", send)
    builder.add_node("record", record)

    builder.add_edge(START, "intake")
    builder.add_conditional_edges("intake", route_after_intake)
    builder.add_edge("research", "personalize")
    builder.add_edge("personalize", "review")
    builder.add_conditional_edges("review", route_after_review)
    builder.add_conditional_edges("approve", route_after_approve)
    builder.add_edge("send", "record")
    builder.add_edge("record", END)
    return builder.compile(checkpointer=checkpointer, name="gtm-outreach")


def build_writer_graph() -> CompiledStateGraph[State, Deps, State, State]:
    """The write–review loop alone, from given facts: what `gtm eval` scores prompts with.

    The same `personalize` and `review` nodes and routing as the outreach graph; where that one
    would ask a human, this one ends.
    """
    from langgraph.graph import END, START, StateGraph

    from agents.context import Deps
    from agents.personalize import personalize
    from agents.review import review, route_after_review

    builder = StateGraph(State, context_schema=Deps)
    builder.add_node("personalize", personalize)
    builder.add_node("review", review)
    builder.add_edge(START, "personalize")
    builder.add_edge("personalize", "review")
    builder.add_conditional_edges(
        "review", route_after_review, {"personalize": "personalize", "approve": END}
    )
    return builder.compile(name="gtm-writer")
