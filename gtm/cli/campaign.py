"""`gtm run` and `gtm status`: start or resume a campaign, and see where it stands."""

from __future__ import annotations

from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gtm.cli.common import (
    EXIT_ACCOUNTS_FAILED,
    EXIT_BUSY,
    EXIT_ROWS_REJECTED,
    app,
    err,
    fail,
    out,
    print_attention,
    run_sync,
    settings_of,
)

if TYPE_CHECKING:  # the application loads when a command runs, so `gtm --help` stays fast
    from gtm.app.ledger import ThreadRow
    from gtm.app.runner import RunSummary
    from gtm.app.settings import Settings
    from gtm.app.workspace import Workspace
    from gtm.domain.models import Channel, Step
    from gtm.domain.playbook import Playbook
    from tools.pg_leases import AccountLeases

# --------------------------------------------------------------------------- run


@app.command(rich_help_panel="Campaigns")
def run(
    ctx: typer.Context,
    accounts: Annotated[
        Path | None,
        typer.Argument(help="Account list CSV (one row per contact); or --from a CRM list."),
    ] = None,
    from_source: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="hubspot:list/ID|attio:list/SLUG",
            help="Run the people of a CRM list instead of a CSV (the configured CRM's).",
        ),
    ] = None,
    campaign: Annotated[
        str | None, typer.Option(help="Campaign name; running it again resumes it.")
    ] = None,
    channel: Annotated[str, typer.Option(help="linkedin or email.")] = "linkedin",
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Accounts in flight.")] = 4,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N accounts.")] = None,
    playbook: Annotated[
        Path | None,
        typer.Option(help="Playbook file; a campaign keeps the one it was started with."),
    ] = None,
    adopt_playbook: Annotated[
        bool,
        typer.Option(
            "--adopt-playbook", help="Switch a running campaign to the playbook given here."
        ),
    ] = False,
    map_file: Annotated[
        Path | None,
        typer.Option(
            "--map",
            help="Map file naming the list's columns (see gtm import); known exports need none.",
        ),
    ] = None,
    prompt_variants: Annotated[
        str | None,
        typer.Option(
            metavar="V1,V2",
            help="Split the accounts at random among these versions of the writer prompts "
            "(prompts/<name>@<version>.md); fixed when the campaign starts.",
        ),
    ] = None,
    lease_seconds: Annotated[
        float,
        typer.Option(
            min=1,
            help="With GTM_DATABASE_URL, several `gtm run` workers share a campaign: how long "
            "one's hold on an account lasts unrenewed (a killed worker's accounts are taken "
            "over after it).",
        ),
    ] = 60.0,
) -> None:
    """Run every account on the list through research → personalize → review → approval.

    Without GTM_DATABASE_URL one process runs a campaign at a time. With it, start as many
    `gtm run` processes on the campaign as you like, on any machines: they split its accounts.
    """
    from gtm.app.accounts import AccountList, AccountListError, load_accounts
    from gtm.app.campaigns import (
        CampaignBusy,
        PlaybookMismatch,
        PromptVariantError,
        VariantsMismatch,
        campaign_lock,
        parse_prompt_variants,
    )
    from gtm.app.crm_lists import (
        CrmList,
        CrmListError,
        describe,
        parse_source,
        pull_list,
        record_held,
    )
    from gtm.app.list_columns import MapFileError, load_map
    from gtm.app.runner import run_campaign
    from gtm.app.workspace import open_workspace
    from gtm.domain.playbook import PlaybookError, load_playbook

    settings = settings_of(ctx).with_overrides(playbook=playbook)
    if settings.database_url is not None:  # say which stores Postgres holds, and which not
        from gtm.app.stores import check_schema, where_stores_live
        from tools.pg import DatabaseError

        try:  # before the campaign is recorded anywhere: a refused database writes nothing
            check_schema(settings.database_url.get_secret_value())
        except DatabaseError as exc:
            raise fail(str(exc)) from None
        err.print(f"note: {where_stores_live(settings)}", highlight=False, soft_wrap=True)
    if channel not in ("linkedin", "email"):
        raise fail(f"--channel must be 'linkedin' or 'email', not {channel!r}")
    try:
        named = parse_prompt_variants(prompt_variants) if prompt_variants is not None else None
    except PromptVariantError as exc:
        raise fail(str(exc)) from None
    try:
        pb = load_playbook(settings.playbook)
    except PlaybookError as exc:
        raise fail(str(exc)) from None
    listing: AccountList | CrmList
    if (accounts is None) == (from_source is None):
        raise fail("give an account list CSV or --from a CRM list (one of them)")
    if from_source is not None:
        if map_file is not None:
            raise fail("--map names a CSV's columns; a CRM list (--from) needs none")
        try:
            source = parse_source(from_source)
            name = campaign or source.campaign_name
            listing = run_sync(
                pull_list(settings, source, pb, name, adopt=adopt_playbook, now=datetime.now(UTC))
            )
        except CrmListError as exc:
            raise fail(str(exc)) from None
    else:
        assert accounts is not None
        try:
            mapping = load_map(map_file) if map_file is not None else None
        except MapFileError as exc:
            raise fail(str(exc)) from None
        try:
            listing = load_accounts(accounts, mapping)
        except AccountListError as exc:
            raise fail(str(exc)) from None
        name = campaign or accounts.stem
    held = listing.held if isinstance(listing, CrmList) else []
    for warning in listing.warnings:  # one line each, so they can be grepped
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    for e in listing.errors:
        err.print(f"[red]rejected[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
    for line in describe(held):
        err.print(f"[yellow]skipped[/yellow] {escape(line)}", highlight=False, soft_wrap=True)
    chosen = listing.accounts[:limit] if limit else listing.accounts
    if not chosen and not held:
        raise fail(
            f"{from_source or accounts}: no valid accounts to run "
            f"({len(listing.errors)} rejected row(s))"
        )

    async def go() -> tuple[RunSummary, str]:
        async with open_workspace(settings, with_model=True, playbook=pb) as rt:
            out.print(
                f"campaign [bold]{name}[/bold]: {len(chosen)} account(s) on {channel}, "
                f"model: {rt.model_description}, playbook: {pb.source} ({pb.fingerprint[:12]})",
                highlight=False,
            )
            alerts = rt.deps.alerts
            if alerts is not None:
                await alerts.flush()  # alerts an earlier run could not deliver
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=out,
                transient=False,
            ) as bar:
                task = bar.add_task("accounts", total=len(chosen))

                def tick(row: ThreadRow | None, kind: str) -> None:
                    bar.update(
                        task,
                        advance=1,
                        description=f"{row.company[:28]:<28}" if row else "accounts",
                    )

                summary = await run_campaign(
                    rt,
                    chosen,
                    campaign=name,
                    channel=_channel(channel),
                    concurrency=concurrency,
                    on_progress=tick,
                    leases=leases,
                )
            if isinstance(listing, CrmList):  # people held back from a CRM list, as skips
                for reason, n in record_held(rt.ledger, name, _channel(channel), listing).items():
                    summary.skipped_by_reason[reason] += n
            if summary.failures and alerts is not None:
                await alerts.alert(
                    "error",
                    f"campaign {name}: {len(summary.failures)} account(s) failed: "
                    + "; ".join(summary.failures[:5]),
                )
            return summary, rt.model_description

    leases = _worker_leases(settings, lease_seconds)
    try:
        # On Postgres the accounts are leased one by one (`gtm.app.workers`); a lock file
        # would keep out the other workers, and only on this machine.
        with campaign_lock(settings.data_dir, name) if leases is None else closing(leases):
            pb = _campaign_playbook(settings, name, pb, adopt=adopt_playbook, variants=named)
            summary, _ = run_sync(go())
    except CampaignBusy as exc:
        raise fail(str(exc), code=EXIT_BUSY) from None
    except (PlaybookMismatch, VariantsMismatch, PromptVariantError) as exc:
        raise fail(str(exc)) from None
    _print_summary(summary, rejected_rows=len(listing.errors))
    if leases is not None:
        out.print(
            f"worker {leases.worker}: worked {leases.taken} lease(s) "
            f"({leases.taken_over} taken over from a stopped worker); the rest of the "
            f"{len(chosen)} account(s) "
            "were worked by other workers.",
            highlight=False,
        )
    if summary.by_status["failed"]:
        raise typer.Exit(EXIT_ACCOUNTS_FAILED)
    if listing.errors:
        raise typer.Exit(EXIT_ROWS_REJECTED)


