"""`gtm report` and its writers: Markdown, JSON, CSV and the self-contained HTML page.

The writers are checked over the hand-computed history of tests/test_funnel.py (its numbers
are worked out there), the command over real stores seeded as tests/test_red_flags.py does
(20 connection requests on Monday of 2026-W46, 2 accepted: an accept rate of 10% on a sample of
20 crosses the 15% red flag). The page is opened in Debian's Chromium (as
tests/test_web_browser.py does) and a full-page screenshot is saved to
`.gtm/screenshots/report.png` (or `$GTM_SCREENSHOTS`).
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gtm.app.funnel import compute_funnel
from gtm.app.funnel_model import ROW_COLUMNS, FunnelReport
from gtm.app.red_flags import RedFlag
from gtm.app.report import (
    markdown_escape,
    render_csv,
    render_html,
    render_json,
    render_markdown,
    write_report,
)
from gtm.app.report_charts import Chart, report_charts
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from tests.test_funnel import AS_OF, W1, history
from tests.test_red_flags import Clock, alerts, seed

ROOT = Path(__file__).parents[1]
SHOTS = Path(os.environ.get("GTM_SCREENSHOTS") or ROOT / ".gtm" / "screenshots")
CHROMIUM = Path("/usr/bin/chromium")
NASTY = "<b>x|y</b> *[z]*"
FORMULA = "=HYPERLINK(1)"
FLAG = RedFlag(
    "accept_rate_below", W1, "alpha", 0.1, 0.15, 20,
    "campaign alpha, week of 2026-11-02: the LinkedIn accept rate is 10.0% <i>low</i>",
)  # fmt: skip


@pytest.fixture(scope="module")
def report() -> FunnelReport:
    inputs = dataclasses.replace(history(), campaigns=("delta", NASTY, FORMULA))
    return compute_funnel(inputs, as_of=AS_OF, weeks=3)


@pytest.fixture(scope="module")
def charts(report: FunnelReport) -> list[Chart]:
    return report_charts(report)


class _Page(HTMLParser):
    """What the checks need from a page: elements with their attributes, and text by tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.style = ""
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._in:
            while self._in.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self._in and self._in[-1] == "style":
            self.style += data
        self.text.append(data)


def _parse(html: str) -> _Page:
    p = _Page()
    p.feed(html)
    p.close()
    return p


# --------------------------------------------------------------------------- Markdown


def test_markdown_shows_the_weeks_goals_flags_and_notes(report: FunnelReport) -> None:
    md = render_markdown(report, [FLAG])
    assert md.startswith("# Funnel report\n\nAs of 2026-11-18 12:00 UTC; weeks 2026-W45 to")
    alpha = md[md.index("## Campaign alpha") : md.index("## Campaign beta")]
    # tests/test_funnel.py: alpha W1 = 2 visits, 4 requests, accept rate 3/4, response 1/2.
    assert "| LinkedIn | connection requests | 4 | 2 | 1 |" in alpha
    assert "| LinkedIn | accept rate | 75.0% (3/4) | 0.0% (0/1) | — (0/0) |" in alpha
    assert "| 2026-W45 | accept 3/4 = 75.0%, goal 30% | met |" in alpha
    assert "| 2026-W45 | meetings 0, goal 5 a week | missed |" in alpha
    assert "| 2026-W47 | meetings 0, goal 5 a week | not yet |" in alpha
    assert "| 2026-11 | opportunities 1 in 2026-11, goal 20 a month | not yet |" in alpha
    assert "- campaign alpha, week of 2026-11-02: the LinkedIn accept rate is 10.0% \\<i\\>" in (
        alpha
    )
    beta = md[md.index("## Campaign beta") : md.index("## Campaign delta")]
    assert "accept" not in beta.split("### Goals")[1]  # beta's playbook sets no accept goal
    assert "| email | response rate | 66.7% (2/3) | — (0/0) | — (0/0) |" in beta
    assert "| LinkedIn |" not in beta  # an email-only campaign: no LinkedIn rows
    delta = md[md.index("## Campaign delta") :]
    assert delta.split("\n")[2] == "**no data yet**: nothing sent in these weeks."
    assert "- 1 event(s) matched no sent touch: not counted (\\`gtm events list\\`)" in md
    assert "- 2 event(s) fell outside the reported weeks" in md
    assert "- **accept\\_rate**: of people whose first connection request" in md
    assert "| note@1 | 1/3 | 33.3% | 6.1%–79.2% |" in md  # Wilson 95% for 1 of 3


def test_markdown_escapes_what_comes_from_data(report: FunnelReport) -> None:
    md = render_markdown(report)
    assert "## Campaign \\<b\\>x\\|y\\</b\\> \\*\\[z\\]\\*" in md
    assert NASTY not in md
    for line in md.splitlines():
        if line.startswith("|"):  # every table row keeps its columns: no stray pipe
            assert len(re.findall(r"(?<!\\)\|", line)) - 1 in (3, 4, 5), line
    assert markdown_escape("a\nb|c") == "a b\\|c"


