"""`gtm inbox`, `approve`, `edit`, `reject`, `regenerate`: the reviewer's commands."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.panel import Panel

from gtm.cli.common import (
    EXIT_REFUSED,
    app,
    err,
    fail,
    now,
    out,
    print_attention,
    run_sync,
    settings_of,
    usage_errors,
)
from gtm.cli.escalations import escalation_table
from gtm.cli.flags import print_flag_banner

if TYPE_CHECKING:
    from gtm.app.ledger import DecisionRecord, ThreadRow
    from gtm.app.settings import Settings
    from gtm.domain.approval import ApprovalRequest
    from gtm.domain.models import Decision, Fact
    from gtm.domain.qualification import Qualification

# --------------------------------------------------------------------------- inbox


def _page_lines(f: Fact) -> list[str]:
    """A website fact's quote, the page's date, when it was fetched, and the stale mark (URLs
    are text: nothing in a terminal panel is a link); for another fact marked stale (a LinkedIn
    profile fact from an old sighting), its day and the same mark."""
    e = escape
    if not (f.quote or f.kind == "website"):  # a profile fact from an old sighting: same mark
        seen = f"seen {f.published.isoformat()}" if f.published else ""
        return [f"      [dim]{e(seen)}[/dim]  [yellow]STALE: not news[/yellow]"] if f.stale else []
    lines = [f"      [italic]“{e(f.quote)}”[/italic]"] if f.quote else []
    when = f"published {f.published.isoformat()}" if f.published else "page states no date"
    if f.fetched_at:
        when += f" · fetched {f.fetched_at:%Y-%m-%d %H:%M} UTC"
    stale = "  [yellow]STALE: not news[/yellow]" if f.stale else ""
    lines.append(f"      [dim]{e(when)}[/dim]{stale}")
    return lines


def _card_lines(card: Qualification) -> list[str]:
    """The qualification card: each MEDDIC element and PQL signal with the fact ids behind it."""
    e = escape
    lines = [f"[bold]Qualification[/bold] (score {card.score:g} of {card.max_score:g})"]
    for el in card.meddic:
        ids = " ".join(e(f"[{ev.fact_id}]") for ev in el.evidence)
        value = e(el.value) if el.known else "[dim]unknown[/dim]"
        lines.append(f"  {el.label}: {value}" + (f" {ids}" if ids else ""))
    for sig in card.pql:
        ids = " ".join(e(f"[{ev.fact_id}]") for ev in sig.evidence)
        if sig.known:
            bar = "meets" if sig.met else "below"
            value = f"{e(sig.value)} ({bar} the bar of {sig.at_least:g}) {ids}"
        else:
            value = "[dim]unknown[/dim]"
        lines.append(f"  {e(sig.label)}: {value}")
    return lines


def draft_view(
    row: ThreadRow,
    request: ApprovalRequest,
    history: list[DecisionRecord],
    card: Qualification | None = None,
) -> Panel:
    """The draft as a reviewer must see it: every value escaped, so template debris such as
    "[Company]" or "[erased]" shows instead of being read as Rich markup and vanishing. The
    qualification card shows when the thread has one."""
    from gtm.app.sendable import unsendable

    draft, contact = request.draft, request.contact
    facts = {f.id: f for f in request.facts}
    e = escape
    lines = [
        f"[bold]{e(row.company)}[/bold]  tier {request.tier or '-'}  ·  {draft.channel} "
        f"({draft.step})  ·  to {e(contact.name)}, {e(contact.title or 'title unknown')}",
        f"prompt {e(draft.prompt_version)}  ·  model {e(draft.model)}",
        "",
    ]
    if draft.subject:
        lines.append(f"[bold]Subject:[/bold] {e(draft.subject)}")
    lines += [e(draft.body) or "[italic](empty draft)[/italic]", "", "[bold]Cited facts[/bold]"]
    for fid in draft.cited_fact_ids:
        f = facts.get(fid)
        lines.append(
            f"  {e(f'[{fid}]')} {e(f.text)}  "
            f"[dim]({e(f.source)}{e(' · ' + f.url) if f.url and f.url != f.source else ''})[/dim]"
            if f
            else f"  {e(f'[{fid}]')} [red]no such fact[/red]"
        )
        if f:
            lines += _page_lines(f)
    if not draft.cited_fact_ids:
        lines.append("  none")
    lines.append("[bold]Guardrails[/bold]: " + ("all passed" if not request.findings else ""))
    for fnd in request.findings:
        lines.append(f"  [red]✗ {e(fnd.check)}[/red]: {e(fnd.finding)}")
    if card is not None:
        lines += _card_lines(card)
    if blockers := unsendable(request):
        why = e("; ".join(blockers))
        lines.append(f"[red]cannot be sent as written[/red] ({why}): edit or regenerate it")
    for d in history:  # earlier decisions on this thread, such as a regenerate
        note = f": {d.note}" if d.note else ""
        lines.append(f"[dim]{d.at:%Y-%m-%d %H:%M} UTC {d.action} by {e(d.reviewer)}{e(note)}[/dim]")
    title = f"#{row.id}" + ("  [red]FLAGGED[/red]" if request.flagged else "")
    return Panel("\n".join(lines), title=title, title_align="left", highlight=False)


INBOX_PAGE = 20
"""Drafts `gtm inbox` shows at once: each is a full panel, facts and findings included."""


@app.command(rich_help_panel="Review")
def inbox(
    ctx: typer.Context,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    page: Annotated[
        int, typer.Option(min=1, help="Which page of the waiting drafts, oldest first.")
    ] = 1,
    limit: Annotated[
        int, typer.Option(min=1, help=f"Drafts on a page (default {INBOX_PAGE}).")
    ] = INBOX_PAGE,
    show_all: Annotated[
        bool, typer.Option("--all", help="Every waiting draft on one page.")
    ] = False,
    web: Annotated[
        bool, typer.Option("--web", help="Serve the inbox as a local web app instead.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port for --web (0 picks a free one).")] = 8765,
    host: Annotated[
        str, typer.Option(help="Address for --web. Keep it on loopback unless you must.")
    ] = "127.0.0.1",
) -> None:
    """List drafts waiting for a decision, oldest first and a page at a time, under the open
    red flags (or serve them with --web)."""
    from gtm.app.checkpoints import waiting_state
    from gtm.app.escalations import needs_human
    from gtm.app.red_flags import open_flags
    from gtm.app.waiting import Page, PageError, WaitingMatch
    from gtm.app.workspace import open_workspace
    from gtm.domain.qualification import STATE_FIELD, Qualification

    if web:
        _serve_inbox(settings_of(ctx), host=host, port=port)
        return
    if show_all and page != 1:
        raise fail("--all shows every draft on one page: leave out --page")

    async def go() -> tuple[int, Page]:
        async with open_workspace(settings_of(ctx), with_model=False, memory_on_demand=True) as rt:
            match = WaitingMatch(campaign=campaign)
            paged = Page(
                number=page, size=None if show_all else limit, total=match.count(rt.ledger)
            )
            try:
                paged.check()
            except PageError as exc:
                raise fail(f"{exc}: gtm inbox --page {paged.pages} is the last") from None
            print_flag_banner([f for f in open_flags(rt) if campaign in (None, f.campaign)])
            rows = match.rows(rt.ledger, "oldest", limit=paged.limit, offset=paged.offset)
            shown = 0
            for row in rows:
                request, values = await waiting_state(rt, row.thread_id)
                if request is None:
                    continue
                card = Qualification.from_state(values.get(STATE_FIELD))
                out.print(draft_view(row, request, rt.ledger.history(row.thread_id), card))
                shown += 1
            print_attention(rt, campaign)
            if waiting := needs_human(rt):
                out.print(escalation_table(waiting, now(), title="needs a human"))
            return shown, paged

    n, paged = run_sync(go())
    if paged.several:
        more = (
            f": gtm inbox --page {paged.number + 1} for the next, --all for every one"
            if paged.number < paged.pages
            else ""
        )
        out.print(f"{paged.total:,} draft(s) waiting; {paged.line()}{more}.", highlight=False)
    else:
        out.print(f"{n} draft(s) waiting." if n else "Nothing is waiting for approval.")


def _serve_inbox(settings: Settings, *, host: str, port: int) -> None:
    from gtm.web import serve

    if not (host in ("localhost", "::1") or host.startswith("127.")):
        err.print(
            f"[yellow]warning[/yellow]: serving on {host}, not loopback: anyone who can reach it "
            "and learns the token can approve sends.",
            highlight=False,
        )
    try:
        serve(settings, host=host, port=port, announce=lambda line: out.print(line, soft_wrap=True))
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except usage_errors() as exc:  # a playbook, or a server or database away at start-up
        raise fail(str(exc)) from None


# --------------------------------------------------------------------------- decisions


def _decide(ctx: typer.Context, ref: str, decision: Decision, *, with_model: bool = False) -> None:
    """Take the decision under the runner's policy and apply it. Naming the draft's id after
    `gtm inbox` showed its findings is the confirmation a flagged draft needs."""
    from gtm.app.campaigns import PlaybookMismatch
    from gtm.app.runner import DecisionRefused, EditRefused, apply_decision, take_decision
    from gtm.app.workspace import open_workspace

    settings = settings_of(ctx)

    async def go() -> ThreadRow:
        async with open_workspace(settings, with_model=with_model) as rt:
            row = rt.ledger.get(ref)
            record = rt.campaigns.get(row.campaign) if row is not None else None
            if settings.playbook is not None and record is not None:
                # The decision applies under the campaign's playbook; naming another is a
                # mistake to point out, not to act on.
                rt.campaigns.resolve(record.name, rt.playbook, explicit=True, adopt=False)
            taken = await take_decision(rt, ref, decision, confirmed=True)
            for note in taken.notes:
                err.print(f"[yellow]note[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
            return await apply_decision(rt, taken.row)

    try:
        row = run_sync(go())
    except (EditRefused, PlaybookMismatch) as exc:
        raise fail(str(exc)) from None
    except DecisionRefused as exc:
        raise fail(str(exc), code=EXIT_REFUSED) from None
    note = f" ({row.detail})" if row.detail else ""
    out.print(
        escape(f"#{row.id} {row.company}: {decision.action} → {row.status}{note}"),
        highlight=False,
    )


@app.command(rich_help_panel="Review")
def approve(ctx: typer.Context, draft_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Approve a draft as written; it is sent and logged to the CRM."""
    from gtm.domain.models import Decision

    _decide(ctx, draft_id, Decision(action="approve", reviewer=settings_of(ctx).reviewer, at=now()))


