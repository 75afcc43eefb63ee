"""The report's charts, drawn on the server with matplotlib and returned as SVG text.

Pure functions over plain numbers (the funnel's stages, a rate per week, a rate per bucket): no
store is read here, so the terminal report, the HTML file and the web page draw the same chart
from the same figures.

Each SVG is self-contained and safe to inline in a page with a strict Content-Security-Policy:
- text stays text (`svg.fonttype` "none"): labels are readable by screen readers and searchable,
  the file is several times smaller than glyph outlines, and no font is embedded or fetched; the
  browser draws them in DejaVu Sans or its own sans-serif;
- no `<style>` element and no `style` attribute (a CSP without 'unsafe-inline' would drop them):
  matplotlib's inline CSS is rewritten into SVG presentation attributes, which CSP allows;
- no script, no link, no URL but the XML namespace names; ids are prefixed with the chart's id,
  so several charts on one page never share an id;
- deterministic: no date or creator metadata, and a fixed salt for matplotlib's content-hashed
  ids, so the same figures give the same bytes.

The root element carries `id`, `class="gtm-chart gtm-chart-<kind>"` (plus `gtm-chart-empty`
when there is nothing to draw), `role="img"` and `aria-labelledby` pointing at its `<title>` and
at a `<desc>` that states the figures in words. Matplotlib is imported on first use (it costs
~0.5 s), so commands that draw nothing do not pay for it. Matplotlib is not thread-safe and its
settings (rcParams) are process-global, so one lock serialises drawing: the web server's threads
may call these functions at once.
"""

from __future__ import annotations

import io
import math
import re
import threading
from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

__all__ = ["NO_DATA", "funnel_bars", "rate_bars", "weekly_trend", "week_label"]

NO_DATA = "no data yet"
"""What a chart says when it has nothing to draw."""

_LOCK = threading.Lock()

_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "gtm-charts",
    "svg.id": None,
    "text.parse_math": False,  # a "$" in a label is a dollar sign, not mathtext
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#888888",
    "xtick.color": "#444444",
    "ytick.color": "#444444",
}
"""Fixed settings, applied over matplotlib's defaults (a user's matplotlibrc does not leak in)."""

_NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}

_BAR = "#3b6ea5"
_GOAL = "#2e7d32"
_RED = "#c62828"
_MUTED = "#777777"
_WIDTH = 7.0  # inches; the SVG scales with its container

_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def week_label(week: date) -> str:
    """`2025-W14`: the ISO week a date falls in, as the report names weeks."""
    year, number, _ = week.isocalendar()
    return f"{year}-W{number:02d}"


def funnel_bars(
    stages: Sequence[tuple[str, int]], title: str, *, chart_id: str | None = None
) -> str:
    """The funnel as horizontal bars, first stage on top, each with its count and its share of
    the first stage (no share when the first stage is zero). Nothing counted yet, or no
    stages: a small "no data yet" chart."""
    if any(n < 0 for _, n in stages):
        raise ValueError("a funnel stage counts people or actions: never below zero")
    first = stages[0][1] if stages else 0

    def share(n: int) -> str:
        return f"{n / first:.1%}" if first else "–"

    desc = "; ".join(f"{name}: {n:,} ({share(n)} of {stages[0][0]})" for name, n in stages)
    if not stages or all(n == 0 for _, n in stages):
        return _empty("funnel", title, chart_id, desc or NO_DATA)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        names = [name for name, _ in stages]
        counts = [n for _, n in stages]
        ys = list(range(len(stages)))
        bars = ax.barh(ys, counts, color=_BAR, height=0.65)
        for i, patch in enumerate(bars):
            patch.set_gid(f"bar-{i}")
        top = max(counts)
        for y, n in zip(ys, counts, strict=True):
            ax.text(n + top * 0.01, y, f"{n:,} · {share(n)}", va="center", fontsize=9)
        ax.set_yticks(ys, names)
        ax.invert_yaxis()
        ax.set_xlim(0, top * 1.25)
        ax.xaxis.set_visible(False)
        ax.spines["bottom"].set_visible(False)
        ax.set_title(title)

    height = 0.9 + 0.38 * len(stages)
    left = 0.25 + 0.075 * max(len(name) for name, _ in stages)  # the stage names, in inches
    margins = (left, 0.15, 0.15, 0.4)
    return _render("funnel", title, chart_id, desc, (_WIDTH, height), draw, margins=margins)


