"""The judge, calibrated: how often the LLM judge agrees with people, next to the checks.

`gtm eval --judge` with a model endpoint grades every case of two labeled sets with the judge
(`evals.judge`, prompt `prompts/judge_draft.md`) and turns its 1-5 grades into the labels'
verdicts by the playbook's rule (`evals.judge`):

- **labeled**: the labeled drafts (`datasets/labeled/`), verdict pass/fail. The judge sees the
  draft with its research; a draft passes when every dimension reaches `pass_min`. The
  deterministic verdict is the guardrail checks' (fail when any check fails).
- **messages**: the held-out labeled real messages (`labeled_messages/heldout.yaml`), label
  personalized/generic. They come without research: the judge is shown "none" for the facts
  and "unknown" for the company and person. Personalized when personalization_depth reaches
  `personalized_min`. The deterministic verdict is the research-free specificity score at
  `DEFAULT_MIN_SPECIFICITY` (what `gtm lint` uses).

Both raters are compared with the labels (accuracy and Cohen's kappa, `evals.agreement`) over
the **same cases**: those the judge gave a usable answer for. The judge's coverage (answered ÷
all) is reported beside them, and the unanswered cases are listed by id with the reason, so a
judge that fails on the hard cases cannot look better by leaving them out unseen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel

from evals.agreement import Agreement, agreement
from evals.context import CheckContext
from evals.judge import DIMENSIONS, JudgeScores, draft_verdict, judge_text, message_verdict
from evals.messages import LabeledMessage
from evals.specificity import DEFAULT_MIN_SPECIFICITY, specificity
from gtm.domain.playbook import JudgeVerdicts, Playbook

__all__ = [
    "JUDGE_CONCURRENCY",
    "JudgeAgreement",
    "JudgedCase",
    "SetName",
    "ToJudge",
    "agreement_markdown",
    "judge_set",
    "message_items",
]

SetName = Literal["labeled", "messages"]

JUDGE_CONCURRENCY = 4
"""Judge calls in flight at once: a hosted endpoint answers a few in parallel without tripping
its rate limits, and a set of 150 cases takes minutes, not a quarter of an hour."""

_CLASSES: dict[SetName, tuple[str, str]] = {
    "labeled": ("pass", "fail"),
    "messages": ("personalized", "generic"),
}


@dataclass(frozen=True)
class ToJudge:
    """One labeled case: the text the judge grades, what it is graded against, the human label
    and the deterministic verdict (in the label's terms)."""

    id: str
    text: str
    channel: str
    ctx: CheckContext
    label: str
    checks: str


class JudgedCase(BaseModel):
    """One case's three verdicts; `judge` is None when the judge gave no usable answer."""

    id: str
    label: str
    checks: str
    judge: str | None = None
    scores: dict[str, int] | None = None
    error: str | None = None


class JudgeAgreement(BaseModel):
    """One labeled set, judged: every case with its verdicts, and the figures drawn from them."""

    name: SetName
    rule: str
    checks_by: str
    cases: list[JudgedCase]

    @property
    def answered(self) -> list[JudgedCase]:
        return [c for c in self.cases if c.judge is not None]

    @property
    def coverage(self) -> float | None:
        return len(self.answered) / len(self.cases) if self.cases else None

    def judge(self) -> Agreement:
        """The judge against the labels, over the cases it answered."""
        got = self.answered
        return agreement([c.judge for c in got], [c.label for c in got])

    def checks(self, *, all_cases: bool = False) -> Agreement:
        """The deterministic verdict against the labels, over the cases the judge answered
        (the same cases), or over every case."""
        got = self.cases if all_cases else self.answered
        return agreement([c.checks for c in got], [c.label for c in got])

    def metrics(self) -> dict[str, float]:
        """`judge_agreement.<set>.*`; a figure that is undefined (no cases, or kappa with one
        class on both sides) is left out rather than invented."""
        if not self.cases:
            return {}
        p = f"judge_agreement.{self.name}"
        j, c = self.judge(), self.checks()
        raw = {
            f"{p}.coverage": self.coverage,
            f"{p}.accuracy": j.accuracy,
            f"{p}.kappa": j.kappa,
            f"{p}.checks_accuracy": c.accuracy,
            f"{p}.checks_kappa": c.kappa,
        }
        return {k: round(v, 4) for k, v in raw.items() if v is not None}


def message_items(
    messages: Sequence[LabeledMessage], playbook: Playbook, sender: tuple[str, str]
) -> list[ToJudge]:
    """Labeled messages as cases to judge: no research, no account, no person; the
    deterministic verdict is the specificity score's."""
    ctx = CheckContext(facts=(), playbook=playbook, sender_name=sender[0], sender_company=sender[1])
    return [
        ToJudge(
            id=m.id,
            text=m.text,
            channel=m.channel,
            ctx=ctx,
            label=m.label,
            checks=(
                "personalized"
                if specificity(m.text, playbook).score >= DEFAULT_MIN_SPECIFICITY
                else "generic"
            ),
        )
        for m in messages
    ]


def _describe(name: SetName, rule: JudgeVerdicts) -> tuple[str, str]:
    if name == "labeled":
        return (
            f"pass when every dimension ({', '.join(DIMENSIONS)}) is at least {rule.pass_min}",
            "the guardrail checks (fail when any check fails)",
        )
    return (
        f"personalized when personalization_depth is at least {rule.personalized_min}",
        f"the specificity score at {DEFAULT_MIN_SPECIFICITY}",
    )


async def judge_set(
    model: BaseChatModel,
    name: SetName,
    items: Sequence[ToJudge],
    rule: JudgeVerdicts,
    *,
    prompts_dir: Path | None = None,
    on_progress: Callable[[str], None] = lambda _id: None,
) -> JudgeAgreement:
    """Grade every case with the judge, a few at a time, and keep every verdict."""
    gate = asyncio.Semaphore(JUDGE_CONCURRENCY)
    verdict = draft_verdict if name == "labeled" else message_verdict

    async def one(item: ToJudge) -> JudgedCase:
        async with gate:
            got = await judge_text(
                model, item.text, item.ctx, channel=item.channel, prompts_dir=prompts_dir
            )
        on_progress(item.id)
        case = JudgedCase(id=item.id, label=item.label, checks=item.checks)
        if isinstance(got, JudgeScores):
            case.judge = verdict(got, rule)
            case.scores = {d: int(getattr(got, d)) for d in DIMENSIONS}
        else:
            case.error = got
        return case

    cases = await asyncio.gather(*(one(i) for i in items))
    described, checks_by = _describe(name, rule)
    return JudgeAgreement(name=name, rule=described, checks_by=checks_by, cases=list(cases))


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


_TITLES: dict[SetName, str] = {
    "labeled": "labeled drafts (pass/fail)",
    "messages": "labeled messages, no research (personalized/generic)",
}


def agreement_markdown(sets: Sequence[JudgeAgreement]) -> list[str]:
    """The report section: per set, the judge and the checks against the labels."""
    lines = [
        "## The judge against the labels",
        "",
        "Accuracy and Cohen's kappa (1 perfect, 0 chance, – undefined) of each rater against "
        "the human labels, over the cases the judge gave a usable answer for.",
        "",
        "| set | cases | judge answered | judge accuracy | judge kappa | checks accuracy "
        "| checks kappa |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sets:
        j, c = s.judge(), s.checks()
        lines.append(
            f"| {_TITLES[s.name]} | {len(s.cases)} | {len(s.answered)} ({_f(s.coverage)}) | "
            f"{_f(j.accuracy)} | {_f(j.kappa)} | {_f(c.accuracy)} | {_f(c.kappa)} |"
        )
    lines.append("")
    for s in sets:
        every = s.checks(all_cases=True)
        lines += [
            f"### {_TITLES[s.name]}",
            "",
            f"- judge verdict: {s.rule} (playbook `evals.judge`)",
            f"- checks verdict: {s.checks_by}; on all {every.n} cases: accuracy "
            f"{_f(every.accuracy)}, kappa {_f(every.kappa)}",
        ]
        missing = [c for c in s.cases if c.judge is None]
        if missing:
            lines.append(
                f"- no usable answer for {len(missing)} of {len(s.cases)} (left out of both "
                "raters' figures): " + ", ".join(f"{c.id} ({c.error})" for c in missing)
            )
        for case in s.answered:
            if case.judge != case.label:
                lines.append(
                    f"- **{case.id}**: labeled {case.label}, judge says {case.judge} "
                    f"{case.scores}, checks say {case.checks}"
                )
        lines.append("")
    return lines
