"""The report's charts: well-formed, self-contained SVG that shows the figures it was given."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest

from gtm.app.charts import NO_DATA, funnel_bars, rate_bars, week_label, weekly_trend

SVG = "{http://www.w3.org/2000/svg}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"

STAGES = [
    ("Profile visits", 4000),
    ("Connection requests", 3200),
    ("Accepted", 960),
    ("Replies", 140),
    ("Meetings", 12),
]
WEEKS = [date(2025, 3, 3) + timedelta(weeks=i) for i in range(6)]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def texts(root: ET.Element) -> list[str]:
    """Each drawn label, its lines joined by newlines (one `<text>` per line in the SVG)."""
    labels = []
    for e in root.iter():
        lines = ["".join(t.itertext()) for t in e.findall(f"{SVG}text")]
        if lines:
            labels.append("\n".join(lines))
    return labels


def by_id(root: ET.Element, pattern: str) -> list[ET.Element]:
    """Elements whose id, less the chart's prefix, matches `pattern`."""
    prefix = f"{root.get('id')}-"
    return [
        e for e in root.iter()
        if e.get("id", "").startswith(prefix)
        and re.fullmatch(pattern, e.get("id", "").removeprefix(prefix))
    ]  # fmt: skip


def trend(values: list[float | None], **kw: object) -> str:
    args: dict[str, object] = {
        "goal": 0.3,
        "red_below": 0.15,
        "title": "Accept rate",
        "as_percent": True,
        "counts": [f"{i} of 40" for i in range(len(values))],
    }
    args.update(kw)
    return weekly_trend(WEEKS[: len(values)], values, **args)  # type: ignore[arg-type]


def test_funnel_shows_each_stage_with_its_count_and_share_of_the_first() -> None:
    root = parse(funnel_bars(STAGES, "LinkedIn funnel", chart_id="funnel-li"))
    assert root.get("id") == "funnel-li"
    assert root.get("class") == "gtm-chart gtm-chart-funnel"
    assert root.get("role") == "img"
    assert root.find(f"{SVG}title") is not None
    assert root.find(f"{SVG}title").text == "LinkedIn funnel"  # type: ignore[union-attr]
    assert root.get("aria-labelledby") == "funnel-li-title funnel-li-desc"
    shown = texts(root)
    for name, _ in STAGES:
        assert name in shown
    assert "4,000 · 100.0%" in shown
    assert "960 · 24.0%" in shown
    assert "12 · 0.3%" in shown
    desc = root.find(f"{SVG}desc")
    assert desc is not None and "Accepted: 960 (24.0% of Profile visits)" in (desc.text or "")
    assert len(by_id(root, r"bar-\d+")) == len(STAGES)


def test_a_funnel_whose_first_stage_is_zero_shows_counts_without_a_share() -> None:
    shown = texts(parse(funnel_bars([("Visits", 0), ("Requests", 5)], "f")))
    assert "5 · –" in shown


def test_goal_line_and_red_band_are_drawn_when_given_and_absent_when_not() -> None:
    root = parse(trend([0.3, 0.2, 0.1]))
    goal = by_id(root, "goal-line")
    band = by_id(root, "red-band")
    assert len(goal) == 1 and len(band) == 1
    dash = [p.get("stroke-dasharray") for p in goal[0].iter(f"{SVG}path")]
    assert any(dash), "the goal line is dashed"
    assert any(p.get("fill") == "#c62828" for p in band[0].iter(f"{SVG}path"))
    shown = texts(root)
    assert "goal\n30%" in shown and "red flag\n< 15%" in shown

    bare = parse(trend([0.3, 0.2, 0.1], goal=None, red_below=None))
    assert by_id(bare, "goal-line") == [] and by_id(bare, "red-band") == []
    assert not any("goal" in t or "red flag" in t for t in texts(bare))


def test_a_week_without_data_is_a_gap_not_a_zero() -> None:
    root = parse(trend([0.3, None, 0.25, 0.2, None, 0.1]))
    (line,) = by_id(root, "trend-line")
    d = next(p.get("d", "") for p in line.iter(f"{SVG}path"))
    assert d.count("M") == 3, "three runs of weeks with data: the line breaks twice"
    assert len(re.findall(r"[ML] ", d)) == 4, "four points: a missing week is not drawn at 0"
    values = [texts(v)[0] for v in by_id(root, r"value-\d+")]
    assert values == ["30%", "25%", "20%", "10%"]
    assert texts(root).count("no data") == 2
    assert "2025-W10\n0 of 40" in texts(root)
    assert "W11\n1 of 40" in texts(root), "every week shows its sample, with or without a rate"


def test_a_trend_in_counts_is_not_shown_as_percentages() -> None:
    svg = weekly_trend(
        WEEKS[:3], [3, 5, 4], goal=5, red_below=1, title="Meetings", as_percent=False
    )
    shown = texts(parse(svg))
    assert "goal\n5" in shown and "4" in shown
    assert not any(t.endswith("%") for t in shown)