# --------------------------------------------------------------------------- JSON and CSV


def test_json_is_the_reports_own(report: FunnelReport) -> None:
    data = json.loads(render_json(report))
    assert data == json.loads(json.dumps(report.to_json()))
    alpha_w1 = next(
        f for f in data["figures"] if (f["campaign"], f["week"]) == ("alpha", "2026-11-02")
    )
    assert alpha_w1["linkedin"]["accept_rate"]["num"] == 3
    assert alpha_w1["linkedin"]["accept_rate"]["den"] == 4
    assert data["unmatched_events"] == 1 and data["ignored_events"] == 2


def test_csv_has_one_header_and_the_rows(report: FunnelReport) -> None:
    text = render_csv(report)
    lines = text.splitlines()
    assert lines[0] == ",".join(ROW_COLUMNS)
    assert sum(1 for ln in lines if ln.startswith("week,")) == 1
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(report.rows()) == 6 * 3 * 2  # campaigns x weeks x channels
    a1 = next(
        r for r in rows if (r["campaign"], r["week"], r["channel"]) == ("alpha", "2026-11-02",
                                                                         "linkedin")
    )  # fmt: skip
    assert (a1["requested"], a1["accept_rate_num"], a1["accept_rate_den"]) == ("4", "3", "4")
    assert float(a1["accept_rate_value"]) == 0.75 and a1["sent"] == ""
    b1 = next(
        r for r in rows if (r["campaign"], r["week"], r["channel"]) == ("beta", "2026-11-02",
                                                                        "email")
    )  # fmt: skip
    assert (b1["sent"], b1["delivered"], b1["bounced"], b1["replied"]) == ("4", "3", "1", "1")
    assert (b1["response_rate_num"], b1["response_rate_den"]) == ("2", "3")
    # A name a spreadsheet would run as a formula is kept as text.
    assert {r["campaign"] for r in rows} == {"alpha", "beta", "delta", "gamma", NASTY,
                                             "'" + FORMULA}  # fmt: skip


# --------------------------------------------------------------------------- HTML


def test_html_is_one_self_contained_page_with_every_chart(
    report: FunnelReport, charts: list[Chart]
) -> None:
    html = render_html(report, charts, [FLAG])
    page = _parse(html)
    tags = [t for t, _ in page.elements]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    assert tags.count("style") == 1 and tags.count("html") == 1
    svg_ids = [a.get("id") for t, a in page.elements if t == "svg"]
    assert len(charts) >= 10
    assert sorted(svg_ids) == sorted(c.id for c in charts)  # each chart once, inline
    for tag, attrs in page.elements:
        for name, value in attrs.items():
            if name == "xmlns" or name.startswith("xmlns:"):
                continue  # namespace names, never fetched
            assert not re.search(r"https?://|//[a-z]", value, re.I), (tag, name, value)
    assert not re.search(r"url\((?!#)|@import|https?:", page.style)
    csp = next(a["content"] for t, a in page.elements if a.get("http-equiv"))
    assert "default-src 'none'" in csp
    text = " ".join(" ".join(page.text).split())
    # Beside the last complete and the current week, their goals; all weeks in the matrix.
    assert "2026-W46 accept 0/1 = 0.0%, goal 30% missed" in text
    assert "2026-W46 meetings 1, goal 5 a week missed" in text
    assert "2026-W47 meetings 0, goal 5 a week not yet" in text
    assert "accept rate 75.0% (3/4) 0.0% (0/1) — (0/0)" in text
    assert "accept rate ≥ 30% met missed not yet" in text
    assert "the LinkedIn accept rate is 10.0% <i>low</i>" in text  # escaped, shown as text
    assert "<i>low</i>" not in html
    assert "Campaign <b>x|y</b> *[z]*" in text and NASTY not in html
    assert "no data yet: nothing sent in these weeks." in text
    assert "too few sends to tell: message@2 has 2, note@1 has 3" in text
    assert "1 event(s) matched no sent touch" in text
    assert "Wilson 95% score interval" in text  # the definitions
    for c in charts:
        assert " ".join(c.caption.split()) in text


def test_write_report_writes_the_four_files(
    tmp_path: Path, report: FunnelReport, charts: list[Chart]
) -> None:
    files = write_report(report, tmp_path / "r", charts=charts, flags=[FLAG])
    assert sorted(p.name for p in files.directory.iterdir()) == [
        "report.csv", "report.html", "report.json", "report.md"
    ]  # fmt: skip
    assert files.markdown.read_text(encoding="utf-8") == render_markdown(report, [FLAG])
    assert files.csv.read_text(encoding="utf-8") == render_csv(report)


