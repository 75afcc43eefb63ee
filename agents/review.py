"""Review: score the draft with the playbook's guardrails and decide whether to rewrite.

The checks are the eval harness's own (`evals.guardrails.review_draft`), so what CI measures
and what the pipeline enforces cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime

from agents.context import Deps
from agents.state import State
from evals.guardrails import review_draft, revision_instructions

__all__ = ["review", "route_after_review"]


async def review(state: State, runtime: Runtime[Deps]) -> dict[str, Any]:
    deps = runtime.context
    assert state.draft is not None, "personalize writes a draft before review"
    verdict = review_draft(state.draft, state.facts, deps.playbook, account=state.account)
    failed = [r.check for r in verdict.failures]
    out_of_rewrites = state.revisions >= deps.playbook.guardrails.max_revisions
    update: dict[str, Any] = {
        "review": verdict,
        "flagged": bool(failed) and out_of_rewrites,
        "events": [
            "review: passed"
            if not failed
            else f"review: failed {', '.join(failed)}"
            + (" (flagged for the reviewer)" if out_of_rewrites else " (rewriting)")
        ],
    }
    if failed and not out_of_rewrites:
        update["revisions"] = state.revisions + 1
        update["instructions"] = revision_instructions(verdict)
    return update


def route_after_review(state: State) -> Literal["personalize", "approve"]:
    """Rewrite while guardrails fail and rewrites remain; otherwise ask a human."""
    if state.review is not None and not state.review.passed and not state.flagged:
        return "personalize"
    return "approve"