@app.command(rich_help_panel="Review")
def edit(
    ctx: typer.Context,
    draft_id: Annotated[str, typer.Argument(metavar="ID")],
    text: Annotated[
        str | None, typer.Option(help="New message text (default: open $EDITOR).")
    ] = None,
    subject: Annotated[str | None, typer.Option(help="New email subject.")] = None,
) -> None:
    """Edit a draft and approve the edited text."""
    from gtm.domain.models import Decision

    settings = settings_of(ctx)
    if text is None:
        text = _edit_in_editor(ctx, draft_id)
    _decide(
        ctx,
        draft_id,
        Decision(action="edit", text=text, subject=subject, reviewer=settings.reviewer, at=now()),
    )


def _current(ctx: typer.Context, draft_id: str) -> ApprovalRequest:
    from gtm.app.runner import pending_request
    from gtm.app.workspace import open_workspace

    async def go() -> ApprovalRequest | None:
        async with open_workspace(settings_of(ctx), with_model=False) as rt:
            row = rt.ledger.get(draft_id)
            return await pending_request(rt, row.thread_id) if row else None

    request = run_sync(go())
    if request is None:
        raise fail(f"draft {draft_id} is not waiting for a decision", code=EXIT_REFUSED)
    return request


def _edit_in_editor(ctx: typer.Context, draft_id: str) -> str:
    body = _current(ctx, draft_id).draft.body
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w+", suffix=".txt", delete=False) as fh:
        fh.write(body)
        path = fh.name
    try:
        subprocess.run([*editor.split(), path], check=True)
        return Path(path).read_text(encoding="utf-8")
    except (OSError, subprocess.CalledProcessError) as exc:
        raise fail(f"editor {editor!r} failed: {exc}") from None
    finally:
        os.unlink(path)