# --------------------------------------------------------------------------- the command


def _seeded(data: Path) -> None:
    async def go() -> None:
        clock = Clock()
        async with open_workspace(Settings(data_dir=data), with_model=False, clock=clock) as ws:
            seed(ws, clock, requests=20, accepted=2)

    asyncio.run(go())


def _invoke(data: Path, *args: str) -> Any:
    from gtm.cli import app

    return CliRunner().invoke(
        app, ["--data-dir", str(data), "report", *args], env={"COLUMNS": "200"}
    )


def test_report_command_prints_the_week_writes_the_files_and_fires_a_flag_once(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    _seeded(data)
    first = _invoke(data, "--as-of", "2026-11-18")
    assert first.exit_code == 0, first.output
    out = first.stdout
    assert "campaign spring" in out
    assert "2026-W46 (complete)" in out and "2026-W47 (so far)" in out
    assert "10.0% (2/20)" in out
    assert "2026-W46: accept 2/20 = 10.0%, goal 30%: missed" in out
    assert "2026-W46: meetings 0, goal 5 a week: missed" in out
    assert "2026-W47: meetings 0, goal 5 a week: not yet" in out
    assert out.count("new red flag, alerted") == 2
    assert "red flag: campaign spring, week of 2026-11-09 (ISO 2026-W46): the LinkedIn accept" in (
        out
    )
    folder = data / "reports" / "2026-W47"
    assert sorted(p.name for p in folder.iterdir()) == [
        "report.csv", "report.html", "report.json", "report.md"
    ]  # fmt: skip
    saved = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    w46 = next(f for f in saved["figures"] if f["week"] == "2026-11-09")
    assert (w46["linkedin"]["accept_rate"]["num"], w46["linkedin"]["accept_rate"]["den"]) == (
        2, 20
    )  # fmt: skip
    assert "the LinkedIn accept rate is 10.0%" in (folder / "report.html").read_text("utf-8")
    assert [a["kind"] for a in alerts(data)] == ["red_flag", "red_flag"]

    second = _invoke(data, "--as-of", "2026-11-18", "--out", str(tmp_path / "again"))
    assert second.exit_code == 0, second.output
    assert "new red flag" not in second.stdout  # fired once: the second pass is silent
    assert "red flag: campaign spring" in second.stdout  # but the week still shows it
    assert len(alerts(data)) == 2
    assert (tmp_path / "again" / "report.html").exists()

    narrowed = _invoke(data, "--as-of", "2026-11-18", "--tier", "2", "--out", str(tmp_path / "t"))
    assert narrowed.exit_code == 0, narrowed.output
    # Nothing of tier 2 was sent, but the red flags are the whole campaign's.
    assert "filters: tier 2" in narrowed.stdout
    assert "spring: no data yet: nothing sent in these weeks" in narrowed.stdout
    assert "red flag: campaign spring, week of 2026-11-09" in narrowed.stdout


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--campaign", "nope"], "--campaign"),
        (["--channel", "sms"], "--channel"),
        (["--weeks", "0"], "--weeks"),
        (["--as-of", "18/11/2026"], "--as-of"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path: Path, args: list[str], option: str) -> None:
    data = tmp_path / "data"
    _seeded(data)
    result = _invoke(data, *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0], lines
    assert not (data / "reports").exists()


def test_no_events_prints_no_data_yet(tmp_path: Path) -> None:
    result = _invoke(tmp_path / "empty", "--as-of", "2026-11-18")
    assert result.exit_code == 0, result.output
    assert "no data yet" in result.stdout
    html = (tmp_path / "empty" / "reports" / "2026-W47" / "report.html").read_text("utf-8")
    assert "no data yet" in html


# --------------------------------------------------------------------------- in a browser


def test_the_page_in_chromium_draws_every_chart(
    tmp_path: Path, report: FunnelReport, charts: list[Chart]
) -> None:
    if not CHROMIUM.exists():  # fail, don't skip: a green run must have driven a browser
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium with apt")
    from playwright.sync_api import sync_playwright

    files = write_report(report, tmp_path / "r", charts=charts, flags=[FLAG])
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(files.html.as_uri())
            boxes = {}
            for c in charts:
                box = page.locator(f"svg#{c.id}").bounding_box()
                assert box is not None, c.id
                boxes[c.id] = box
            # Wider than the page? Then a table or chart overflows its card.
            width = page.evaluate("document.documentElement.scrollWidth")
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
        finally:
            browser.close()
    assert requests == [files.html.as_uri()]  # the page fetched nothing else
    for cid, box in boxes.items():
        assert box["width"] > 150 and box["height"] > 60, (cid, box)
    assert width <= 1280
    assert (SHOTS / "report.png").stat().st_size > 10_000
