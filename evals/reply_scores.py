"""Scoring reply classification against the labeled replies, for `gtm eval`.

Two measurements, kept apart because they mean different things:

- **rules** (`labeled.precision.reply_opt_out`, `labeled.recall.reply_opt_out`): the
  deterministic opt-out rules alone, no model. Recall must be 1.0 on the set: `reply_floor`
  turns anything less into a regression whatever the baseline says.
- **model** (`replies.precision.<signal>`, `replies.recall.<signal>`, `replies.exact_match`,
  `replies.quotes_verified`): the whole classifier (rules, then the model's quoted claims), only
  when a model ran. They measure the model and the prompt, like the generation metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel

from evals.datasets import ReplyCase
from evals.replies import ClassifiedReply, Evidence, SignalEvidence, classify
from gtm.domain.events import REPLY_SIGNALS, ReplySignal
from gtm.domain.playbook import Playbook

__all__ = [
    "OPT_OUT_RECALL",
    "ScoredReply",
    "reply_floor_breaches",
    "replies_markdown",
    "reply_metrics",
    "score_replies",
]

OPT_OUT_RECALL = "labeled.recall.reply_opt_out"
OPT_OUT_PRECISION = "labeled.precision.reply_opt_out"


class ScoredReply(BaseModel):
    """One labeled reply: what a person reads in it, what the rules and the classifier said."""

    id: str
    category: str
    language: str
    expected: list[ReplySignal]
    rules_opt_out: str | None
    got: list[ReplySignal] | None = None
    evidence: list[SignalEvidence] = []
    dropped: list[Evidence] = []
    model_error: str | None = None


def score_replies(
    cases: Sequence[ReplyCase],
    playbook: Playbook,
    classified: Mapping[str, ClassifiedReply] | None = None,
) -> list[ScoredReply]:
    """Every case through the rules; with `classified` (case id → the full classifier's
    verdict), that verdict too."""
    out = []
    for c in cases:
        rules = classify(c.body, c.headers, None, playbook)
        full = classified.get(c.id) if classified is not None else None
        out.append(
            ScoredReply(
                id=c.id,
                category=c.category,
                language=c.language,
                expected=list(c.expected),
                rules_opt_out=next(
                    (e.quote for e in rules.evidence if e.signal == "opt_out"), None
                ),
                got=list(full.signals) if full else None,
                evidence=list(full.evidence) if full else [],
                dropped=list(full.dropped) if full else [],
                model_error=full.model_error if full else None,
            )
        )
    return out


def _pr(pairs: Sequence[tuple[bool, bool]]) -> tuple[float | None, float | None]:
    tp = sum(e and g for e, g in pairs)
    fp = sum(g and not e for e, g in pairs)
    fn = sum(e and not g for e, g in pairs)
    return (tp / (tp + fp) if tp + fp else None, tp / (tp + fn) if tp + fn else None)


def reply_metrics(scored: Sequence[ScoredReply]) -> dict[str, float]:
    """Rules' opt-out precision and recall always; per-signal precision and recall of the full
    classifier when it ran. A class never predicted (or never expected) has no precision (or
    recall): it is left out rather than scored 1.0."""
    m: dict[str, float] = {}
    if not scored:
        return m
    p, r = _pr([("opt_out" in s.expected, s.rules_opt_out is not None) for s in scored])
    if p is not None:
        m[OPT_OUT_PRECISION] = p
    if r is not None:
        m[OPT_OUT_RECALL] = r
    ran = [s for s in scored if s.got is not None]
    if ran:
        for sig in REPLY_SIGNALS:
            p, r = _pr([(sig in s.expected, sig in (s.got or ())) for s in ran])
            if p is not None:
                m[f"replies.precision.{sig}"] = p
            if r is not None:
                m[f"replies.recall.{sig}"] = r
        m["replies.exact_match"] = sum(set(s.expected) == set(s.got or ()) for s in ran) / len(ran)
        kept = sum(e.source == "model" for s in ran for e in s.evidence)
        claimed = kept + sum(bool(d.quote) for s in ran for d in s.dropped)
        if claimed:
            m["replies.quotes_verified"] = kept / claimed
    return {k: round(v, 4) for k, v in m.items()}


def reply_floor_breaches(metrics: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """(metric, required, measured) for every floor the set must meet whatever the baseline:
    the rules must catch every labeled opt-out."""
    got = metrics.get(OPT_OUT_RECALL)
    return [(OPT_OUT_RECALL, 1.0, got)] if got is not None and got < 1.0 else []


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def replies_markdown(replies: Sequence[ScoredReply], m: Mapping[str, float]) -> list[str]:
    """The report's reply section: opt-out by rules, per signal precision and recall, then
    every reply where the rules or the classifier disagree with the label."""
    lines = [
        "## Reply classification",
        "",
        f"- opt-out by rules alone: precision {_fmt(m.get(OPT_OUT_PRECISION))}, "
        f"recall {_fmt(m.get(OPT_OUT_RECALL))} (must be 1.00)",
        "",
    ]
    if any(s.got is not None for s in replies):
        lines += ["| signal | precision | recall |", "|---|---|---|"]
        for sig in REPLY_SIGNALS:
            p, rc = m.get(f"replies.precision.{sig}"), m.get(f"replies.recall.{sig}")
            lines.append(f"| {sig} | {_fmt(p)} | {_fmt(rc)} |")
        lines.append("")
    lines += ["### Disagreements", ""]
    for s in replies:
        rules_wrong = ("opt_out" in s.expected) != (s.rules_opt_out is not None)
        model_wrong = s.got is not None and set(s.got) != set(s.expected)
        if rules_wrong or model_wrong:
            got = "rules only" if s.got is None else (", ".join(s.got) or "none")
            lines.append(
                f"- **{s.id}** ({s.category}, {s.language}): labeled "
                f"{', '.join(s.expected) or 'none'}; got {got}; opt-out rule {s.rules_opt_out!r}"
            )
            lines += [f"  - dropped {d.signal}: {d.quote!r}" for d in s.dropped]
            if s.model_error:
                lines.append(f"  - model: {s.model_error}")
    lines.append("")
    return lines