def weekly_trend(
    weeks: Sequence[date],
    values: Sequence[float | None],
    *,
    goal: float | None,
    red_below: float | None,
    title: str,
    as_percent: bool,
    counts: Sequence[str] | None = None,
    chart_id: str | None = None,
) -> str:
    """A figure per ISO week as a line with a dot per week, against the playbook's goal (a
    dashed line, when there is one) and its red flag (a shaded band below `red_below`, when
    there is one). A None value is a week without data: a gap in the line, not a zero.
    `counts` (e.g. "9 of 30") is printed under each week, so every rate shows its sample.
    `as_percent`: values are fractions shown as percentages."""
    if len(values) != len(weeks) or (counts is not None and len(counts) != len(weeks)):
        raise ValueError("weeks, values and counts must be of the same length")
    fmt = _percent if as_percent else _number
    labels = [week_label(w) for w in weeks]
    parts = [
        f"{w}: {'no data' if v is None else fmt(v)}" + (f" ({counts[i]})" if counts else "")
        for i, (w, v) in enumerate(zip(labels, values, strict=True))
    ]
    if goal is not None:
        parts.append(f"goal {fmt(goal)}")
    if red_below is not None:
        parts.append(f"red flag below {fmt(red_below)}")
    desc = "; ".join(parts)
    if all(v is None for v in values):
        return _empty("trend", title, chart_id, desc or NO_DATA)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        xs = list(range(len(weeks)))
        ys = [math.nan if v is None else v for v in values]
        present = [v for v in values if v is not None]
        top = max([*present, goal or 0.0, red_below or 0.0]) * 1.25 or 1.0
        if red_below is not None:
            ax.axhspan(0, red_below, color=_RED, alpha=0.12, lw=0, gid="red-band")
            ax.text(1.01, red_below, f"red flag\n< {fmt(red_below)}", color=_RED,
                    va="top", fontsize=8, transform=ax.get_yaxis_transform())  # fmt: skip
        if goal is not None:
            ax.axhline(goal, color=_GOAL, linestyle="--", lw=1.4, gid="goal-line")
            ax.text(1.01, goal, f"goal\n{fmt(goal)}", color=_GOAL, va="center",
                    fontsize=8, transform=ax.get_yaxis_transform())  # fmt: skip
        ax.plot(xs, ys, color=_BAR, lw=2, marker="o", ms=4, gid="trend-line")
        for x, v in zip(xs, values, strict=True):
            if v is None:
                ax.text(x, top * 0.02, "no data", ha="center", color=_MUTED, fontsize=7)
            else:
                ax.text(x, v + top * 0.03, fmt(v), ha="center", fontsize=8, gid=f"value-{x}")
        short = [
            w if i == 0 or w[:4] != labels[i - 1][:4] else w[5:] for i, w in enumerate(labels)
        ]  # the year on the first week and where it changes
        ticks = [f"{w}\n{counts[i]}" for i, w in enumerate(short)] if counts else short
        ax.set_xticks(xs, ticks, fontsize=7)
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_ylim(0, top)
        ax.yaxis.set_major_formatter(_formatter(as_percent))
        ax.set_title(title)

    margins = (0.6, 0.8, 0.55 if counts else 0.4, 0.4)  # right: the goal and red-flag labels
    return _render("trend", title, chart_id, desc, (_WIDTH, 3.0), draw, margins=margins)


