"""How far two raters agree on the same cases: raw accuracy and Cohen's kappa.

`gtm eval --judge` uses it to say how far to trust the LLM judge: its verdicts and the
deterministic checks' verdicts are each compared with the human labels, over the same cases.

Cohen's kappa corrects accuracy for the agreement two raters would reach by chance, given how
often each uses each class:

    p_o = share of cases where they agree
    p_e = sum over classes c of  P(rater a says c) * P(rater b says c)
    kappa = (p_o - p_e) / (1 - p_e)

1 is perfect agreement, 0 is what chance gives, below 0 is worse than chance. A rater that says
"pass" to everything scores kappa 0 against mixed labels, however many of them pass: that is the
point of the correction.

Degenerate cases, by definition here rather than by accident of floating point:

- no cases: accuracy and kappa are both None (nothing was measured);
- both raters put every case in one and the same class: p_e = 1 and kappa is 0/0, so None
  ("undefined"), never 1.0. A judge that passes an all-pass set has not shown it can tell
  pass from fail. (Accuracy is still 1.0.)
- one rater uses a single class and the other more than one: p_e < 1, kappa is defined (0 when
  the single-class rater matches the other's majority share, i.e. it adds nothing).

Pure arithmetic, no model and no numpy: a few dozen cases at a time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["Agreement", "agreement", "cohens_kappa"]


@dataclass(frozen=True)
class Agreement:
    """Two raters over `n` cases; None where the figure is undefined (see the module doc)."""

    n: int
    accuracy: float | None
    kappa: float | None


def cohens_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two equally long label sequences; None when undefined (see above)."""
    if len(a) != len(b):
        raise ValueError(f"raters labeled {len(a)} and {len(b)} cases; they must label the same")
    n = len(a)
    if n == 0:
        return None
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[c] * cb[c] for c in ca) / (n * n)
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1.0 - p_e)


def agreement(a: Sequence[Hashable], b: Sequence[Hashable]) -> Agreement:
    """Accuracy (share of cases on which they agree) and Cohen's kappa."""
    kappa = cohens_kappa(a, b)  # checks the lengths first
    n = len(a)
    accuracy = sum(x == y for x, y in zip(a, b, strict=True)) / n if n else None
    return Agreement(n=n, accuracy=accuracy, kappa=kappa)
