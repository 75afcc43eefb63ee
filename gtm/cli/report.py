"""`gtm report`: the funnel of the week against the playbook's goals, in the terminal, and the
report written as Markdown, JSON, CSV and one self-contained HTML page with charts.

It is a pass like `gtm sync` or `gtm serve`'s tick: it evaluates the red flags and raises the
new ones (`raise_red_flags`), so each fires once however often the report is made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gtm.cli.common import app, fail, now, out, run_sync, settings_of

if TYPE_CHECKING:
    from gtm.app.funnel_model import FunnelReport
    from gtm.app.red_flags import RedFlag, StoredFlag
    from gtm.app.report import ReportFiles

__all__ = ["report", "print_week"]

_CHANNELS = ("linkedin", "email")
_STATUS_STYLE = {"met": "green", "missed": "red", "not yet": "yellow"}


def _as_of(text: str | None) -> datetime:
    """The end of the day named (UTC), or now."""
    if text is None:
        return now()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise fail(f"--as-of must be a date as YYYY-MM-DD, not {text!r}") from None
    return datetime.combine(day, time.max, tzinfo=UTC)


@app.command(rich_help_panel="Loop")
def report(
    ctx: typer.Context,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    tier: Annotated[int | None, typer.Option(help="Only touches of accounts in this tier.")] = None,
    channel: Annotated[str | None, typer.Option(help="Only linkedin or email.")] = None,
    seat: Annotated[str | None, typer.Option(help="Only what this sender seat sent.")] = None,
    weeks: Annotated[int, typer.Option(help="ISO weeks to report, ending this week.")] = 8,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Report as of the end of this day (YYYY-MM-DD).")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Where to write the report (default <data dir>/reports/<week>)."
        ),
    ] = None,
) -> None:
    """The funnel of the week against the playbook's goals, its red flags, and the report as
    Markdown, JSON, CSV and an HTML page with charts."""
    from gtm.app.funnel import compute_funnel, load_inputs
    from gtm.app.funnel_model import Filters
    from gtm.app.red_flags import evaluate, raise_red_flags
    from gtm.app.report import report_dir, write_report
    from gtm.app.report_charts import report_charts
    from gtm.app.workspace import open_workspace

    if weeks < 1:
        raise fail(f"--weeks must be at least 1, not {weeks}")
    if channel is not None and channel not in _CHANNELS:
        raise fail(f"--channel must be linkedin or email, not {channel!r}")
    if tier is not None and tier < 1:
        raise fail(f"--tier must be 1 or more, not {tier}")
    when = _as_of(as_of)
    settings = settings_of(ctx)
    filters = Filters(campaign=campaign, tier=tier, channel=channel, sender=seat)  # type: ignore[arg-type]

    async def go() -> tuple[FunnelReport, list[RedFlag], list[StoredFlag], ReportFiles]:
        async with open_workspace(settings, with_model=False) as ws:
            inputs = load_inputs(ws)
            recorded = ws.ledger.campaigns()
            known = set(recorded) | {s.campaign for s in inputs.sent}
            if campaign is not None and campaign not in known and not ws.campaigns.get(campaign):
                shown = ", ".join(sorted(known)) or "none yet"
                raise fail(f"--campaign: no campaign named {campaign!r} (known: {shown})")
            inputs = dataclasses.replace(inputs, campaigns=tuple(recorded))
            rep = compute_funnel(inputs, as_of=when, weeks=weeks, filters=filters)
            # A red flag is about a whole campaign: a report narrowed by tier, channel or seat
            # shows the flags of the campaign's own numbers.
            whole = rep
            if dataclasses.replace(filters, campaign=None) != Filters():
                whole = compute_funnel(
                    inputs, as_of=when, weeks=weeks, filters=Filters(campaign=campaign)
                )
            flags = evaluate(whole, ws.playbook_for)
            fired = await raise_red_flags(ws, as_of=when, inputs=inputs)
            files = write_report(
                rep,
                out_dir or report_dir(settings.data_dir, when),
                charts=report_charts(rep),
                flags=flags,
            )
        return rep, flags, fired, files

    rep, flags, fired, files = run_sync(go())
    print_week(rep, flags, fired)
    out.print(
        f"wrote {escape(str(files.directory))}/: report.md, report.json, report.csv, report.html",
        highlight=False,
        soft_wrap=True,
    )


def print_week(rep: FunnelReport, flags: Sequence[RedFlag], fired: Sequence[RedFlag]) -> None:
    """Per campaign: the last complete and the current week's funnel, each rate with its
    count, each goal met / missed / not yet (and the month's opportunities), and the weeks' red
    flags; then the flags this run raised, and the notes. Every value from data is escaped: a
    campaign name is not markup."""
    from gtm.app.charts import week_label
    from gtm.app.report_words import (
        NO_DATA,
        campaign_figures,
        filters_text,
        goal_rows,
        headline_weeks,
        is_empty,
        notes,
        shown_stages,
        stage_cell,
        week_heading,
    )

    shown = headline_weeks(rep)
    labels = {week_label(w) for w in shown}
    month = f"{rep.as_of:%Y-%m}"
    out.print(
        f"[bold]Funnel as of {rep.as_of:%Y-%m-%d %H:%M} UTC[/bold] · filters: "
        f"{escape(filters_text(rep.filters))}",
        highlight=False,
        soft_wrap=True,
    )
    if not rep.campaigns:
        out.print(f"{NO_DATA}: nothing sent and no campaign recorded.", highlight=False)
    for c in rep.campaigns:
        figs = [f for f in campaign_figures(rep, c) if f.week in shown]
        t = Table(title=f"campaign {escape(c)}", title_justify="left")
        t.add_column("channel")
        t.add_column("stage")
        for f in figs:
            t.add_column(week_heading(rep, f.week), justify="right")
        for ch, stage, get in shown_stages(figs):
            t.add_row(ch, stage, *(stage_cell(get(f)) for f in figs))
        out.print(t)
        if is_empty(campaign_figures(rep, c)):
            out.print(f"  [yellow]{NO_DATA}[/yellow]: nothing sent in these weeks", highlight=False)
        for when, words, status in goal_rows(rep, c):
            if when in labels or when == month:
                style = _STATUS_STYLE[status]
                out.print(
                    f"  {when}: {escape(words)}: [{style}]{status}[/{style}]",
                    highlight=False,
                    soft_wrap=True,
                )
        for flag in (x for x in flags if x.campaign == c and x.week in shown):
            out.print(
                f"  [red]red flag[/red]: {escape(flag.message)}", highlight=False, soft_wrap=True
            )
    for flag in fired:
        out.print(
            f"[red bold]new red flag, alerted[/red bold]: {escape(flag.message)}",
            highlight=False,
            soft_wrap=True,
        )
    for note in notes(rep):
        out.print(f"[dim]note[/dim]: {escape(note)}", highlight=False, soft_wrap=True)