def rate_bars(
    labels: Sequence[str],
    rates: Sequence[float | None],
    intervals: Sequence[tuple[float, float] | None],
    ns: Sequence[int],
    title: str,
    *,
    chart_id: str | None = None,
) -> str:
    """A rate (a fraction) per group, e.g. reply rate by tier, prompt version or genericness
    bucket: a bar each, an error bar for its 95% interval when given, and "n=…" under it. A
    None rate is a group without data: no bar, "no data" instead."""
    if not len(labels) == len(rates) == len(intervals) == len(ns):
        raise ValueError("labels, rates, intervals and ns must be of the same length")
    parts = []
    for label, rate, ci, n in zip(labels, rates, intervals, ns, strict=True):
        shown = "no data" if rate is None else _percent(rate)
        if ci is not None and rate is not None:
            shown += f" (95% interval {_percent(ci[0])}–{_percent(ci[1])})"
        parts.append(f"{label}: {shown}, n={n:,}")
    desc = "; ".join(parts)
    if all(r is None for r in rates):
        return _empty("rates", title, chart_id, desc or NO_DATA)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        xs = list(range(len(labels)))
        heights = [0.0 if r is None else r for r in rates]
        for i, patch in enumerate(ax.bar(xs, heights, color=_BAR, width=0.6)):
            patch.set_gid(f"bar-{i}")
        highs = [ci[1] for ci in intervals if ci is not None]
        top = max([*heights, *highs]) * 1.2 or 1.0
        with_ci = [
            (x, r, ci) for x, r, ci in zip(xs, rates, intervals, strict=True)
            if r is not None and ci is not None
        ]  # fmt: skip
        if with_ci:
            bars_ci = ax.errorbar(
                [x for x, _, _ in with_ci],
                [r for _, r, _ in with_ci],
                yerr=[
                    [max(r - ci[0], 0.0) for _, r, ci in with_ci],
                    [max(ci[1] - r, 0.0) for _, r, ci in with_ci],
                ],
                fmt="none", ecolor="#222222", elinewidth=1, capsize=4,
            )  # fmt: skip
            bars_ci.lines[2][0].set_gid("interval")
        for x, r, ci in zip(xs, rates, intervals, strict=True):
            if r is None:
                ax.text(x, top * 0.02, "no data", ha="center", color=_MUTED, fontsize=8)
            else:
                y = max(r, ci[1] if ci else r) + top * 0.02
                ax.text(x, y, _percent(r), ha="center", fontsize=8, gid=f"value-{x}")
        ticks = [f"{_wrap(lb)}\nn={n:,}" for lb, n in zip(labels, ns, strict=True)]
        ax.set_xticks(xs, ticks, fontsize=8)
        ax.set_xlim(-0.6, len(xs) - 0.4)
        ax.set_ylim(0, top)
        ax.yaxis.set_major_formatter(_formatter(True))
        ax.set_title(title)

    width = min(_WIDTH, max(3.6, 1.1 * len(labels) + 1.2))
    lines = 1 + max((_wrap(lb).count("\n") + 1 for lb in labels), default=1)
    margins = (0.6, 0.15, 0.15 + 0.14 * lines, 0.4)  # bottom: the wrapped labels and "n=…"
    return _render("rates", title, chart_id, desc, (width, 3.0), draw, margins=margins)


def _wrap(label: str, width: int = 14) -> str:
    """A long label (`personalize_linkedin_note@1`) on two lines, broken after a `_` or `@`
    near its middle, so neighbouring bars' labels do not run into each other."""
    if len(label) <= width:
        return label
    cuts = [i + 1 for i, ch in enumerate(label) if ch in "_@-/ "]
    if not cuts:
        return label
    cut = min(cuts, key=lambda i: abs(i - len(label) / 2))
    return label[:cut] + "\n" + label[cut:]


def _percent(v: float) -> str:
    return f"{v:.1%}" if v < 0.1 else f"{v:.0%}"


