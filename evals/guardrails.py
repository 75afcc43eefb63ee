"""One entry point for scoring a draft: the review agent and the eval harness both call it."""

from __future__ import annotations

from collections.abc import Sequence

from evals.checks import ALL_CHECKS
from evals.context import Check, CheckContext
from gtm.domain.models import Draft, Review

__all__ = ["review_draft", "revision_instructions"]


def review_draft(
    draft: Draft, ctx: CheckContext, *, checks: Sequence[Check] = ALL_CHECKS
) -> Review:
    return Review(results=tuple(c(draft, ctx) for c in checks))


def revision_instructions(review: Review) -> str:
    """Numbered fixes for the writer, each with what was wrong and what to do."""
    return "\n".join(
        f"{i}. {r.check}: {r.finding}. {r.instruction}"
        for i, r in enumerate(review.failures, start=1)
    )
