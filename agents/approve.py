"""Approve: pause for a human, then act on the decision.

The node is pure up to `interrupt()` because LangGraph re-runs it on resume. It pauses with an
`ApprovalRequest` (everything a reviewer needs) in the Agent Inbox `HumanInterrupt` shape
(`action_request`, `config`, `description`), so LangGraph Studio / Agent Inbox can drive the same
pause.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import ValidationError

from agents.context import Deps
from agents.state import State
from gtm.domain.approval import ApprovalRequest, Finding
from gtm.domain.models import Decision, Draft

__all__ = ["approve", "route_after_approve", "approval_request", "parse_decision", "DecisionError"]


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
        return Decision(action="approve", reviewer="agent-inbox", at=at)
    if kind == "edit" and isinstance(args, dict):
        body = (args.get("args") or {}).get("body")
        if isinstance(body, str) and body.strip():
            subject = (args.get("args") or {}).get("subject")
            return Decision(
                action="edit", text=body, subject=subject, reviewer="agent-inbox", at=at
            )
    if kind == "response" and isinstance(args, str) and args.strip():
        return Decision(action="regenerate", instructions=args, reviewer="agent-inbox", at=at)
    if kind == "ignore":
        return Decision(
            action="reject", reason="ignored in Agent Inbox", reviewer="agent-inbox", at=at
        )
    raise DecisionError(f"not a decision: {value!r}")


async def approve(state: State, runtime: Runtime[Deps]) -> dict[str, Any]:
    answer = interrupt(approval_request(state).interrupt_value())
    decision = parse_decision(answer, at=runtime.context.clock())
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