def _number(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def _tick(v: float, as_percent: bool) -> str:
    if not as_percent:
        return _number(v)
    whole = abs(v * 100 - round(v * 100)) < 1e-9
    return f"{v:.0%}" if whole else f"{v:.1%}"


def _formatter(as_percent: bool) -> Any:
    """Axis ticks: whole percentages unless the scale needs a decimal (0.5%)."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: _tick(v, as_percent))


def _empty(kind: str, title: str, chart_id: str | None, desc: str) -> str:
    """A small chart that says there is nothing to draw yet."""

    def draw(fig: Figure) -> None:
        ax: Axes = fig.add_subplot()
        ax.set_axis_off()
        ax.set_title(title)
        ax.text(0.5, 0.45, NO_DATA, ha="center", va="center", color=_MUTED, fontsize=11,
                transform=ax.transAxes, gid="no-data")  # fmt: skip

    return _render(
        kind, title, chart_id, desc, (4.0, 1.3), draw, empty=True, margins=(0.1, 0.1, 0.1, 0.4)
    )


def _render(
    kind: str,
    title: str,
    chart_id: str | None,
    desc: str,
    size: tuple[float, float],
    draw: Callable[[Figure], None],
    *,
    margins: tuple[float, float, float, float],
    empty: bool = False,
) -> str:
    """Draw and serialise one chart. `margins` (left, right, bottom, top, in inches) are fixed
    per kind of chart: matplotlib's automatic layout measures every text twice and cost half
    of a report's rendering time."""
    cid = chart_id or _default_id(kind, title)
    if not _ID.fullmatch(cid):
        raise ValueError(f"a chart id is a letter then letters, digits, - or _: {cid!r}")
    from matplotlib import rc_context, style
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    buf = io.StringIO()
    with _LOCK, style.context("default"), rc_context(_RC):
        fig = Figure(figsize=size)
        left, right, bottom, top = margins
        w, h = size
        fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h)
        draw(fig)
        FigureCanvasSVG(fig)  # the SVG backend, explicitly: no pyplot, no global figure
        fig.savefig(buf, format="svg", metadata=_NO_METADATA)
    classes = f"gtm-chart gtm-chart-{kind}" + (" gtm-chart-empty" if empty else "")
    return _self_contained(buf.getvalue(), cid, classes, title, desc)


def _default_id(kind: str, title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40]
    return f"chart-{kind}" + (f"-{slug}" if slug else "")


_STYLE_ATTR = re.compile(r' style="([^"]*)"')
_DECLARATION = re.compile(r";\s*(?=[a-z-]+\s*:)")
_DEFAULT_STYLE = re.compile(r"\s*<defs>\s*<style[^>]*>[^<]*</style>\s*</defs>")


def _self_contained(svg: str, cid: str, classes: str, title: str, desc: str) -> str:
    """Matplotlib's SVG made inline-safe: no prolog or DOCTYPE, no CSS (its default style rule
    moves to the root, every `style` attribute becomes presentation attributes), ids prefixed
    with the chart's id, and the accessible name and description first inside the root."""
    svg = svg[svg.index("<svg") :]
    svg = _DEFAULT_STYLE.sub("", svg, count=1)
    svg = _STYLE_ATTR.sub(_as_attributes, svg)
    svg = re.sub(r' id="([^"]+)"', rf' id="{cid}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{cid}-\1)", svg)
    svg = re.sub(r'xlink:href="#([^"]+)"', rf'xlink:href="#{cid}-\1"', svg)
    root_end = svg.index(">") + 1
    root = svg[:root_end].replace(
        "<svg ",
        f'<svg id="{cid}" class="{classes}" role="img"'
        f' aria-labelledby="{cid}-title {cid}-desc"'
        ' stroke-linejoin="round" stroke-linecap="butt" ',
        1,
    )
    head = (
        f'<title id="{cid}-title">{escape(title)}</title>'
        f'<desc id="{cid}-desc">{escape(desc)}</desc>'
    )
    return root + head + svg[root_end:].rstrip() + "\n"


def _as_attributes(match: re.Match[str]) -> str:
    """`style="fill: #fff; stroke-width: 0.8"` → ` fill="#fff" stroke-width="0.8"`. Matplotlib
    writes only properties that SVG also has as presentation attributes (fill, stroke, opacity,
    font-size, font-family, text-anchor...); the value is already escaped for an attribute."""
    out = []
    for declaration in _DECLARATION.split(match.group(1)):
        name, _, value = declaration.partition(":")
        if name.strip():
            out.append(f' {name.strip()}="{value.strip()}"')
    return "".join(out)
