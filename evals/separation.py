"""How well the research-free specificity score separates personalized from generic messages,
on the labeled real messages (`evals.messages`): ROC AUC, and precision and recall of
"personalized" at a threshold.

    .venv/bin/python -m evals.separation [--split dev|heldout|both] [--threshold 0.5]

AUC is the Mann-Whitney statistic: the chance that a random personalized message scores above a
random generic one (ties count half). The score was tuned on the dev split only; the held-out
split is what to quote.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from evals.messages import DEV_MESSAGES, HELDOUT_MESSAGES, LabeledMessage, load_messages
from evals.specificity import specificity

__all__ = ["Separation", "auc", "separation"]


@dataclass(frozen=True)
class Separation:
    n: int
    personalized: int
    auc: float | None
    threshold: float
    precision: float | None
    recall: float | None


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """ROC AUC by Mann-Whitney; None without both classes."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def separation(messages: Sequence[LabeledMessage], threshold: float = 0.5) -> Separation:
    """Score every message and measure how well the score tells the labels apart."""
    scores = [specificity(m.text).score for m in messages]
    truth = [m.label == "personalized" for m in messages]
    called = [s >= threshold for s in scores]
    tp = sum(c and t for c, t in zip(called, truth, strict=True))
    return Separation(
        n=len(messages),
        personalized=sum(truth),
        auc=auc(scores, truth),
        threshold=threshold,
        precision=tp / sum(called) if any(called) else None,
        recall=tp / sum(truth) if any(truth) else None,
    )


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m evals.separation")
    p.add_argument("--split", choices=("dev", "heldout", "both"), default="both")
    p.add_argument("--threshold", type=float, default=0.5)
    args = p.parse_args(argv)
    splits = {"dev": DEV_MESSAGES, "heldout": HELDOUT_MESSAGES}
    names = list(splits) if args.split == "both" else [args.split]
    for name in names:
        s = separation(load_messages(splits[name]), args.threshold)

        def fmt(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3f}"

        print(
            f"{name}: {s.n} messages ({s.personalized} personalized): AUC {fmt(s.auc)}; at "
            f"{s.threshold}: precision {fmt(s.precision)}, recall {fmt(s.recall)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