def _worker_leases(settings: Settings, seconds: float) -> AccountLeases | None:
    """This worker's account leases when the stores are in Postgres, else None (lock file)."""
    if settings.database_url is None:
        return None
    from tools.pg import DatabaseError
    from tools.pg_leases import AccountLeases

    try:
        url = settings.database_url.get_secret_value()
        return AccountLeases(
            url, lease_for=timedelta(seconds=seconds), retry_window=settings.database_retry_s
        )
    except DatabaseError as exc:
        raise fail(str(exc)) from None


def _campaign_playbook(
    settings: Settings,
    name: str,
    given: Playbook,
    *,
    adopt: bool,
    variants: tuple[str, ...] | None,
) -> Playbook:
    """The playbook `name` runs under: recorded on its first run, kept after (see
    `gtm.app.campaigns`). Only a playbook the user named can conflict with it.

    Its prompt variants likewise: the ones it will run with (named now, or recorded) must each
    have every writer prompt, checked before anything is recorded or drafted."""
    from gtm.app.campaigns import check_prompt_variants
    from gtm.app.stores import campaign_book

    book = campaign_book(settings)
    try:
        if planned := book.planned_variants(name, variants):
            check_prompt_variants(planned)
        chosen = book.resolve(
            name, given, explicit=settings.playbook is not None, adopt=adopt, variants=variants
        )
        record = book.get(name)
    finally:
        book.close()
    if record is not None and record.variants is not None:
        out.print(
            f"campaign {name}: accounts split among prompt versions "
            f"{', '.join(record.variants.versions)} (seed {record.variants.seed})",
            highlight=False,
        )
    if chosen is not given:
        note = "adopted" if adopt else "kept"
        err.print(
            f"campaign {name}: {note} its playbook {chosen.source or 'the shipped default'} "
            f"({chosen.fingerprint[:12]})",
            highlight=False,
            soft_wrap=True,
        )
    return chosen


