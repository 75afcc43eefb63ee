"""The eval harness behind `gtm eval`: score labeled drafts and freshly written ones, compare
with a baseline, write `report.md` and `report.json`. Scoring only: the application
(`gtm.app.evaluate`) writes the generated drafts with the agents and hands them here.

Two measurements:

- **labeled**: every check runs on drafts a human labeled; per check, precision and recall of
  its verdicts against the labels, plus overall verdict accuracy. This measures the checks.
- **generation**: the current prompts and model write a draft for every account of the
  generation set (the same `personalize` → `review` loop as `gtm run`); the drafts are scored
  as one batch. This measures the prompts and the model.

Every metric is in 0..1 with higher better; the playbook's `evals` section says which are
tracked and how far one may fall below the baseline before the run fails.
"""

from __future__ import annotations

import fnmatch
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from evals.checks import CHECK_NAMES, duplicate_of, genericness_score
from evals.context import CheckContext, Peer
from evals.datasets import GenerationCase, LabeledCase
from evals.guardrails import review_draft
from evals.judge import DIMENSIONS
from evals.judge_calibration import JudgeAgreement, agreement_markdown
from evals.reply_scores import ScoredReply, replies_markdown
from gtm.domain.models import Draft, Review
from gtm.domain.playbook import Playbook

__all__ = [
    "BatchItem",
    "Embedder",
    "Regression",
    "Report",
    "ScoredDraft",
    "case_context",
    "compare",
    "generation_metrics",
    "labeled_metrics",
    "score_batch",
    "score_labeled",
    "scored_draft",
    "write_reports",
]

Embedder = Callable[[list[str]], np.ndarray[Any, np.dtype[np.float32]]]
"""Texts → unit-norm rows (the offline MiniLM model in production)."""


class ScoredDraft(BaseModel):
    """One draft with every check's verdict."""

    id: str
    category: str = ""
    batch: str | None = None
    subject: str | None = None
    body: str
    failing: list[str]
    findings: dict[str, str]
    scores: dict[str, float]
    genericness: float
    expected_failing: list[str] | None = None
    expected_verdict: str | None = None
    revisions: int | None = None
    judge: dict[str, Any] | None = None

    @property
    def agrees(self) -> bool:
        return self.expected_verdict == ("fail" if self.failing else "pass")


class Regression(BaseModel):
    metric: str
    baseline: float
    current: float
    allowed: float

    @property
    def drop(self) -> float:
        return self.baseline - self.current


class Report(BaseModel):
    created_at: datetime
    model: str
    prompt_versions: dict[str, str]
    datasets: list[str]
    metrics: dict[str, float]
    labeled: list[ScoredDraft] = Field(default_factory=list)
    generation: list[ScoredDraft] = Field(default_factory=list)
    replies: list[ScoredReply] = Field(default_factory=list)
    batches: dict[str, dict[str, Any]] = Field(default_factory=dict)
    baseline: str | None = None
    baseline_metrics: dict[str, float] = Field(default_factory=dict)
    max_regression: float = 0.0
    regressions: list[Regression] = Field(default_factory=list)
    untracked_in_baseline: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    judge_agreement: list[JudgeAgreement] = Field(default_factory=list)
    replay_misses: list[str] = Field(default_factory=list)
    """Model requests a replayed cassette had no answer for: the prompts or inputs changed."""
    """`--judge` with a model endpoint: the judge and the checks against the labels."""


@dataclass(frozen=True)
class BatchItem:
    """One draft to score, with its id in the report and what it is judged against."""

    id: str
    draft: Draft
    ctx: CheckContext


def _cosines(texts: list[str], embed: Embedder | None) -> np.ndarray[Any, Any] | None:
    if embed is None or len(texts) < 2:
        return None
    v = embed(texts)
    return np.asarray(v @ v.T)


