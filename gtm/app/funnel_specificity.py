"""Does specificity pay? Reply rates by what the review said about a message, and prompt variants
compared honestly.

The unit here is the message, not the person: a genericness score, a guardrail verdict and a
prompt version belong to one sent text, so each rate is replies matched to such messages ÷ such
messages delivered at least `metrics.response_window_days` before `as_of`. A row written before
the outbox kept these facts falls in its own `unknown` bucket; it is shown, never dropped.
"""

from __future__ import annotations

from collections import defaultdict

from gtm.app.funnel_model import Breakdown, Rate, VariantComparison
from tools.outbox import SentBrief

__all__ = ["SpecificityTally", "genericness_bucket", "variant_verdict", "UNKNOWN"]

UNKNOWN = "unknown"
_BUCKET = 0.2


def genericness_bucket(score: float | None) -> str:
    """'0.0–0.2', '0.2–0.4', ... '0.8–1.0' (each holds its lower bound; 1.0 is in the last),
    or 'unknown'."""
    if score is None:
        return UNKNOWN
    i = min(int(score / _BUCKET + 1e-9), int(1 / _BUCKET) - 1)
    return f"{i * _BUCKET:.1f}–{(i + 1) * _BUCKET:.1f}"


def _tier(t: int | None) -> str:
    return UNKNOWN if t is None else f"tier {t}"


class SpecificityTally:
    """Counts delivered, old-enough messages and their replies by genericness bucket, verdict,
    tier and prompt version (all campaigns of the report), and by prompt version per campaign."""

    DIMENSIONS = ("genericness", "verdict", "tier", "prompt_version")

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, list[int]]] = {
            d: defaultdict(lambda: [0, 0]) for d in self.DIMENSIONS
        }
        self._variants: dict[str, dict[str, list[int]]] = defaultdict(
            lambda: defaultdict(lambda: [0, 0])
        )

    def add(self, entry: SentBrief, replied: bool) -> None:
        values = (
            genericness_bucket(entry.genericness),
            entry.verdict or UNKNOWN,
            _tier(entry.tier),
            entry.prompt_version or UNKNOWN,
        )
        hit = 1 if replied else 0
        for dim, value in zip(self.DIMENSIONS, values, strict=True):
            cell = self._counts[dim][value]
            cell[0] += hit
            cell[1] += 1
        cell = self._variants[entry.campaign][values[3]]
        cell[0] += hit
        cell[1] += 1

    def breakdowns(self) -> tuple[Breakdown, ...]:
        out = []
        for dim in self.DIMENSIONS:
            cells = self._counts[dim]
            out.append(Breakdown(dim, tuple((k, Rate(*cells[k])) for k in _ordered(cells))))
        return tuple(out)

    def variants(
        self, campaigns: tuple[str, ...], min_sample: dict[str, int]
    ) -> tuple[VariantComparison, ...]:
        out = []
        for c in campaigns:
            cells = self._variants.get(c, {})
            rates = tuple((k, Rate(*cells[k])) for k in _ordered(cells))
            out.append(VariantComparison(c, rates, variant_verdict(rates, min_sample[c])))
        return tuple(out)


def _ordered(cells: dict[str, list[int]]) -> list[str]:
    """Known values in order, `unknown` last."""
    return sorted(cells, key=lambda k: (k == UNKNOWN, k))


def _pct(r: Rate) -> str:
    low, high = r.interval or (0.0, 0.0)
    return f"{r} [95% CI {low:.0%}–{high:.0%}]"


def variant_verdict(rates: tuple[tuple[str, Rate], ...], min_sample: int) -> str:
    """A plain sentence: which prompt version is ahead, or that the sample cannot tell.

    A version is ahead only when every version has at least `min_sample` messages in its
    denominator and its 95% Wilson interval lies wholly above every other version's."""
    known = [(k, r) for k, r in rates if k != UNKNOWN]
    if not known:
        return "no prompt version recorded on these sends: nothing to compare"
    if len(known) == 1:
        return f"one prompt version only ({known[0][0]}: {_pct(known[0][1])}): nothing to compare"
    small = [(k, r) for k, r in known if r.den < min_sample]
    if small:
        said = ", ".join(f"{k} has {r.den}" for k, r in small)
        return f"too few sends to tell: {said} (at least {min_sample} each are needed)"
    leader, best = max(known, key=lambda kr: kr[1].value or 0.0)
    low = (best.interval or (0.0, 0.0))[0]
    overlapping = [(k, r) for k, r in known if k != leader and (r.interval or (0, 0))[1] >= low]
    if overlapping:
        k, r = overlapping[0]
        return (
            f"too few sends to tell: the 95% intervals of {leader} ({_pct(best)}) and {k} "
            f"({_pct(r)}) overlap"
        )
    others = "; ".join(f"{k} {_pct(r)}" for k, r in known if k != leader)
    return f"{leader} is ahead: {_pct(best)} against {others}"
