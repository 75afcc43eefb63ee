"""Personalize: write the message for one person from the research facts, citing them.

The model answers through a forced function call (structured output) whose schema is built per
call: only the account's real fact ids may be cited and the text carries the channel's length
limit. llama.cpp grammar-constrains decoding to that schema, so even a small local model returns
the right shape, cites real facts and fits the channel. "Not enough to go on" is a value of the
output type, never a guess.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field, ValidationError

from agents.context import Deps
from agents.state import State
from agents.steps import PROMPT_FOR_STEP, first_step, step_at
from evals.text import find_injection
from gtm.domain.models import Draft, Fact, Step
from gtm.domain.playbook import Playbook
from prompts import load_prompt

__all__ = [
    "personalize",
    "DraftOutput",
    "first_step",
    "step_at",
    "mark_cited_before",
    "PROMPT_FOR_STEP",
    "draft_tool",
    "GRAMMAR_MAX_CHARS",
]


class DraftOutput(BaseModel):
    """The message, written for one person."""

    subject: str | None = Field(
        default=None, description="Email subject line (email only; leave empty for LinkedIn)."
    )
    body: str = Field(description="The message text exactly as it will be sent, plain text.")
    cited_fact_ids: list[str] = Field(
        default_factory=list, description="Ids of the facts the message uses, e.g. ['f1', 'f3']."
    )
    insufficient_information: bool = Field(
        default=False, description="True if the facts are too thin to write a specific message."
    )


def mark_cited_before(facts: list[Fact], earlier_cited: list[str]) -> list[Fact]:
    """The facts with those earlier touches cited flagged, the new ones first: a follow-up
    writer sees what it has not used yet before what it has."""
    before = set(earlier_cited)
    marked = [
        f.model_copy(update={"cited_before": True})
        if f.text in before and not f.cited_before
        else f
        for f in facts
    ]
    return sorted(marked, key=lambda f: f.cited_before)


def render_facts(facts: list[Fact]) -> str:
    return (
        "\n".join(
            f"[{f.id}] {f.text} (source: {f.source})"
            + (" (cited in an earlier message: do not lean on it again)" if f.cited_before else "")
            + (f" (stale: dated {f.published}, too old to present as news)" if f.stale else "")
            for f in facts
        )
        or "none"
    )


GRAMMAR_MAX_CHARS = 1000
"""The longest `maxLength` the embedded server can enforce: llama-cpp-python writes a string's
length limit as one nested optional per character, and llama.cpp's grammar parser (0.3.36)
rejects the grammar above about 1,000 of them (the server then fails the call). A longer channel
limit (the email body's 1,500, a LinkedIn message's 1,900) is sent as this one."""


def draft_tool(fact_ids: Sequence[str], step: Step, playbook: Playbook) -> dict[str, Any]:
    """The `DraftOutput` function for one call, with this account's limits in its parameters.

    `cited_fact_ids` may hold only the ids of the facts in the prompt (an `enum`), at least
    `min_cited_facts` of them (fewer when the research has fewer), and the body and subject
    carry the channel's `maxLength`. A hosted model reads these as part of the schema (sent
    without `strict`: strict mode rejects length and item-count keywords); llama.cpp's server
    turns the parameters of the function `tool_choice` names into a GBNF grammar, so the
    embedded model cannot write an id that does not exist or a body over the limit. Every key
    is required (the grammar lets a model leave out an optional one) and the ids come first:
    the facts are chosen before the text, and a long body cannot crowd them out of the answer.
    A limit above `GRAMMAR_MAX_CHARS` is sent as that (hosted and embedded get one schema).
    `DraftOutput` still validates what comes back; what the schema only asks of a hosted model
    (an unknown id, a long body) is review's finding, as before.
    """
    ids = list(dict.fromkeys(fact_ids))
    need = min(playbook.guardrails.min_cited_facts, len(ids))
    cited: dict[str, Any] = {"type": "array", "minItems": need, "maxItems": len(ids)}
    cited["items"] = {"type": "string", "enum": ids} if ids else {"type": "string"}
    limit = min(playbook.channels.max_chars(step), GRAMMAR_MAX_CHARS)
    props: dict[str, Any] = {"cited_fact_ids": cited}
    if step == "email":
        props["subject"] = {
            "type": "string",
            "minLength": 1,
            "maxLength": playbook.channels.email_subject_max_chars,
        }
    props["body"] = {
        "type": "string",
        "minLength": 1,
        "maxLength": limit,
        "description": "Plain text exactly as sent.",
    }
    props["insufficient_information"] = {
        "type": "boolean",
        "description": "True if the facts are too thin for a specific message.",
    }
    return {
        "name": DraftOutput.__name__,
        "description": "The message, written for one person.",
        "parameters": {
            "type": "object",
            "properties": props,
            "required": list(props),
            "additionalProperties": False,
        },
    }


_WRITERS: OrderedDict[tuple[int, str], tuple[BaseChatModel, Any]] = OrderedDict()
_MAX_WRITERS = 64


def _writer(model: BaseChatModel, tool: dict[str, Any]) -> Any:
    """The structured-output runnable for `model` and this tool schema, built once per pair
    (building it converts the schema each time). Accounts share few schemas (the same fact ids
    and channel give the same one), so a small LRU holds them."""
    key = (id(model), json.dumps(tool, sort_keys=True))
    known = _WRITERS.get(key)
    if known is None or known[0] is not model:
        known = (model, model.with_structured_output(tool, method="function_calling"))
        _WRITERS[key] = known
        if len(_WRITERS) > _MAX_WRITERS:
            _WRITERS.popitem(last=False)
    else:
        _WRITERS.move_to_end(key)
    return known[1]


def _follow_up_note(position: int) -> str:
    return (
        f"This is follow-up {position} in a sequence; the earlier touches are above. Do not "
        "repeat them or write 'just following up': use at least one fact not cited before."
    )


async def personalize(state: State, runtime: Runtime[Deps]) -> dict[str, Any]:
    deps = runtime.context
    contact = state.contact
    assert contact is not None, "intake chooses the contact before personalize"
    step = step_at(state.channel, state.sequence_position, deps.playbook)
    facts = (
        mark_cited_before(state.facts, state.earlier_cited)
        if state.sequence_position
        else state.facts
    )
    prompt = load_prompt(PROMPT_FOR_STEP[step], deps.prompts_dir, version=deps.prompt_version)
    history = [f.text for f in facts if f.kind == "history"]
    if state.sequence_position:
        history.append(_follow_up_note(state.sequence_position))
    patterns = deps.playbook.guardrails.injection_patterns
    title = contact.title if not find_injection(contact.title, patterns) else ""
    system, user = prompt.render_from(
        dict(
            company=state.account.company,
            contact_name=contact.name,
            contact_first_name=contact.first_name,
            contact_title=title or "unknown",
            segment=state.tier.segment if state.tier else (state.account.segment or "unknown"),
            facts=render_facts(facts),
            history="\n".join(history) or "none",
            max_chars=str(deps.playbook.channels.max_chars(step)),
            open_source_note=(
                "They use our open-source project: do not pitch. Ask about their usage or for "
                "feedback instead."
                if state.account.open_source_user
                else ""
            ),
            revision_instructions=state.instructions,
            sender_name=deps.sender_name,
            sender_company=deps.sender_company,
        )
    )
    writer = _writer(deps.model, draft_tool([f.id for f in facts], step, deps.playbook))
    event: str
    try:
        raw = await writer.ainvoke([SystemMessage(system), HumanMessage(user)])
        out = raw if isinstance(raw, DraftOutput) else DraftOutput.model_validate(raw)
        event = f"personalize: {prompt.ref} wrote {len(out.body)} chars"
        if out.insufficient_information:
            event += " (model says the facts are too thin)"
    except (ValidationError, ValueError) as exc:
        # A malformed answer is a draft that fails review, not a crashed thread.
        out = DraftOutput(body="", cited_fact_ids=[])
        event = f"personalize: {prompt.ref} returned an unusable answer ({type(exc).__name__})"
    draft = Draft(
        channel=state.channel,
        step=step,
        subject=((out.subject or "").strip() or None) if state.channel == "email" else None,
        body=out.body.strip(),
        cited_fact_ids=tuple(dict.fromkeys(i.strip() for i in out.cited_fact_ids if i.strip())),
        prompt_version=prompt.ref,
        model=deps.model_name,
    )
    update: dict[str, Any] = {"draft": draft, "status": "running", "events": [event]}
    if facts is not state.facts:
        update["facts"] = facts  # review reads which facts earlier touches cited
    return update
