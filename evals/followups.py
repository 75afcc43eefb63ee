"""The guardrail a sequence adds: a follow-up must say something the earlier touches did not.

"Just following up" is the message the guardrails exist to stop. A step after the first touch
sees the facts its earlier touches cited flagged (`Fact.cited_before`); it passes only when it
cites at least one fact that is neither one of those nor a memory of an earlier touch (a
`history` fact restates what was said, it is not news). A first touch has no fact flagged, so
the check passes on it and scores every first-touch dataset exactly as before.
"""

from __future__ import annotations

from evals.context import CheckContext
from gtm.domain.models import CheckResult, Draft

__all__ = ["cites_something_new"]


def cites_something_new(draft: Draft, ctx: CheckContext) -> CheckResult:
    """On a follow-up, at least one cited fact that no earlier touch cited."""
    earlier = [f for f in ctx.facts if f.cited_before]
    if not earlier:
        return CheckResult(check="cites_something_new", passed=True, score=1.0)
    by_id = {f.id: f for f in ctx.facts}
    cited = [by_id[i] for i in dict.fromkeys(draft.cited_fact_ids) if i in by_id]
    new = [f for f in cited if not f.cited_before and f.kind != "history"]
    if new:
        return CheckResult(check="cites_something_new", passed=True, score=1.0)
    fresh = [f.id for f in ctx.facts if not f.cited_before and f.kind != "history"]
    repeated = [f.id for f in cited if f.cited_before]
    finding = (
        "a follow-up that cites nothing new: "
        + (f"{', '.join(repeated)} were cited before" if repeated else "it cites no new fact")
        + ("" if fresh else "; research found nothing new to say")
    )
    return CheckResult(
        check="cites_something_new",
        passed=False,
        score=0.0,
        finding=finding,
        spans=(),
        instruction=(
            f"Build the message on a fact the earlier touches did not use ({', '.join(fresh)})."
            if fresh
            else "There is nothing new to say: do not send this follow-up, or add research."
        ),
    )