def test_rate_bars_show_interval_and_sample_under_each_bar() -> None:
    svg = rate_bars(
        ["tier 1", "tier 2", "tier 3"],
        [0.2, 0.12, None],
        [(0.15, 0.26), None, None],
        [300, 500, 0],
        "Reply rate by tier",
    )
    root = parse(svg)
    shown = texts(root)
    assert {"tier 1\nn=300", "tier 2\nn=500", "tier 3\nn=0"} <= set(shown)
    assert "20%" in shown and "12%" in shown and "no data" in shown
    (interval,) = by_id(root, "interval")
    assert len(list(interval.iter(f"{SVG}path"))) == 1, "one error bar: only tier 1 has one"
    assert "tier 1: 20% (95% interval 15%–26%), n=300" in (root.find(f"{SVG}desc").text or "")  # type: ignore[union-attr]


def test_rate_bars_without_any_interval_draw_no_error_bar() -> None:
    root = parse(rate_bars(["a@1", "a@2"], [0.1, 0.2], [None, None], [10, 20], "By prompt"))
    assert by_id(root, "interval") == []


@pytest.mark.parametrize(
    "svg",
    [
        lambda: funnel_bars([], "Funnel"),
        lambda: funnel_bars([("Visits", 0), ("Requests", 0)], "Funnel"),
        lambda: weekly_trend([], [], goal=0.3, red_below=0.15, title="T", as_percent=True),
        lambda: trend([None, None, None]),
        lambda: rate_bars([], [], [], [], "R"),
        lambda: rate_bars(["t1", "t2"], [None, None], [None, None], [0, 0], "R"),
    ],
    ids=["funnel-empty", "funnel-zeros", "trend-empty", "trend-none", "rates-empty", "rates-none"],
)
def test_nothing_to_draw_gives_a_small_no_data_chart(svg: object) -> None:
    root = parse(svg())  # type: ignore[operator]
    assert "gtm-chart-empty" in (root.get("class") or "")
    title = root.find(f"{SVG}title")
    assert title is not None
    assert sorted(texts(root)) == sorted([title.text or "", NO_DATA]), "title and words only"
    assert float((root.get("height") or "0pt").removesuffix("pt")) < 120


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        weekly_trend(WEEKS[:2], [0.1], goal=None, red_below=None, title="t", as_percent=True)
    with pytest.raises(ValueError):
        rate_bars(["a"], [0.1, 0.2], [None], [1], "t")
    with pytest.raises(ValueError):
        funnel_bars([("Visits", -1)], "t")
    with pytest.raises(ValueError):
        funnel_bars(STAGES, "t", chart_id='x" onload="alert(1)')


ALL: dict[str, Callable[[], str]] = {
    "funnel": lambda: funnel_bars(STAGES, "Funnel <&> $5 & $6"),
    "trend": lambda: trend([0.3, None, 0.2]),
    "rates": lambda: rate_bars(["<b>", "$x$"], [0.1, 0.2], [(0.05, 0.2), None], [9, 8], "R"),
    "empty": lambda: rate_bars([], [], [], [], "R"),
}


@pytest.mark.parametrize("kind", ALL)
def test_output_is_self_contained_and_inline_safe(kind: str) -> None:
    svg = ALL[kind]()
    root = parse(svg)
    assert not svg.startswith("<?xml") and "<!DOCTYPE" not in svg
    for url in re.findall(r"https?://[^\s\"'<>)]+", svg):
        assert url in ("http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"), url
    assert "<script" not in svg.lower()
    assert not any(a.startswith("on") for e in root.iter() for a in e.attrib)
    assert not any(e.tag in (f"{SVG}style", f"{SVG}script", f"{SVG}a", f"{SVG}image")
                   for e in root.iter())  # fmt: skip
    assert not any("style" in e.attrib for e in root.iter()), "CSP without unsafe-inline"
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    assert all(i == root.get("id") or i.startswith(f"{root.get('id')}-") for i in ids)  # type: ignore[union-attr]
    for e in root.iter():
        for value in (e.get(XLINK_HREF), e.get("href"), e.get("clip-path")):
            if value:
                target = value.removeprefix("url(").removesuffix(")")
                assert target.startswith("#") and target[1:] in ids, value


def test_labels_are_text_as_given() -> None:
    shown = texts(parse(ALL["rates"]()))
    assert "<b>\nn=9" in shown and "$x$\nn=8" in shown, "escaped, and no mathtext"
    title = parse(ALL["funnel"]()).find(f"{SVG}title")
    assert title is not None and title.text == "Funnel <&> $5 & $6"


def test_same_figures_give_the_same_bytes_and_two_charts_share_no_id() -> None:
    assert ALL["trend"]() == ALL["trend"]()
    assert ALL["funnel"]() == ALL["funnel"]()
    page = [parse(funnel_bars(STAGES, "A", chart_id=c)) for c in ("one", "two")]
    ids = [[e.get("id") for e in r.iter() if e.get("id")] for r in page]
    assert not set(ids[0]) & set(ids[1])


def test_charts_drawn_from_several_threads_at_once_are_the_ones_drawn_alone() -> None:
    alone = {k: f() for k, f in ALL.items()}
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda k: (k, ALL[k]()), list(ALL) * 3))
    assert all(svg == alone[k] for k, svg in together)


def test_week_label_is_the_iso_week() -> None:
    assert week_label(date(2024, 12, 30)) == "2025-W01"
    assert week_label(date(2025, 3, 3)) == "2025-W10"


def test_importing_the_module_does_not_import_matplotlib() -> None:
    code = "import sys, gtm.app.charts; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