@app.command(rich_help_panel="Review")
def reject(
    ctx: typer.Context,
    draft_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why; kept in memory for next time.")],
) -> None:
    """Reject a draft; nothing is sent."""
    from gtm.domain.models import Decision

    _decide(
        ctx,
        draft_id,
        Decision(action="reject", reason=reason, reviewer=settings_of(ctx).reviewer, at=now()),
    )


@app.command(rich_help_panel="Review")
def stop(
    ctx: typer.Context,
    draft_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why; shown with the thread.")] = "",
) -> None:
    """Stop a thread's sequence: no further follow-up is drafted or sent. A follow-up waiting
    for approval is rejected with it."""
    from gtm.app.runner import DecisionRefused, apply_decision, take_decision
    from gtm.app.workspace import open_workspace
    from gtm.domain.models import Decision

    settings = settings_of(ctx)
    why = f"stopped by {settings.reviewer}" + (f": {reason}" if reason else "")

    async def go() -> tuple[ThreadRow, str]:
        async with open_workspace(settings, with_model=False) as rt:
            row = rt.ledger.stop_sequence(draft_id, why)
            if row is None:
                raise DecisionRefused(f"no thread with id {draft_id}")
            if row.status != "waiting_for_approval" or row.seq_pos == 0:
                return row, ""
            decision = Decision(action="reject", reason=why, reviewer=settings.reviewer, at=now())
            try:
                taken = await take_decision(rt, row.id, decision, confirmed=True)
            except DecisionRefused as exc:
                return row, f"; its waiting follow-up was not rejected: {exc}"
            return await apply_decision(rt, taken.row), "; its waiting follow-up was rejected"

    try:
        row, extra = run_sync(go())
    except DecisionRefused as exc:
        raise fail(str(exc), code=EXIT_REFUSED) from None
    out.print(
        escape(f"#{row.id} {row.company}: sequence stopped ({row.seq_stopped}){extra}"),
        highlight=False,
    )


@app.command(rich_help_panel="Review")
def regenerate(
    ctx: typer.Context,
    draft_id: Annotated[str, typer.Argument(metavar="ID")],
    instructions: Annotated[str, typer.Option(help="What the rewrite should change.")],
) -> None:
    """Rewrite a draft with your instructions; it comes back to the inbox."""
    from gtm.domain.models import Decision

    _decide(
        ctx,
        draft_id,
        Decision(
            action="regenerate",
            instructions=instructions,
            reviewer=settings_of(ctx).reviewer,
            at=now(),
        ),
        with_model=True,
    )
