"""The optional LLM judge: personalization depth, relevance, clarity and tone, 1-5 with reasons.

It runs on the configured model only with `gtm eval --judge`; every other part of the harness
works without it. Its prompt is `prompts/judge_draft.md`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field, ValidationError

from evals.context import CheckContext
from gtm.domain.models import Draft
from gtm.domain.playbook import JudgeVerdicts
from prompts import load_prompt

__all__ = [
    "DIMENSIONS",
    "JudgeScores",
    "draft_text",
    "draft_verdict",
    "judge_draft",
    "judge_text",
    "message_verdict",
]

DIMENSIONS = ("personalization_depth", "relevance", "clarity", "tone")


class JudgeScores(BaseModel):
    """Grades for one message, 1 (bad) to 5 (excellent)."""

    personalization_depth: int = Field(ge=1, le=5)
    relevance: int = Field(ge=1, le=5)
    clarity: int = Field(ge=1, le=5)
    tone: int = Field(ge=1, le=5)
    reasons: str = Field(description="One sentence per dimension, quoting the message.")


async def judge_draft(
    model: BaseChatModel, draft: Draft, ctx: CheckContext, *, prompts_dir: Path | None = None
) -> JudgeScores | str:
    """The judge's scores, or a one-line reason the judge gave no usable answer."""
    return await judge_text(
        model, draft_text(draft), ctx, channel=draft.step, prompts_dir=prompts_dir
    )


def draft_text(draft: Draft) -> str:
    """A draft as the judge reads it: its subject line, if any, then the body."""
    return (f"Subject: {draft.subject}\n" if draft.subject else "") + draft.body


async def judge_text(
    model: BaseChatModel,
    text: str,
    ctx: CheckContext,
    *,
    channel: str,
    prompts_dir: Path | None = None,
) -> JudgeScores | str:
    """Grade any message text (a subject line, if any, already in it) against `ctx`: a message
    brought without research has no facts, and the judge is shown "none" for them."""
    prompt = load_prompt("judge_draft", prompts_dir)
    a, c = ctx.account, ctx.contact
    system, user = prompt.render_from(
        dict(
            company=a.company if a else "unknown",
            contact_name=c.name if c else "unknown",
            contact_title=(c.title if c else "") or "unknown",
            segment=(a.segment if a else "") or "unknown",
            facts="\n".join(f"[{f.id}] {f.text}" for f in ctx.facts) or "none",
            channel=channel,
            draft=text,
        )
    )
    grader = model.with_structured_output(JudgeScores, method="function_calling")
    try:
        raw = await grader.ainvoke([SystemMessage(system), HumanMessage(user)])
        return raw if isinstance(raw, JudgeScores) else JudgeScores.model_validate(raw)
    except (ValidationError, ValueError) as exc:
        return f"judge gave no usable answer ({type(exc).__name__})"


def draft_verdict(scores: JudgeScores, rule: JudgeVerdicts) -> Literal["pass", "fail"]:
    """The judge's grades as a labeled draft's verdict: pass when every dimension reaches
    the playbook's `evals.judge.pass_min`."""
    return "pass" if all(getattr(scores, d) >= rule.pass_min for d in DIMENSIONS) else "fail"


def message_verdict(scores: JudgeScores, rule: JudgeVerdicts) -> Literal["personalized", "generic"]:
    """The judge's grades as a labeled message's verdict: personalized when its
    personalization_depth reaches the playbook's `evals.judge.personalized_min`."""
    return "personalized" if scores.personalization_depth >= rule.personalized_min else "generic"