def score_batch(
    items: Sequence[BatchItem], playbook: Playbook, embed: Embedder | None
) -> tuple[list[Review], dict[str, Any]]:
    """Score drafts written in one run together: each is compared with all the others.

    Returns the reviews and the batch verdict: a batch fails when the largest group of drafts
    sharing one skeleton is more than `batch_max_duplicate_share` of it.
    """
    texts = [i.draft.body for i in items]
    cos = _cosines(texts, embed)
    parent = list(range(len(items)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    # Every pair once. A draft's verdict depends only on the peers it duplicates (the check
    # reports the closest), so only those are handed to the check, as the pipeline hands it
    # only the nearest few drafts from memory.
    dups: list[list[Peer]] = [[] for _ in items]
    for a in range(len(items)):
        for b in range(a + 1, len(items)):
            c = None if cos is None else float(cos[a, b])
            if duplicate_of(texts[a], Peer(items[b].id, texts[b], c), playbook) is not None:
                dups[a].append(Peer(items[b].id, texts[b], c))
                dups[b].append(Peer(items[a].id, texts[a], c))
                parent[find(a)] = find(b)
    reviews = [
        review_draft(item.draft, replace(item.ctx, peers=peers))
        for item, peers in zip(items, dups, strict=True)
    ]
    groups: dict[int, list[str]] = defaultdict(list)
    for k, item in enumerate(items):
        groups[find(k)].append(item.id)
    largest = max(groups.values(), key=len) if groups else []
    share = len(largest) / len(items) if items else 0.0
    limit = playbook.guardrails.batch_max_duplicate_share
    verdict = {
        "size": len(items),
        "largest_skeleton": largest if len(largest) > 1 else [],
        "duplicate_share": round(share if len(largest) > 1 else 0.0, 4),
        "passed": not (len(largest) > 1 and share > limit),
    }
    return reviews, verdict


def scored_draft(item: BatchItem, review: Review, **extra: Any) -> ScoredDraft:
    """A draft's line in the report: every check's verdict, plus `extra` report fields."""
    return ScoredDraft(
        id=item.id,
        subject=item.draft.subject,
        body=item.draft.body,
        failing=[r.check for r in review.failures],
        findings={r.check: r.finding for r in review.failures},
        scores={r.check: round(r.score, 4) for r in review.results},
        genericness=round(genericness_score(item.draft, item.ctx), 4),
        **extra,
    )


def case_context(
    case: LabeledCase | GenerationCase, playbook: Playbook, sender: tuple[str, str]
) -> CheckContext:
    """What a case's draft is judged against: its facts, account and contact, and the sender."""
    return CheckContext(
        facts=case.facts,
        playbook=playbook,
        account=case.account.to_account(case.contact),
        contact=case.contact,
        sender_name=sender[0],
        sender_company=sender[1],
    )


def score_labeled(
    cases: Sequence[LabeledCase],
    playbook: Playbook,
    *,
    embed: Embedder | None,
    sender: tuple[str, str],
) -> tuple[list[ScoredDraft], dict[str, dict[str, Any]]]:
    """Every check on every labeled case; cases of one `batch` are scored together."""
    by_batch: dict[str | None, list[LabeledCase]] = defaultdict(list)
    for c in cases:
        by_batch[c.batch].append(c)
    scored: dict[str, ScoredDraft] = {}
    batches: dict[str, dict[str, Any]] = {}
    for batch, members in by_batch.items():
        groups = [[m] for m in members] if batch is None else [members]
        for group in groups:
            items = [
                BatchItem(c.id, c.as_draft(), case_context(c, playbook, sender)) for c in group
            ]
            reviews, verdict = score_batch(items, playbook, embed if batch else None)
            if batch is not None:
                batches[batch] = verdict
            for c, item, review in zip(group, items, reviews, strict=True):
                scored[c.id] = scored_draft(
                    item,
                    review,
                    category=c.category,
                    batch=c.batch,
                    expected_failing=list(c.expected.failing),
                    expected_verdict=c.expected.verdict,
                )
    return [scored[c.id] for c in cases], batches


def labeled_metrics(scored: Sequence[ScoredDraft]) -> dict[str, float]:
    """Verdict accuracy, and per check precision and recall against the labels.

    A check that never fired (or was never expected to) has no precision (or recall); it is
    left out rather than scored 1.0.
    """
    m: dict[str, float] = {}
    if not scored:
        return m
    m["labeled.verdict_accuracy"] = sum(s.agrees for s in scored) / len(scored)
    for check in CHECK_NAMES:
        tp = sum(check in s.failing and check in (s.expected_failing or ()) for s in scored)
        fp = sum(check in s.failing and check not in (s.expected_failing or ()) for s in scored)
        fn = sum(check not in s.failing and check in (s.expected_failing or ()) for s in scored)
        if tp + fp:
            m[f"labeled.precision.{check}"] = tp / (tp + fp)
        if tp + fn:
            m[f"labeled.recall.{check}"] = tp / (tp + fn)
    return {k: round(v, 4) for k, v in m.items()}


def generation_metrics(
    scored: Sequence[ScoredDraft], batch: dict[str, Any] | None
) -> dict[str, float]:
    m: dict[str, float] = {}
    if not scored:
        return m
    n = len(scored)
    m["generation.pass_rate"] = sum(not s.failing for s in scored) / n
    for check in CHECK_NAMES:
        m[f"generation.pass_rate.{check}"] = sum(check not in s.failing for s in scored) / n
    m["generation.mean_specificity"] = 1 - sum(s.genericness for s in scored) / n
    m["generation.first_draft_pass_rate"] = (
        sum(not s.failing and (s.revisions or 0) == 0 for s in scored) / n
    )
    if batch is not None:
        m["generation.distinct_share"] = 1 - float(batch["duplicate_share"])
    judged = [s.judge for s in scored if s.judge and "error" not in s.judge]
    for dim in DIMENSIONS if judged else ():
        m[f"judge.{dim}"] = sum((j[dim] - 1) / 4 for j in judged) / len(judged)
    return {k: round(v, 4) for k, v in m.items()}


def compare(
    metrics: dict[str, float], baseline: dict[str, float], playbook: Playbook
) -> tuple[list[Regression], list[str]]:
    """Tracked metrics that fell more than `max_regression` below the baseline, and tracked
    metrics measured now that the baseline does not have (they cannot regress yet)."""
    cfg = playbook.evals
    tracked = [k for k in metrics if any(fnmatch.fnmatchcase(k, p) for p in cfg.tracked)]
    regressions = [
        Regression(metric=k, baseline=baseline[k], current=metrics[k], allowed=cfg.allowed_drop(k))
        for k in tracked
        if k in baseline and baseline[k] - metrics[k] > cfg.allowed_drop(k) + 1e-9
    ]
    missing = [k for k in tracked if k not in baseline]
    return regressions, missing


def write_reports(report: Report, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    js = out / "report.json"
    unused = set() if report.judge_agreement else {"judge_agreement"}  # as before --judge
    unused |= set() if report.replay_misses else {"replay_misses"}  # as before cassettes
    js.write_text(report.model_dump_json(indent=2, exclude=unused) + "\n", encoding="utf-8")
    md = out / "report.md"
    md.write_text(_markdown(report), encoding="utf-8")
    return md, js


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _markdown(r: Report) -> str:
    lines = [
        "# gtm eval report",
        "",
        f"- when: {r.created_at.isoformat(timespec='seconds')}",
        f"- model: {r.model}",
        f"- prompts: {', '.join(r.prompt_versions.values()) or '–'}",
        f"- datasets: {', '.join(r.datasets)}",
        f"- baseline: {r.baseline or 'none'} (a tracked metric may fall {r.max_regression:.2f})",
        *[f"- note: {n}" for n in r.notes],
        "",
    ]
    if r.regressions:
        lines += [
            "## Regressions",
            "",
            "| metric | baseline | now | drop | allowed |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {g.metric} | {g.baseline:.2f} | {g.current:.2f} | {g.drop:.2f} | {g.allowed:.2f} |"
            for g in r.regressions
        ]
        lines.append("")
    if r.replay_misses:
        lines += [
            "## Replay misses",
            "",
            "Model requests the cassette holds no answer for: the prompts or inputs changed since "
            "it was recorded. The metrics below leave those cases out; re-record the cassette.",
            "",
            *[f"- {m}" for m in r.replay_misses],
            "",
        ]
    lines += ["## Metrics", "", "| metric | value | baseline |", "|---|---|---|"]
    lines += [
        f"| {k} | {v:.4f} | {_fmt(r.baseline_metrics.get(k))} |"
        for k, v in sorted(r.metrics.items())
    ]
    lines.append("")
    if r.labeled:
        lines += [
            "## Checks against the labels",
            "",
            "| check | precision | recall |",
            "|---|---|---|",
        ]
        for c in CHECK_NAMES:
            p, rc = r.metrics.get(f"labeled.precision.{c}"), r.metrics.get(f"labeled.recall.{c}")
            lines.append(f"| {c} | {_fmt(p)} | {_fmt(rc)} |")
        lines += ["", "### Disagreements", ""]
        for s in r.labeled:
            if set(s.failing) != set(s.expected_failing or ()):
                lines.append(
                    f"- **{s.id}** ({s.category}): labeled {s.expected_failing or 'pass'}, "
                    f"checks say {s.failing or 'pass'}"
                )
                lines += [f"  - {c}: {f}" for c, f in s.findings.items()]
        lines.append("")
    if r.judge_agreement:
        lines += agreement_markdown(r.judge_agreement)
    if r.replies:
        lines += replies_markdown(r.replies, r.metrics)
    if r.batches:
        lines += [
            "## Batches",
            "",
            "| batch | drafts | largest skeleton | verdict |",
            "|---|---|---|---|",
        ]
        for name, b in sorted(r.batches.items()):
            lines.append(
                f"| {name} | {b['size']} | {', '.join(b['largest_skeleton']) or '–'} | "
                f"{'pass' if b['passed'] else 'FAIL'} |"
            )
        lines.append("")
    if r.generation:
        lines += ["## Generated drafts", ""]
        for s in r.generation:
            verdict = "pass" if not s.failing else "fails " + ", ".join(s.failing)
            lines += [
                f"### {s.id}: {verdict}",
                "",
                f"revisions {s.revisions}, genericness {s.genericness:.2f}",
                "",
                *(["> Subject: " + s.subject] if s.subject else []),
                *["> " + line for line in s.body.splitlines() or [""]],
                "",
                *[f"- {c}: {f}" for c, f in s.findings.items()],
            ]
            if s.judge:
                lines.append(f"- judge: {json.dumps(s.judge, ensure_ascii=False)}")
            lines.append("")
    return "\n".join(lines) + "\n"
