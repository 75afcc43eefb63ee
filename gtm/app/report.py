"""`gtm report`'s writers: one funnel report as Markdown, JSON, CSV and one self-contained HTML
page, written together into one directory.

The writers compute nothing: they lay out a `FunnelReport` (its numbers, notes and
definitions), the red flags its numbers cross (`red_flags.evaluate`) and its charts
(`report_charts`), in the words of `report_words`. Everything that comes from data (campaign
names, seats, prompt versions, notes) is escaped for where it lands: Markdown punctuation and
table pipes, HTML (Jinja2 autoescape), and spreadsheet formulas in the CSV (a text cell starting
with `=`, `+`, `-`, `@`, tab or CR gets a leading `'`, as OWASP advises).

The HTML page loads nothing: no script, no external stylesheet, font or image; the CSS is in
one `<style>` element, the charts are inline SVG, and a Content-Security-Policy forbids any
fetch. The page's template is `gtm/app/templates/report.html`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from gtm.app.charts import week_label
from gtm.app.funnel_model import ROW_COLUMNS, FunnelReport, Rate, WeekFigures
from gtm.app.red_flags import RedFlag
from gtm.app.report_charts import Chart
from gtm.app.report_words import (
    NO_DATA,
    Stage,
    campaign_figures,
    campaign_flags,
    filters_text,
    goal_matrix,
    goal_rows,
    headline_weeks,
    is_empty,
    notes,
    rate_and_interval,
    shown_stages,
    stage_cell,
    week_heading,
)

__all__ = [
    "FILE_NAMES",
    "ReportFiles",
    "chart_view",
    "markdown_escape",
    "render_csv",
    "render_html",
    "render_json",
    "render_markdown",
    "report_dir",
    "write_report",
]

FILE_NAMES = ("report.md", "report.json", "report.csv", "report.html")


@dataclass(frozen=True)
class ReportFiles:
    """Where one report was written."""

    directory: Path
    markdown: Path
    json: Path
    csv: Path
    html: Path


def report_dir(data_dir: Path, as_of: datetime) -> Path:
    """The default home of a report: `<data dir>/reports/<YYYY-Www>/`, the ISO week of `as_of`."""
    return data_dir / "reports" / week_label(as_of.date())


def _span(report: FunnelReport) -> str:
    w = report.weeks
    return f"{week_label(w[0])} to {week_label(w[-1])}" if w else "none"


def _table(
    report: FunnelReport, figs: Sequence[WeekFigures], stages: Sequence[Stage], *, short: bool
) -> dict[str, Any]:
    return {
        "head": [week_heading(report, f.week, short=short) for f in figs],
        "rows": [(ch, st, [stage_cell(get(f)) for f in figs]) for ch, st, get in stages],
    }


def _rate_row(key: str, r: Rate) -> tuple[str, str, str, str]:
    return (key, f"{r.num}/{r.den}", *rate_and_interval(r))


# --------------------------------------------------------------------------- Markdown

_MD_SPECIAL = frozenset("\\`*_[]<>|~&#!")


def markdown_escape(text: str) -> str:
    """Data made inert in Markdown, table cells included: CommonMark lets a backslash escape
    any ASCII punctuation, so each character that can start markup (and `|`) is escaped, and a
    line break becomes a space."""
    text = " ".join(text.splitlines())
    return "".join(f"\\{c}" if c in _MD_SPECIAL else c for c in text)


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    e = markdown_escape
    out = ["| " + " | ".join(map(e, head)) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(map(e, r)) + " |" for r in rows]
    return [*out, ""]


def render_markdown(report: FunnelReport, flags: Sequence[RedFlag] = ()) -> str:
    """Per campaign: its weeks side by side, the goals, the red flags; then the reply rates by
    what the review said, the prompt variants, the notes and the definitions."""
    e = markdown_escape
    lines = [
        "# Funnel report",
        "",
        f"As of {report.as_of:%Y-%m-%d %H:%M} UTC; weeks {_span(report)}; "
        f"filters: {e(filters_text(report.filters))}.",
        "",
    ]
    if not report.campaigns:
        lines += [f"{NO_DATA}: nothing sent and no campaign recorded.", ""]
    for c in report.campaigns:
        figs = campaign_figures(report, c)
        lines += [f"## Campaign {e(c)}", ""]
        if is_empty(figs):
            lines += [f"**{NO_DATA}**: nothing sent in these weeks.", ""]
        head = ["channel", "stage", *(week_heading(report, f.week) for f in figs)]
        rows = [[ch, st, *(stage_cell(get(f)) for f in figs)] for ch, st, get in shown_stages(figs)]
        lines += _md_table(head, rows)
        goals = goal_rows(report, c)
        lines += ["### Goals", ""]
        lines += _md_table(["week", "figure", "status"], goals) if goals else ["None set.", ""]
        lines += ["### Red flags", ""]
        lines += [f"- {e(x.message)}" for x in campaign_flags(flags, c)] or ["None crossed."]
        lines += [""]
    lines += ["## Does specificity pay?", ""]
    for b in report.specificity:
        lines += [f"### Reply rate by {e(b.dimension.replace('_', ' '))}", ""]
        head = ["value", "replies/messages", "rate", "95% interval"]
        lines += _md_table(head, [_rate_row(k, r) for k, r in b.rates])
    lines += ["### Prompt variants", ""]
    lines += [f"- **{e(v.campaign)}**: {e(v.verdict)}" for v in report.variants] or ["None."]
    lines += ["", "## Notes", ""]
    lines += [f"- {e(n)}" for n in notes(report)] or ["None."]
    lines += ["", "## Definitions", ""]
    lines += [f"- **{e(k)}**: {e(v)}" for k, v in report.definitions.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- JSON and CSV


def render_json(report: FunnelReport) -> str:
    """`FunnelReport.to_json()`, indented."""
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(v: Any) -> Any:
    if isinstance(v, str) and v.startswith(_FORMULA):
        return "'" + v  # a spreadsheet would run it as a formula
    return v


def render_csv(report: FunnelReport) -> str:
    """One header (`ROW_COLUMNS`), then `report.rows()`; an absent value is an empty cell."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(ROW_COLUMNS), lineterminator="\n")
    w.writeheader()
    for row in report.rows():
        w.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()


