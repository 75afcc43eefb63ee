"""`gtm escalations list|run|done`: what came back that a human must act on.

`gtm inbox` shows the open ones after the drafts; these commands list them all, take in the
replies that still need the model (`run`), and close one a person has handled (`done`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gtm.cli.common import app, err, fail, now, out, run_sync, settings_of

if TYPE_CHECKING:
    from tools.escalations import Escalation

__all__ = ["escalations_app", "escalation_table"]

escalations_app = typer.Typer(
    help="Replies and opt-outs the playbook escalates: list them, act on new ones, close one.",
    no_args_is_help=True,
)
app.add_typer(escalations_app, name="escalations", rich_help_panel="Loop")


def escalation_table(rows: list[Escalation], at: datetime, *, title: str) -> Table:
    """The escalations as a table, every value escaped (a reply's words are not markup)."""
    from gtm.app.escalations import time_left

    t = Table(title=title)
    for col in ("id", "signal", "person", "company", "owner", "deadline", "evidence", "outcome"):
        t.add_column(col)
    for e in rows:
        t.add_row(
            str(e.id),
            escape(e.signal.replace("_", " ")),
            escape(e.contact),
            escape(e.company or "—"),
            escape(e.owner),
            escape(time_left(e, at)),
            escape(e.evidence[:80]),
            escape(e.outcome[:80] or "not carried out yet"),
        )
    return t


@escalations_app.command("list")
def list_escalations(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Also those already handled.")] = False,
) -> None:
    """Open escalations, nearest deadline first."""
    from gtm.app.escalations import needs_human
    from gtm.app.workspace import open_workspace

    async def go() -> list[Escalation]:
        async with open_workspace(settings_of(ctx), with_model=False) as rt:
            return needs_human(rt, include_done=all_)

    rows = run_sync(go())
    if not rows:
        out.print("No escalations." if all_ else "Nothing needs a human.")
        return
    out.print(escalation_table(rows, now(), title="escalations" if all_ else "needs a human"))


@escalations_app.command("run")
def run_escalations(ctx: typer.Context) -> None:
    """Classify the replies not yet escalated (this starts the model) and act on them."""
    from gtm.app.escalation_pass import escalate_pending
    from gtm.app.workspace import open_workspace

    async def go() -> tuple[int, int, list[str]]:
        async with open_workspace(settings_of(ctx), with_model=True) as rt:
            report = await escalate_pending(rt)
        return report.events, len(report.escalations), report.errors

    events, raised, errors = run_sync(go())
    out.print(f"{events} event(s) looked at, {raised} escalation(s).", highlight=False)
    for line in errors:
        err.print(f"[yellow]not yet[/yellow]: {escape(line)}", highlight=False, soft_wrap=True)


@escalations_app.command("done")
def done(
    ctx: typer.Context,
    escalation_id: Annotated[int, typer.Argument(help="The id `gtm escalations list` shows.")],
) -> None:
    """Mark an escalation handled (the first time and person are kept)."""
    from gtm.app.escalations import mark_done
    from gtm.app.workspace import open_workspace

    settings = settings_of(ctx)

    async def go() -> Escalation | None:
        async with open_workspace(settings, with_model=False) as rt:
            return mark_done(rt, escalation_id, settings.reviewer)

    esc = run_sync(go())
    if esc is None:
        raise fail(f"no escalation {escalation_id}: see gtm escalations list --all")
    out.print(
        f"escalation {esc.id} ({escape(esc.signal.replace('_', ' '))}, {escape(esc.contact)}) "
        f"done by {escape(esc.done_by or '')}",
        highlight=False,
    )
