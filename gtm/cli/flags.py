"""`gtm flags list|dismiss`: the playbook's red flags that fired, and closing one a person has
seen and acted on.

A flag fires once per flag, ISO week and campaign, at the end of `gtm run`, a `gtm serve` tick
or `gtm sync` (`gtm.app.loop_pass`); it stays at the top of `gtm inbox` and the web queue until
someone dismisses it here or with the web queue's Dismiss button.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gtm.cli.common import app, fail, out, run_sync, settings_of

if TYPE_CHECKING:
    from gtm.app.red_flags import StoredFlag

__all__ = ["flags_app", "flag_table", "print_flag_banner"]

flags_app = typer.Typer(
    help="Red flags from the playbook that fired: list them, dismiss one you have acted on.",
    no_args_is_help=True,
)
app.add_typer(flags_app, name="flags", rich_help_panel="Loop")


def flag_table(flags: Sequence[StoredFlag], *, title: str) -> Table:
    """The flags as a table: which number, its value, threshold, sample, week and campaign."""
    from gtm.app.red_flags import flag_number, shown_figure

    t = Table(title=title)
    dismissed = any(f.dismissed_at for f in flags)
    for col in ("id", "number", "value", "threshold", "sample", "week", "campaign"):
        t.add_column(col)
    if dismissed:
        t.add_column("dismissed")
    for f in flags:
        cells = [
            str(f.id),
            flag_number(f.flag),
            shown_figure(f.flag, f.value),
            "below " + shown_figure(f.flag, f.threshold, whole=True),
            str(f.sample),
            f"{f.week:%G-W%V} ({f.week:%Y-%m-%d})",
            escape(f.campaign),
        ]
        if dismissed:
            cells.append(f"{f.dismissed_at:%Y-%m-%d %H:%M} UTC" if f.dismissed_at else "—")
        t.add_row(*cells)
    return t


def print_flag_banner(flags: Sequence[StoredFlag]) -> None:
    """The open red flags, at the top of `gtm inbox`, and how to close one."""
    if not flags:
        return
    out.print(flag_table(flags, title=f"red flags ({len(flags)} open)"))
    out.print(
        "Each says which playbook number fell below its red-flag threshold. Once you have acted "
        "on one: [bold]gtm flags dismiss ID[/bold] (or Dismiss in the web inbox).",
        highlight=False,
    )


@flags_app.command("list")
def list_flags(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Also those already dismissed.")] = False,
) -> None:
    """Red flags that fired, newest week first (open ones only unless --all)."""
    from gtm.app.red_flags import open_flag_store
    from gtm.app.workspace import open_workspace

    async def go() -> list[StoredFlag]:
        async with open_workspace(settings_of(ctx), with_model=False) as rt:
            with open_flag_store(rt) as store:
                return store.listing(include_dismissed=all_)

    flags = run_sync(go())
    if not flags:
        out.print("No red flags." if all_ else "No open red flags.")
        return
    out.print(flag_table(flags, title="red flags" if all_ else "open red flags"))


@flags_app.command("dismiss")
def dismiss(
    ctx: typer.Context,
    flag_id: Annotated[int, typer.Argument(metavar="ID", help="The id `gtm flags list` shows.")],
) -> None:
    """Dismiss a red flag you have seen and acted on (the first time and person are kept)."""
    from gtm.app.red_flags import dismiss_flag, flag_number, open_flags
    from gtm.app.workspace import open_workspace

    settings = settings_of(ctx)

    async def go() -> tuple[StoredFlag | None, bool]:
        async with open_workspace(settings, with_model=False) as rt:
            was_open = any(f.id == flag_id for f in open_flags(rt))
            return dismiss_flag(rt, flag_id, settings.reviewer), was_open

    flag, was_open = run_sync(go()) if 0 < flag_id < 2**63 else (None, False)
    if flag is None:
        raise fail(f"no red flag {flag_id}: see gtm flags list --all")
    what = f"red flag {flag.id} ({flag_number(flag.flag)}, {flag.week:%G-W%V}, "
    what += f"campaign {escape(flag.campaign)})"
    if not was_open:
        when = f" at {flag.dismissed_at:%Y-%m-%d %H:%M} UTC" if flag.dismissed_at else ""
        out.print(f"{what} was already dismissed{when}.", highlight=False)
        return
    out.print(f"{what} dismissed by {escape(settings.reviewer)}.", highlight=False)
