"""`gtm events add|list` and `gtm sync`: what came back, for the local twins and by hand.

With the embedded defaults nothing calls back, so a person adds what happened (an accepted
invitation, a reply) with `gtm events add`, or drops Event JSON files into
`<data dir>/events/incoming/` and runs `gtm sync`. Either way the event goes through the same
ingest as Dux-Soup's webhook: once per key, matched to a sent touch or listed as unmatched.
With GTM_IMAP_* set, `gtm sync` also reads the new mail in that mailbox (`tools.imap`) and takes
in each reply, auto-reply, bounce and unsubscribe (`tools.mail_events`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, get_args

import typer
from rich.markup import escape
from rich.table import Table

from gtm.cli.common import EXIT_ROWS_REJECTED, app, err, fail, now, out, run_sync, settings_of

if TYPE_CHECKING:
    from gtm.app.escalation_pass import PendingReport

__all__ = ["EVENT_KINDS", "EXIT_MAILBOX", "events_app"]

events_app = typer.Typer(
    help="What came back: add an event by hand, list events (matched or not).",
    no_args_is_help=True,
)
app.add_typer(events_app, name="events", rich_help_panel="Loop")

EVENT_KINDS = (
    "connection_accepted",
    "message_received",
    "email_reply",
    "auto_reply",
    "bounce",
    "unsubscribe",
    "meeting_booked",
    "opportunity",
)
"""`gtm.domain.events.EventKind`, repeated for the options' help so that `gtm --help` need not
load the domain models; tests/test_cli_imports.py fails when the two differ."""
_KINDS = ", ".join(EVENT_KINDS)


def _parse_at(value: str | None) -> datetime:
    if value is None:
        return now()
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"--at: {value!r} is not an ISO 8601 time like 2025-03-01T09:30:00Z") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@events_app.command("add")
def add(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option(help=f"What happened: {_KINDS}.")],
    email: Annotated[str | None, typer.Option(help="The person's email address.")] = None,
    linkedin: Annotated[str | None, typer.Option(help="The person's LinkedIn profile URL.")] = None,
    channel: Annotated[
        str | None,
        typer.Option(help="linkedin or email; implied by the kind or the identifier given."),
    ] = None,
    text: Annotated[str, typer.Option(help="What they wrote (the new text only).")] = "",
    subject: Annotated[str | None, typer.Option(help="Email subject, if any.")] = None,
    in_reply_to: Annotated[
        list[str] | None, typer.Option(help="Message-ID the email answers; repeatable.")
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="When, ISO 8601 (no zone = UTC). Default: now.")
    ] = None,
) -> None:
    """Add one event by hand. The same event added twice is one event."""
    from gtm.app.loop import ingest, local_event, why_invalid
    from gtm.app.workspace import open_workspace
    from gtm.domain.events import EventKind
    from gtm.domain.models import Channel

    if kind not in get_args(EventKind):
        raise fail(f"--kind: {kind!r} is not one of {_KINDS}")
    if channel is not None and channel not in get_args(Channel):
        raise fail(f"--channel: {channel!r} is not linkedin or email")
    if email is None and linkedin is None:
        raise fail("give the person: --email or --linkedin")
    event = local_event(
        kind=kind,  # type: ignore[arg-type]  # checked against EventKind above
        at=_parse_at(at),
        email=email,
        linkedin_url=linkedin,
        channel=channel,  # type: ignore[arg-type]  # checked against Channel above
        text=text,
        subject=subject,
        in_reply_to=in_reply_to or (),
    )
    if (why := why_invalid(event)) is not None:
        raise fail(f"nothing added; {why}")

    async def go() -> None:
        async with open_workspace(settings_of(ctx), with_model=False) as rt:
            report = ingest(rt, [event])
            stored = rt.events.get(event.key)
            touch = rt.deps.outbox.get(stored.outbox_key) if stored and stored.outbox_key else None
        if report.duplicate:
            out.print(f"already ingested ({event.key}): nothing changed", highlight=False)
        elif touch is not None:
            out.print(
                f"added {event.kind}, matched to {touch.step} of campaign "
                f"{escape(touch.campaign)} for {escape(touch.account_id)}",
                highlight=False,
            )
        else:
            out.print(
                f"added {event.kind}, [yellow]unmatched[/yellow]: no sent touch to this person "
                "answers it (see gtm events list --unmatched)",
                highlight=False,
            )

    run_sync(go())


@events_app.command("list")
def list_events(
    ctx: typer.Context,
    unmatched: Annotated[
        bool, typer.Option("--unmatched", help="Only events no sent touch was found for.")
    ] = False,
    person: Annotated[
        str | None, typer.Option(help="Only this person (email or profile URL).")
    ] = None,
    kind: Annotated[str | None, typer.Option(help=f"Only this kind: {_KINDS}.")] = None,
) -> None:
    """List events, oldest first, with the touch each answers."""
    from gtm.app.workspace import open_workspace
    from gtm.domain.events import EventKind

    if kind is not None and kind not in get_args(EventKind):
        raise fail(f"--kind: {kind!r} is not one of {_KINDS}")

    async def go() -> None:
        async with open_workspace(settings_of(ctx), with_model=False) as rt:
            rows = rt.events.events(
                person=person,
                kind=kind,  # type: ignore[arg-type]  # checked against EventKind above
                matched=False if unmatched else None,
            )
            t = Table(title="unmatched events" if unmatched else "events")
            for col in ("at", "kind", "channel", "person", "answers", "text"):
                t.add_column(col)
            for r in rows:
                touch = rt.deps.outbox.get(r.outbox_key) if r.outbox_key else None
                answers = (
                    f"{touch.step} · {touch.campaign} · {touch.account_id}"
                    if touch
                    else "[yellow]unmatched[/yellow]"
                )
                t.add_row(
                    f"{r.event.at:%Y-%m-%d %H:%M}",
                    r.event.kind,
                    r.event.channel,
                    escape(r.person or ""),
                    answers if touch is None else escape(answers),
                    escape(r.event.text[:60]),
                )
        out.print(t)

    run_sync(go())


EXIT_MAILBOX = 6
"""`gtm sync`: the mailbox (GTM_IMAP_*) is unreachable, refuses the login or has no such folder.
The drop folder was still taken in; nothing about sending depends on the mailbox."""


def _print_escalations(acted: PendingReport) -> None:
    waiting = (
        f"; {acted.waiting_for_model} repl(ies) wait for the model (gtm escalations run)"
        if acted.waiting_for_model
        else ""
    )
    out.print(
        f"escalations: {len(acted.escalations)} new from {acted.events} event(s){waiting}",
        highlight=False,
        soft_wrap=True,
    )
    for line in acted.errors:
        err.print(f"[yellow]not yet[/yellow]: {escape(line)}", highlight=False, soft_wrap=True)


@app.command("sync", rich_help_panel="Loop")
def sync_events(ctx: typer.Context) -> None:
    """Take in what came back: every Event JSON file in <data dir>/events/incoming/, then the
    new mail in the IMAP mailbox when GTM_IMAP_HOST is set (exit status 6 if it cannot be
    read); then evaluate the playbook's red flags (a new one is printed and alerted once)."""
    from gtm.app.loop import drop_folder
    from gtm.app.loop_pass import red_flag_pass
    from gtm.app.sync import MailboxConfigError, open_mailbox, sync_all
    from gtm.app.workspace import open_workspace

    async def go() -> int:
        s = settings_of(ctx)
        try:
            mailbox = open_mailbox(s)
        except MailboxConfigError as exc:
            raise fail(str(exc)) from None
        # With a configured endpoint the replies are classified now; the embedded model is
        # not started for a sync (`gtm escalations run` or the next `gtm run` classifies them).
        async with open_workspace(s, with_model=bool(s.model_base_url)) as rt:
            done = await sync_all(rt, mailbox)
            fired = await red_flag_pass(rt)  # cron'd `gtm sync` alone still raises them
        report, mail, acted = done.folder, done.mail, done.escalations
        got = report.ingested
        out.print(
            f"{len(report.done)} file(s) from {drop_folder(s.data_dir)}: "
            f"{got.new} new ({got.matched} matched, {got.unmatched} unmatched), "
            f"{got.duplicate} already ingested, {len(report.rejected)} rejected",
            highlight=False,
            soft_wrap=True,
        )
        for name, why in report.rejected:
            err.print(
                f"[red]rejected[/red] {escape(name)}: {escape(why)} (moved to rejected/)",
                highlight=False,
                soft_wrap=True,
            )
        for flag in fired:
            out.print(
                f"red flag {flag.id}: {escape(flag.message)}", highlight=False, soft_wrap=True
            )
        if mail is not None and mail.error is not None:
            err.print(
                f"[red]{escape(f'mailbox: {mail.error}')}[/red] (nothing read; sending is not "
                "affected)",
                highlight=False,
                soft_wrap=True,
            )
            return EXIT_MAILBOX
        if mail is not None:
            more = f"; {mail.waiting} more waiting (run again)" if mail.waiting else ""
            m = mail.ingested
            line = (
                f"{mail.messages} message(s) from {mail.name}: {m.new} "
                f"new ({m.matched} matched, {m.unmatched} unmatched), "
                f"{m.duplicate} already ingested, {mail.skipped} not an event{more}"
            )
            out.print(escape(line), highlight=False, soft_wrap=True)
        _print_escalations(acted)
        return EXIT_ROWS_REJECTED if report.rejected else 0

    code = run_sync(go())
    if code:
        raise typer.Exit(code)