def _channel(value: str) -> Channel:
    return "email" if value == "email" else "linkedin"


def _print_summary(s: RunSummary, *, rejected_rows: int) -> None:
    t = Table(title=f"campaign {escape(s.campaign)}", show_header=True)
    t.add_column("outcome")
    t.add_column("accounts", justify="right")
    drafted = sum(s.by_status[k] for k in ("waiting_for_approval", "sent", "rejected", "deferred"))
    t.add_row("drafted", str(drafted))
    t.add_row("waiting for approval", str(s.by_status["waiting_for_approval"]))
    t.add_row("  of which flagged by guardrails", str(s.flagged))
    t.add_row("sent", str(s.by_status["sent"]))
    t.add_row("deferred (cap reached)", str(s.by_status["deferred"]))
    t.add_row("rejected by reviewer", str(s.by_status["rejected"]))
    for reason, n in sorted(s.skipped_by_reason.items()):
        if reason != "rejected":
            t.add_row(f"skipped: {reason}", str(n))
    t.add_row("failed", str(s.by_status["failed"]))
    t.add_row("rows rejected from the file", str(rejected_rows))
    out.print(t)
    if s.already_done or s.resumed:
        out.print(
            f"{s.already_done} account(s) were already done or waiting; "
            f"{s.resumed} resumed where they stopped."
        )
    if s.events_ingested:
        out.print(f"{s.events_ingested} new event(s) taken in from the drop folder.")
    if s.escalations:
        out.print(f"{s.escalations} escalation(s) raised: gtm inbox lists what needs a human.")
    if (q := s.sequences) is not None and (q.advanced or q.stopped or q.waiting):
        steps = Counter(r.status for r in q.advanced)
        out.print(
            f"follow-ups: {len(q.advanced)} due and taken up ("
            + (", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(steps.items())) or "-")
            + f"), {q.waiting} not due yet, {len(q.stopped)} sequence(s) stopped"
        )
        for line in q.stopped:
            out.print(f"  stopped: {escape(line)}", highlight=False, soft_wrap=True)
    for flag in s.red_flags:  # fired on this run: alerted once, kept at the top of gtm inbox
        out.print(
            f"[red]red flag {flag.id}[/red]: {escape(flag.message)}",
            highlight=False,
            soft_wrap=True,
        )
    for f in s.failures:
        err.print(f"[red]failed[/red] {escape(f)}", highlight=False, soft_wrap=True)
    waiting = s.sequences is not None and any(
        r.status == "waiting_for_approval" for r in s.sequences.advanced
    )
    if s.by_status["waiting_for_approval"] or waiting:
        out.print("Next: [bold]gtm inbox[/bold], then gtm approve|edit|reject|regenerate ID")


# --------------------------------------------------------------------------- status

STATUS_PAGE = 50
"""Sequences `gtm status` lists per campaign at once."""


@app.command(rich_help_panel="Campaigns")
def status(
    ctx: typer.Context,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    page: Annotated[
        int, typer.Option(min=1, help="Which page of each campaign's sequences table.")
    ] = 1,
    limit: Annotated[
        int, typer.Option(min=1, help=f"Sequences on a page (default {STATUS_PAGE}).")
    ] = STATUS_PAGE,
    show_all: Annotated[bool, typer.Option("--all", help="Every sequence on one page.")] = False,
) -> None:
    """Summarise campaigns: where every account stands, sends, and cap headroom. Counts come
    from the ledger's aggregates; the sequences table is shown a page at a time."""
    from gtm.app.workspace import open_workspace

    if show_all and page != 1:
        raise fail("--all shows every sequence on one page: leave out --page")

    async def go() -> None:
        async with open_workspace(settings_of(ctx), with_model=False, memory_on_demand=True) as rt:
            names = [campaign] if campaign else rt.ledger.campaigns()
            if not names:
                out.print("No campaigns yet. Start one with: gtm run ACCOUNTS.csv")
            for name in names:
                tally = rt.ledger.aggregate(
                    "status, skip_reason, COUNT(*), SUM(flagged)",
                    "campaign = ?",
                    [name],
                    group_by="status, skip_reason",
                )
                total = sum(r[2] for r in tally)
                t = Table(title=f"campaign {escape(name)}: {total} account(s)")
                t.add_column("status")
                t.add_column("accounts", justify="right")
                t.add_column("detail")
                for st in sorted({r[0] for r in tally}):
                    rs = [r for r in tally if r[0] == st]
                    reasons = {r[1]: r[2] for r in rs if r[1]}
                    flagged = sum(r[3] for r in rs) if st == "waiting_for_approval" else 0
                    detail = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
                    if flagged:
                        detail = f"{flagged} flagged"
                    t.add_row(st, str(sum(r[2] for r in rs)), detail)
                out.print(t)
                _print_variants(rt, name)
                entries = rt.deps.outbox.entries(campaign=name)
                states: dict[str, int] = {}
                for e in entries:
                    states[e.state] = states.get(e.state, 0) + 1
                out.print(
                    "outbox: "
                    + (", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "empty")
                )
                _print_usage(rt, name)
                size = None if show_all else limit
                _print_sequences(rt, name, rt.deps.clock(), page=page, size=size)
            _print_headroom(rt)
            print_attention(rt, campaign)

    run_sync(go())


def _print_usage(rt: Workspace, name: str) -> None:
    """Model calls, tokens and cost of the campaign, per model, over every run and worker (cost
    "–" when no price is configured for the model); nothing before its first model call. From
    `usage.sqlite`, or with `GTM_DATABASE_URL` from the database."""
    from gtm.app.telemetry import cost, usage_store

    settings = rt.settings
    if settings.database_url is None and not settings.path("usage.sqlite").exists():
        return
    store = usage_store(settings, rt.database)
    try:
        for u in store.for_campaign(name):
            spent = cost(u, settings)
            out.print(
                f"model {escape(u.model)}: {u.calls} call(s), {u.prompt_tokens} prompt + "
                f"{u.completion_tokens} completion tokens, cost "
                + ("–" if spent is None else f"{spent:.4f}"),
                highlight=False,
            )
    finally:
        store.close()


def _print_variants(rt: Workspace, name: str) -> None:
    """The campaign's prompt variants and how many accounts each was drawn for; nothing for a
    campaign without variants."""
    record = rt.campaigns.get(name)
    if record is None or record.variants is None:
        return
    found = rt.ledger.aggregate("variant, COUNT(*)", "campaign = ?", [name], group_by="variant")
    counts = Counter({r[0]: r[1] for r in found})
    out.print(
        f"prompt variants (seed {record.variants.seed}): "
        + ", ".join(f"{v}: {counts[v]} account(s)" for v in record.variants.versions),
        highlight=False,
    )


def _print_sequences(
    rt: Workspace, name: str, at: datetime, *, page: int, size: int | None
) -> None:
    """One line per account whose first touch went out, a page of them: its sequence step and
    what comes next. Nothing is printed for a campaign with no first touch sent yet."""
    from gtm.app.sequence_status import PAST_FIRST_TOUCH, sequence_standing
    from gtm.app.waiting import Page, PageError

    clause, args = f"campaign = ? AND {PAST_FIRST_TOUCH}", [name]
    total = rt.ledger.aggregate("COUNT(*)", clause, args)[0][0]
    paged = Page(number=page, size=size, total=total, noun="thread(s)")
    if not paged.total:
        return
    try:
        paged.check()
    except PageError as exc:
        out.print(f"sequences in {escape(name)}: {escape(str(exc))}", highlight=False)
        return
    playbook = rt.playbook_for(name)
    rows = rt.ledger.select(clause, args, limit=paged.limit, offset=paged.offset)
    standings = [s for r in rows if (s := sequence_standing(r, playbook)) is not None]
    t = Table(title=f"sequences in {escape(name)}: {paged.total} thread(s) past the first touch")
    for col in ("#", "account", "channel", "step", "next"):
        t.add_column(col, justify="right" if col == "#" else "left")
    for s in standings:
        t.add_row(
            str(s.row.id),
            escape(s.row.company),
            s.row.channel,
            escape(s.position),
            escape(s.outlook(at)),
        )
    out.print(t)
    if paged.several:
        more = (
            f": gtm status --page {paged.number + 1} for the next"
            if paged.number < paged.pages
            else ""
        )
        out.print(
            f"sequences in {escape(name)}: {paged.line()}{more}, --all for every one",
            highlight=False,
        )


def _print_headroom(rt: Workspace) -> None:
    from agents.pacing import limits_for, next_opening, paced

    now = rt.deps.clock()
    lanes: tuple[tuple[str, bool, tuple[Step, ...]], ...] = (
        (rt.deps.linkedin.sender, rt.deps.linkedin.live, ("linkedin_visit", "linkedin_connect")),
        (rt.deps.email.sender, rt.deps.email.live, ("email",)),
    )
    notes: list[str] = []
    for sender, live, steps in lanes:
        t = Table(title=f"cap headroom: {sender}")
        for col in ("action", "cap", "used", "left", "resets (UTC)"):
            t.add_column(col, justify="right" if col in ("used", "left") else "left", no_wrap=True)
        is_paced = paced(rt.playbook, live)
        for step in steps:
            for lim in limits_for(rt.playbook, step, now, is_paced=is_paced):
                used = rt.deps.outbox.count(sender, step, lim.since)
                t.add_row(
                    step,
                    f"{lim.limit} {lim.label}",
                    str(used),
                    str(max(0, lim.limit - used)),
                    f"{lim.until:%m-%d %H:%M}",
                )
        out.print(t)
        if is_paced and (opens := next_opening(rt.playbook.pacing, now)) is not None:
            notes.append(
                f"{sender}: outside working hours; sends resume {opens:%Y-%m-%d %H:%M} UTC"
            )
    for n in notes:
        out.print(n, highlight=False)
