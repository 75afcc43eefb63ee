"""`gtm import FILE [--map MAP] [--dry-run]`: preview how a list export will be read.

It shows which column went where, what was ignored and why, the first rows as they will be
read, and how many rows are good or rejected (with the reasons). It never writes anything:
`gtm run FILE --map MAP` reads the export itself with the same mapping, so no second copy of
the people on it is made (one less file to keep in step, and to erase on `gtm forget`), and
facts keep their source in the user's own file. `--dry-run` says so explicitly for scripts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gtm.cli.common import EXIT_ROWS_REJECTED, EXIT_USAGE, app, err, fail, out

if TYPE_CHECKING:
    from gtm.app.accounts import AccountList
    from gtm.app.list_columns import ColumnMap, MapFile

__all__ = ["import_list", "print_columns"]

PREVIEW_ROWS = 5


def print_columns(cm: ColumnMap) -> None:
    """Their column → our field, then the columns ignored and why."""
    t = Table(title="columns" + (f" (looks like: {', '.join(cm.formats)})" if cm.formats else ""))
    for col in ("#", "their column", "our field", "how"):
        t.add_column(col)
    rows = [(u.index, u.header, u.field, u.how) for u in cm.used]
    rows += [(i, h, "[dim]ignored[/dim]", why) for i, h, why in cm.ignored]
    for i, h, ours, how in sorted(rows):
        t.add_row(str(i + 1), escape(h), ours, how)
    out.print(t)


def _print_rows(listing: AccountList) -> None:
    t = Table(title=f"first rows as they will be read ({listing.rows_read} row(s) read)")
    for col in ("row", "company", "domain", "contact", "title", "reach", "facts"):
        t.add_column(col)
    shown = 0
    for a in listing.accounts:
        for c in a.contacts:
            if shown == PREVIEW_ROWS:
                break
            facts = [f for f in a.facts if f.source.split(":")[1] == str(c.row)]
            facts += c.profile
            t.add_row(
                str(c.row),
                escape(a.company),
                a.domain,
                escape(c.name),
                escape(c.title),
                escape(c.email or c.linkedin_url or ""),
                escape("; ".join(f.text for f in facts)),
            )
            shown += 1
    out.print(t)


def _print_counts(listing: AccountList) -> None:
    good = sum(len(a.contacts) for a in listing.accounts)
    out.print(
        f"{good} good row(s) in {len(listing.accounts)} account(s), {len(listing.errors)} rejected",
        highlight=False,
    )
    reasons = Counter(f"{e.field}: {e.reason.split(' (')[0]}" for e in listing.errors)
    for reason, n in reasons.most_common():
        out.print(f"  {n} × {escape(reason)}", highlight=False, soft_wrap=True)
    for e in listing.errors:
        err.print(f"[red]rejected[/red] {escape(str(e))}", highlight=False, soft_wrap=True)


@app.command("import", rich_help_panel="Campaigns")
def import_list(
    file: Annotated[Path, typer.Argument(help="An exported list (CSV): HubSpot, Apollo, ...")],
    map_file: Annotated[
        Path | None,
        typer.Option("--map", help='YAML/TOML map: our_field: "Their Column", facts: [...]'),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only preview (import never writes anyway).")
    ] = False,
) -> None:
    """Preview how a list will be read: columns, ignored columns, first rows, rejections."""
    from gtm.app.accounts import AccountListError, load_accounts, read_header
    from gtm.app.list_columns import MapFileError, load_map

    mapping: MapFile | None = None
    if map_file is not None:
        try:
            mapping = load_map(map_file)
        except MapFileError as exc:
            raise fail(str(exc)) from None
    try:
        listing = load_accounts(file, mapping)
    except AccountListError as exc:
        try:
            print_columns(read_header(file, mapping))
        except AccountListError:
            pass  # the file itself is unreadable: the message below says why
        err.print(
            f"[red]error:[/red] {escape(str(exc))}\n"
            "Name the columns in a map file and pass it with --map (examples/README.md).",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_USAGE) from None
    assert listing.columns is not None
    print_columns(listing.columns)
    for w in listing.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False, soft_wrap=True)
    _print_rows(listing)
    _print_counts(listing)
    run = f"gtm run {file}" + (f" --map {map_file}" if map_file else "")
    verb = "dry run: nothing written" if dry_run else "nothing written"
    out.print(f"{verb}. Next: [bold]{escape(run)}[/bold]", highlight=False)
    if listing.errors:
        raise typer.Exit(EXIT_ROWS_REJECTED)
