"""Approve: pause for a human, then act on the decision.

The node is pure up to `interrupt()` because LangGraph re-runs it on resume. It pauses with an
`ApprovalRequest` (everything a reviewer needs) in the Agent Inbox `HumanInterrupt` shape
(`action_request`, `config`, `description`), so LangGraph Studio / Agent Inbox can drive the same
pause.

gtm's own answers (`gtm approve`, the web inbox) were held to the decision policy before the
graph resumed (`gtm.app.runner.take_decision`). An Agent Inbox answer (LangGraph Server, Studio)
reaches the node directly, so the node holds it to what the channel can carry (`SEND_BLOCKERS`)
and pauses again, saying why, when it cannot act on it, instead of sending or failing the run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import ValidationError

from agents.context import Deps
from agents.state import State
from evals.checks import length, placeholders
from evals.context import CheckContext
from evals.guardrails import review_draft
from gtm.domain.approval import ApprovalRequest, Finding
from gtm.domain.models import Decision, Draft

__all__ = [
    "approve",
    "route_after_approve",
    "approval_request",
    "parse_decision",
    "DecisionError",
    "AGENT_INBOX",
    "SEND_BLOCKERS",
]

AGENT_INBOX = "agent-inbox"
"""The reviewer recorded on a decision that came as an Agent Inbox `HumanResponse`."""

SEND_BLOCKERS = (length, placeholders)
"""Guardrails whose failure means the channel cannot carry the text (`EDIT_BLOCKERS` in
`gtm.app.runner`): an Agent Inbox accept or edit that fails one is not acted on."""


class DecisionError(ValueError):
    """A resume value that is not a decision."""


def approval_request(state: State) -> ApprovalRequest:
    """What the reviewer is asked: built from the state alone, so re-running it is harmless."""
    assert state.draft is not None and state.contact is not None
    return ApprovalRequest(
        account_id=state.account.account_id,
        company=state.account.company,
        tier=state.tier.tier if state.tier else None,
        review=state.tier.review if state.tier else "always",
        contact=state.contact,
        draft=state.draft,
        facts=tuple(state.facts),
        findings=tuple(
            Finding(check=r.check, finding=r.finding, spans=r.spans)
            for r in (state.review.failures if state.review else ())
        ),
        flagged=state.flagged,
    )


def parse_decision(value: Any, *, at: datetime) -> Decision:
    """Accept gtm's own `Decision` dict or an Agent Inbox `HumanResponse` (or a list of one).

    `at` stamps a decision that carries no time of its own (every Agent Inbox response).
    """
    if isinstance(value, Decision):
        return value
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, dict):
        raise DecisionError(f"expected a decision mapping, got {type(value).__name__}")
    if "action" in value:
        try:
            return Decision.model_validate({"at": at, **value})
        except ValidationError as exc:
            raise DecisionError(str(exc)) from exc
    kind, args = value.get("type"), value.get("args")
    if kind == "accept":
        return Decision(action="approve", reviewer=AGENT_INBOX, at=at)
    if kind == "edit" and isinstance(args, dict):
        body = (args.get("args") or {}).get("body")
        if isinstance(body, str) and body.strip():
            subject = (args.get("args") or {}).get("subject")
            return Decision(action="edit", text=body, subject=subject, reviewer=AGENT_INBOX, at=at)
    if kind == "response" and isinstance(args, str) and args.strip():
        return Decision(action="regenerate", instructions=args, reviewer=AGENT_INBOX, at=at)
    if kind == "ignore":
        return Decision(
            action="reject", reason="ignored in Agent Inbox", reviewer=AGENT_INBOX, at=at
        )
    raise DecisionError(f"not a decision: {value!r}")


def _from_agent_inbox(value: Any) -> bool:
    """A `HumanResponse` (or a list of one), not gtm's own decision mapping."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return isinstance(value, dict) and "type" in value and "action" not in value


def _refusal(state: State, decision: Decision, deps: Deps) -> str | None:
    """Why an Agent Inbox decision cannot be acted on (what the channel cannot carry), or None."""
    if decision.reviewer != AGENT_INBOX or decision.action not in ("approve", "edit"):
        return None
    draft = state.draft
    assert draft is not None
    if decision.action == "edit":
        subject = decision.subject if decision.subject is not None else draft.subject
        draft = draft.model_copy(update={"body": (decision.text or "").strip(), "subject": subject})
    ctx = CheckContext(
        facts=list(state.facts),
        playbook=deps.playbook,
        contact=state.contact,
        sender_name=deps.sender_name,
        sender_company=deps.sender_company,
    )
    failures = review_draft(draft, ctx, checks=SEND_BLOCKERS).failures
    if not failures:
        return None
    return "; ".join(f"{r.check}: {r.finding}" for r in failures) + ". Edit it or reject it."


async def approve(state: State, runtime: Runtime[Deps]) -> dict[str, Any]:
    pause = approval_request(state).interrupt_value()
    answer = interrupt(pause)
    while True:  # re-runs on resume replay the same refusals, deterministically, from the state
        try:
            decision = parse_decision(answer, at=runtime.context.clock())
            refused = _refusal(state, decision, runtime.context)
        except DecisionError as exc:
            if not _from_agent_inbox(answer):
                raise
            refused = f"not understood ({exc})"
        if refused is None:
            break
        note = f"⚠ Not acted on: {refused}\n\n"
        answer = interrupt({**pause, "description": note + pause["description"]})
    # Everything below runs once, after the human answered.
    draft = state.draft
    assert draft is not None
    who = f"{decision.action} by {decision.reviewer}"
    if decision.action == "approve":
        return {"decision": decision, "events": [f"approve: {who}"]}
    if decision.action == "edit":
        edited = Draft(
            channel=draft.channel,
            step=draft.step,
            subject=decision.subject if decision.subject is not None else draft.subject,
            body=(decision.text or "").strip(),
            cited_fact_ids=draft.cited_fact_ids,
            prompt_version=draft.prompt_version,
            model="human",
        )
        return {"decision": decision, "draft": edited, "events": [f"approve: {who}"]}
    if decision.action == "reject":
        return {
            "decision": decision,
            "status": "rejected",
            "skip_reason": "rejected",
            "skip_detail": decision.reason or "",
            "events": [f"approve: {who}: {decision.reason or 'no reason given'}"],
        }
    return {
        "decision": decision,
        "instructions": decision.instructions or "",
        "revisions": 0,
        "flagged": False,
        "events": [f"approve: {who}: {decision.instructions}"],
    }


def route_after_approve(state: State) -> Literal["send", "personalize", "record"]:
    action = state.decision.action if state.decision else "reject"
    if action in ("approve", "edit"):
        return "send"
    if action == "regenerate":
        return "personalize"
    return "record"