# --------------------------------------------------------------------------- HTML

_ENV: list[Environment] = []


def _env() -> Environment:
    if not _ENV:
        _ENV.append(
            Environment(
                loader=PackageLoader("gtm.app", "templates"),
                autoescape=select_autoescape(default=True, default_for_string=True),
                trim_blocks=True,
                lstrip_blocks=True,
            )
        )
    return _ENV[0]


def chart_view(c: Chart) -> dict[str, Any]:
    """A chart as the report templates (this file's and the web inbox's) take it. The SVG is
    ours: drawn by gtm.app.charts from numbers, its text XML-escaped there, with no script,
    style or URL (see that module), so it also passes the inbox's CSP. It goes in as Markup;
    everything else on the page, the chart's title and caption included, is autoescaped."""
    return {"id": c.id, "title": c.title, "caption": c.caption, "svg": Markup(c.svg)}


def render_html(
    report: FunnelReport, charts: Sequence[Chart], flags: Sequence[RedFlag] = ()
) -> str:
    """The report as one self-contained page: per campaign its weeks beside the goals, its red
    flags and its charts; then "does specificity pay?" with its charts and the variants'
    sentences, the notes and the definitions. Every chart given is on the page once."""
    per_campaign: dict[str, list[dict[str, Any]]] = {c: [] for c in report.campaigns}
    variant_charts: dict[str, dict[str, Any]] = {}
    specificity: list[dict[str, Any]] = []
    for ch in charts:
        owner = ch.campaign
        if owner is None or owner not in per_campaign:
            specificity.append(chart_view(ch))
        elif ch.id.startswith("rates-variants-") and owner not in variant_charts:
            variant_charts[owner] = chart_view(ch)
        else:
            per_campaign[owner].append(chart_view(ch))
    headline = headline_weeks(report)
    labels = {week_label(w) for w in headline} | {f"{report.as_of:%Y-%m}"}
    campaigns = []
    for c in report.campaigns:
        figs = campaign_figures(report, c)
        recent = [f for f in figs if f.week in headline]
        stages = shown_stages(figs)
        campaigns.append(
            {
                "name": c,
                "no_data": is_empty(figs),
                "recent": _table(report, recent, stages, short=False),
                "weeks": _table(report, figs, stages, short=True),
                "goals": [row for row in goal_rows(report, c) if row[0] in labels],
                "goal_matrix": goal_matrix(report, c),
                "flags": [x.message for x in campaign_flags(flags, c)],
                "charts": per_campaign[c],
            }
        )
    breakdowns = [
        {"dimension": b.dimension.replace("_", " "), "rows": [_rate_row(k, r) for k, r in b.rates]}
        for b in report.specificity
    ]
    variants = [
        {
            "campaign": v.campaign,
            "verdict": v.verdict,
            "rows": [_rate_row(k, r) for k, r in v.rates],
            "chart": variant_charts.get(v.campaign),
        }
        for v in report.variants
    ]
    page = _env().get_template("report.html")
    return page.render(
        as_of=f"{report.as_of:%Y-%m-%d %H:%M} UTC",
        span=_span(report),
        filters=filters_text(report.filters),
        flag_count=len(flags),
        campaigns=campaigns,
        breakdowns=breakdowns,
        specificity_charts=specificity,
        variants=variants,
        notes=notes(report),
        definitions=list(report.definitions.items()),
        no_data=NO_DATA,
    )


# --------------------------------------------------------------------------- files


def write_report(
    report: FunnelReport,
    directory: Path,
    *,
    charts: Sequence[Chart],
    flags: Sequence[RedFlag] = (),
) -> ReportFiles:
    """Write the four files into `directory` (made if missing). Each is written under a
    temporary name and renamed, so a reader never sees half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(directory, *(directory / name for name in FILE_NAMES))
    for path, text in (
        (files.markdown, render_markdown(report, flags)),
        (files.json, render_json(report)),
        (files.csv, render_csv(report)),
        (files.html, render_html(report, charts, flags)),
    ):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return files
