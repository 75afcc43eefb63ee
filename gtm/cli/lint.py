"""`gtm lint FILE|-`: score messages a team already has (templates, sequences, a vendor's output)
with every check that needs no research, plus the research-free specificity score.

Exit status: 0 when every message passes, 1 when any fails (or cannot be read: an empty row, a
message over 100 KB, one that is not UTF-8), 2 when nothing could be linted (bad options, a
missing, empty or binary file, a CSV without its message column). So it runs as a pre-commit
hook or a CI step over a folder of templates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from gtm.cli.common import EXIT_REFUSED, app, err, fail, out, settings_of

if TYPE_CHECKING:
    from gtm.app.lint import LintResult

__all__ = ["lint", "print_result"]

_INPUTS = ("auto", "text", "csv", "eml")
_STEPS = ("auto", "linkedin_connect", "linkedin_message", "email")
_FORMATS = ("text", "json")
_VERDICT_STYLE = {"pass": "green", "fail": "red", "error": "red"}
DEFAULT_MIN_SPECIFICITY = 0.5
"""`evals.specificity.DEFAULT_MIN_SPECIFICITY`, repeated so that `gtm --help` need not load the
checks; tests/test_cli_imports.py fails when the two differ."""


@app.command(rich_help_panel="Review")
def lint(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="Text, Markdown, CSV or .eml file; - for stdin.")],
    column: Annotated[
        str | None,
        typer.Option(help="CSV column holding the message (default: message, body or text)."),
    ] = None,
    input_type: Annotated[
        str, typer.Option("--input", help="auto (by file name), text, csv or eml.")
    ] = "auto",
    step: Annotated[
        str,
        typer.Option(
            help="Length limits to apply: auto (email when there is a subject, else LinkedIn "
            "message), linkedin_connect, linkedin_message or email."
        ),
    ] = "auto",
    min_specificity: Annotated[
        float,
        typer.Option(help="A message scoring below this fails (0..1).", min=0.0, max=1.0),
    ] = DEFAULT_MIN_SPECIFICITY,
    output: Annotated[
        str, typer.Option("--format", help="text (for people) or json (one object per line).")
    ] = "text",
) -> None:
    """Score messages without research: guardrail checks, specificity, and the spans behind
    them. Exits 1 when any message fails."""
    from gtm.app.lint import LintInputError, lint_bytes
    from gtm.domain.playbook import PlaybookError, load_playbook

    for value, allowed, flag in (
        (input_type, _INPUTS, "--input"),
        (step, _STEPS, "--step"),
        (output, _FORMATS, "--format"),
    ):
        if value not in allowed:
            raise fail(f"{flag} must be one of {', '.join(allowed)}, not {value!r}")
    try:
        playbook = load_playbook(settings_of(ctx).playbook)
    except PlaybookError as exc:
        raise fail(str(exc)) from None
    name = "<stdin>" if file == "-" else file
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except FileNotFoundError:
        raise fail(f"{name}: no such file") from None
    except IsADirectoryError:
        raise fail(f"{name}: is a directory, not a file") from None
    except OSError as exc:
        raise fail(f"{name}: cannot read it ({exc.strerror or exc})") from None
    try:
        results = lint_bytes(
            data,
            name,
            playbook,
            kind=input_type,  # type: ignore[arg-type]  # checked against _INPUTS above
            column=column,
            step=step,  # type: ignore[arg-type]  # checked against _STEPS above
            min_specificity=min_specificity,
        )
    except LintInputError as exc:
        raise fail(str(exc)) from None
    for r in results:
        if output == "json":
            typer.echo(json.dumps(r.as_dict()))
        else:
            print_result(r)
    failed = sum(r.verdict != "pass" for r in results)
    if output == "text":
        style = "red" if failed else "green"
        out.print(
            f"[{style}]{len(results) - failed} of {len(results)} message(s) passed[/{style}]",
            highlight=False,
        )
    if failed:
        raise typer.Exit(EXIT_REFUSED)


def print_result(r: LintResult) -> None:
    """One message: verdict, score, failed checks with their spans, then the evidence."""
    label = escape(f"message {r.message.index} ({r.message.source.label()})")
    style = _VERDICT_STYLE[r.verdict]
    if r.verdict == "error":
        err.print(f"[red]error:[/red] {escape(r.error)}", highlight=False, soft_wrap=True)
        return
    assert r.specificity is not None
    out.print(
        f"[bold]{label}[/bold]  [{style}]{r.verdict.upper()}[/{style}]  "
        f"specificity {r.specificity.score:.2f}",
        highlight=False,
    )
    for f in r.findings:
        if f.passed:
            continue
        out.print(f"  [red]✗ {f.check}[/red]: {escape(f.finding)}", highlight=False, soft_wrap=True)
        if f.instruction:
            out.print(f"    → {escape(f.instruction)}", highlight=False, soft_wrap=True)
    for s in r.specificity.specific:
        out.print(
            f"  [green]+ specific[/green] {escape(repr(s.text))} [dim]{escape(s.why)}[/dim]",
            highlight=False,
            soft_wrap=True,
        )
    for s in r.specificity.generic:
        out.print(
            f"  [yellow]- generic[/yellow] {escape(repr(s.text))} [dim]{escape(s.why)}[/dim]",
            highlight=False,
            soft_wrap=True,
        )
