"""Review: score the draft with the playbook's guardrails and decide whether to rewrite.

The checks are the eval harness's own (`evals.guardrails.review_draft`), so what CI measures
and what the pipeline enforces cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime

from agents.context import Deps
from agents.same_account import memory_thread, with_colleagues
from agents.state import State
from evals.context import CheckContext, Peer
from evals.guardrails import review_draft
from gtm.domain.models import Review, Touch

__all__ = ["review", "route_after_review", "revision_note"]

_FINDING_CHARS = 100
_FIX_CHARS = 90


def _clip(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:") + "…"


def revision_note(verdict: Review) -> str:
    """What a rewrite is sent: one line per failed check (what was wrong, then the fix), each
    part clipped. Passed checks are not mentioned, and a long quote or id list cannot swell the
    prompt: the ids and the length limit already travel in the tool schema."""
    return "\n".join(
        f"- {r.check}: {_clip(r.finding, _FINDING_CHARS)}. {_clip(r.instruction, _FIX_CHARS)}"
        for r in verdict.failures
    )


async def review(state: State, runtime: Runtime[Deps]) -> dict[str, Any]:
    deps = runtime.context
    draft = state.draft
    assert draft is not None, "personalize writes a draft before review"
    account = state.account
    # The batch is the campaign: this draft is compared with the drafts already written for
    # other accounts, and then, once final, joins them (the same key `record` uses, so it is
    # stored once).
    peers = await deps.memory.similar_drafts(
        state.campaign, draft.body, exclude_account=account.account_id
    )
    ctx = CheckContext(
        facts=state.facts,
        playbook=deps.playbook,
        account=account,
        contact=state.contact,
        sender_name=deps.sender_name,
        sender_company=deps.sender_company,
        peers=[Peer(f"{t.contact} ({t.account_id})", t.text, c) for t, c in peers],
        quarantined=state.quarantined,
    )
    verdict = review_draft(draft, ctx)
    if deps.playbook.contacts_per_account > 1:  # several people here: never one message twice
        verdict = await with_colleagues(deps, state, draft.body, verdict)
    failed = [r.check for r in verdict.failures]
    out_of_rewrites = state.revisions >= deps.playbook.guardrails.max_revisions
    if not failed or out_of_rewrites:
        # Only the draft a human will see joins the batch; one being rewritten does not.
        await deps.memory.remember(
            Touch(
                kind="draft",
                account_id=account.account_id,
                campaign=state.campaign,
                at=deps.clock(),
                text=draft.body,
                contact=state.contact.name if state.contact else "",
                channel=draft.channel,
            ),
            key=f"{memory_thread(state)}:draft",
        )
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
        update["instructions"] = revision_note(verdict)
    return update


def route_after_review(state: State) -> Literal["personalize", "approve"]:
    """Rewrite while guardrails fail and rewrites remain; otherwise ask a human."""
    if state.review is not None and not state.review.passed and not state.flagged:
        return "personalize"
    return "approve"
