"""`gtm`: run campaigns and decide drafts from the terminal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gtm.accounts import AccountListError, load_accounts
from gtm.ledger import DecisionRecord, ThreadRow
from gtm.llm import EmbeddedModelUnavailable
from gtm.models import Channel, Contact, Decision, Draft, Fact, Review, Step
from gtm.playbook import PlaybookError, load_playbook
from gtm.providers import ProviderConfigError
from gtm.runner import (
    EDIT_BLOCKERS,
    DecisionRefused,
    RunSummary,
    decide,
    pending_payload,
    review_edit,
    run_campaign,
    unsendable,
)
from gtm.runtime import Runtime, open_runtime
from gtm.settings import Settings, SettingsError, load_settings

__all__ = ["app", "main"]

app = typer.Typer(
    help="Research, personalize, review and send account-based outreach, with a human approving.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


@app.callback()
def _root(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where checkpoints, CRM, outboxes and memory live.", envvar="GTM_DATA_DIR"
        ),
    ] = None,
    playbook: Annotated[
        Path | None,
        typer.Option(help="Playbook file (default: the shipped playbook).", envvar="GTM_PLAYBOOK"),
    ] = None,
) -> None:
    try:
        ctx.obj = load_settings().with_overrides(data_dir=data_dir, playbook=playbook)
    except SettingsError as exc:
        raise _fail(str(exc)) from None


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except PlaybookError as exc:
        raise _fail(str(exc)) from None
    except EmbeddedModelUnavailable as exc:
        raise _fail(str(exc)) from None
    except ProviderConfigError as exc:
        raise _fail(str(exc)) from None


# --------------------------------------------------------------------------- run


@app.command()
def run(
    ctx: typer.Context,
    accounts: Annotated[Path, typer.Argument(help="Account list CSV (one row per contact).")],
    campaign: Annotated[
        str | None, typer.Option(help="Campaign name; running it again resumes it.")
    ] = None,
    channel: Annotated[str, typer.Option(help="linkedin or email.")] = "linkedin",
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Accounts in flight.")] = 4,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N accounts.")] = None,
    playbook: Annotated[Path | None, typer.Option(help="Playbook file for this run.")] = None,
) -> None:
    """Run every account on the list through research → personalize → review → approval."""
    settings = _settings(ctx).with_overrides(playbook=playbook)
    if channel not in ("linkedin", "email"):
        raise _fail(f"--channel must be 'linkedin' or 'email', not {channel!r}")
    try:
        pb = load_playbook(settings.playbook)
    except PlaybookError as exc:
        raise _fail(str(exc)) from None
    try:
        listing = load_accounts(accounts)
    except AccountListError as exc:
        raise _fail(str(exc)) from None
    for warning in listing.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    for e in listing.errors:
        err.print(f"[red]rejected[/red] {e}", highlight=False)
    chosen = listing.accounts[:limit] if limit else listing.accounts
    name = campaign or accounts.stem
    if not chosen:
        raise _fail(f"{accounts}: no valid accounts to run ({len(listing.errors)} rejected row(s))")

    async def go() -> tuple[RunSummary, str]:
        async with open_runtime(settings, with_model=True, playbook=pb) as rt:
            out.print(
                f"campaign [bold]{name}[/bold]: {len(chosen)} account(s) on {channel}, "
                f"model: {rt.model_description}",
                highlight=False,
            )
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
                )
            if summary.failures and rt.deps.alerts is not None:
                await rt.deps.alerts.alert(
                    "error",
                    f"campaign {name}: {len(summary.failures)} account(s) failed: "
                    + "; ".join(summary.failures[:5]),
                )
            return summary, rt.model_description

    summary, _ = _run(go())
    _print_summary(summary, rejected_rows=len(listing.errors))


def _channel(value: str) -> Channel:
    return "email" if value == "email" else "linkedin"


def _print_summary(s: RunSummary, *, rejected_rows: int) -> None:
    t = Table(title=f"campaign {s.campaign}", show_header=True)
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
    for f in s.failures:
        err.print(f"[red]failed[/red] {f}", highlight=False)
    if s.by_status["waiting_for_approval"]:
        out.print("Next: [bold]gtm inbox[/bold], then gtm approve|edit|reject|regenerate ID")


# --------------------------------------------------------------------------- inbox


def _draft_view(row: ThreadRow, payload: dict[str, Any], history: list[DecisionRecord]) -> Panel:
    draft = Draft.model_validate(payload["draft"])
    facts = {f["id"]: Fact.model_validate(f) for f in payload["facts"]}
    contact = payload["contact"]
    lines = [
        f"[bold]{row.company}[/bold]  tier {payload.get('tier') or '-'}  ·  {draft.channel} "
        f"({draft.step})  ·  to {contact['name']}, {contact.get('title') or 'title unknown'}",
        f"prompt {draft.prompt_version}  ·  model {draft.model}",
        "",
    ]
    if draft.subject:
        lines.append(f"[bold]Subject:[/bold] {draft.subject}")
    lines += [draft.body or "[italic](empty draft)[/italic]", "", "[bold]Cited facts[/bold]"]
    for fid in draft.cited_fact_ids:
        f = facts.get(fid)
        lines.append(
            f"  [{fid}] {f.text}  [dim]({f.source}{' · ' + f.url if f.url else ''})[/dim]"
            if f
            else f"  [{fid}] [red]no such fact[/red]"
        )
    if not draft.cited_fact_ids:
        lines.append("  none")
    findings = payload.get("findings") or []
    lines.append("[bold]Guardrails[/bold]: " + ("all passed" if not findings else ""))
    for fnd in findings:
        lines.append(f"  [red]✗ {fnd['check']}[/red]: {fnd['finding']}")
    if blockers := unsendable(payload):
        why = "; ".join(blockers)
        lines.append(f"[red]cannot be sent as written[/red] ({why}): edit or regenerate it")
    for d in history:  # earlier decisions on this thread, such as a regenerate
        note = f": {d.note}" if d.note else ""
        lines.append(f"[dim]{d.at:%Y-%m-%d %H:%M} UTC {d.action} by {d.reviewer}{note}[/dim]")
    title = f"#{row.id}" + ("  [red]FLAGGED[/red]" if payload.get("flagged") else "")
    return Panel("\n".join(lines), title=title, title_align="left", highlight=False)


@app.command()
def inbox(
    ctx: typer.Context,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    web: Annotated[
        bool, typer.Option("--web", help="Serve the inbox as a local web app instead.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port for --web (0 picks a free one).")] = 8765,
    host: Annotated[
        str, typer.Option(help="Address for --web. Keep it on loopback unless you must.")
    ] = "127.0.0.1",
) -> None:
    """List drafts waiting for a decision, oldest first (or serve them with --web)."""
    if web:
        _serve_inbox(_settings(ctx), host=host, port=port)
        return

    async def go() -> int:
        async with open_runtime(_settings(ctx), with_model=False) as rt:
            rows = rt.ledger.rows(campaign=campaign, status="waiting_for_approval")
            rows.sort(key=lambda r: (r.waiting_since or r.updated_at, r.id))
            shown = 0
            for row in rows:
                payload = await pending_payload(rt, row)
                if payload is None:
                    continue
                out.print(_draft_view(row, payload, rt.ledger.history(row.thread_id)))
                shown += 1
            _print_attention(rt, campaign)
            return shown

    n = _run(go())
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
        raise _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except PlaybookError as exc:
        raise _fail(str(exc)) from None


def _print_attention(rt: Runtime, campaign: str | None) -> None:
    unknown = rt.deps.outbox.entries(campaign=campaign, state="unknown")
    for e in unknown:
        err.print(
            f"[red]needs a human[/red]: {e.step} for {e.account_id} ({e.contact_key}) is in "
            "state 'unknown' — check the provider; it will not be resent.",
            highlight=False,
        )


# --------------------------------------------------------------------------- decisions


def _decide(ctx: typer.Context, ref: str, decision: Decision, *, with_model: bool = False) -> None:
    async def go() -> ThreadRow:
        async with open_runtime(_settings(ctx), with_model=with_model) as rt:
            return await decide(rt, ref, decision)

    try:
        row = _run(go())
    except DecisionRefused as exc:
        raise _fail(str(exc), code=1) from None
    note = f" ({row.detail})" if row.detail else ""
    out.print(f"#{row.id} {row.company}: {decision.action} → {row.status}{note}", highlight=False)


def _now() -> datetime:
    return datetime.now(UTC)


@app.command()
def approve(ctx: typer.Context, draft_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Approve a draft as written; it is sent and logged to the CRM."""
    _decide(ctx, draft_id, Decision(action="approve", reviewer=_settings(ctx).reviewer, at=_now()))


@app.command()
def edit(
    ctx: typer.Context,
    draft_id: Annotated[str, typer.Argument(metavar="ID")],
    text: Annotated[
        str | None, typer.Option(help="New message text (default: open $EDITOR).")
    ] = None,
    subject: Annotated[str | None, typer.Option(help="New email subject.")] = None,
) -> None:
    """Edit a draft and approve the edited text."""
    settings = _settings(ctx)
    if text is None:
        text = _edit_in_editor(ctx, draft_id)
    if not text.strip():
        raise _fail("the edited text is empty; nothing was sent")
    _check_edit(ctx, draft_id, text, subject)
    _decide(
        ctx,
        draft_id,
        Decision(action="edit", text=text, subject=subject, reviewer=settings.reviewer, at=_now()),
    )


def _current(ctx: typer.Context, draft_id: str) -> dict[str, Any]:
    async def go() -> dict[str, Any] | None:
        async with open_runtime(_settings(ctx), with_model=False) as rt:
            row = rt.ledger.get(draft_id)
            return await pending_payload(rt, row) if row else None

    payload = _run(go())
    if payload is None:
        raise _fail(f"draft {draft_id} is not waiting for a decision", code=1)
    return payload


def _edit_in_editor(ctx: typer.Context, draft_id: str) -> str:
    body = Draft.model_validate(_current(ctx, draft_id)["draft"]).body
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w+", suffix=".txt", delete=False) as fh:
        fh.write(body)
        path = fh.name
    try:
        subprocess.run([*editor.split(), path], check=True)
        return Path(path).read_text(encoding="utf-8")
    except (OSError, subprocess.CalledProcessError) as exc:
        raise _fail(f"editor {editor!r} failed: {exc}") from None
    finally:
        os.unlink(path)


def _check_edit(ctx: typer.Context, draft_id: str, text: str, subject: str | None) -> None:
    """Refuse an edit the channel cannot carry; warn about other guardrail findings."""

    async def go() -> Review:
        async with open_runtime(_settings(ctx), with_model=False) as rt:
            row = rt.ledger.get(draft_id)
            payload = await pending_payload(rt, row) if row else None
            if payload is None:
                raise _fail(f"draft {draft_id} is not waiting for a decision", code=1)
            return review_edit(rt, payload, text, subject)

    for r in _run(go()).failures:
        if r.check in EDIT_BLOCKERS:
            raise _fail(f"edit refused ({r.check}): {r.finding}")
        err.print(f"[yellow]note[/yellow] {r.check}: {r.finding}", highlight=False)


@app.command()
def reject(
    ctx: typer.Context,
    draft_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why; kept in memory for next time.")],
) -> None:
    """Reject a draft; nothing is sent."""
    _decide(
        ctx,
        draft_id,
        Decision(action="reject", reason=reason, reviewer=_settings(ctx).reviewer, at=_now()),
    )


@app.command()
def regenerate(
    ctx: typer.Context,
    draft_id: Annotated[str, typer.Argument(metavar="ID")],
    instructions: Annotated[str, typer.Option(help="What the rewrite should change.")],
) -> None:
    """Rewrite a draft with your instructions; it comes back to the inbox."""
    _decide(
        ctx,
        draft_id,
        Decision(
            action="regenerate",
            instructions=instructions,
            reviewer=_settings(ctx).reviewer,
            at=_now(),
        ),
        with_model=True,
    )


# --------------------------------------------------------------------------- status


@app.command()
def status(
    ctx: typer.Context,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
) -> None:
    """Summarise campaigns: where every account stands, sends, and cap headroom."""

    async def go() -> None:
        async with open_runtime(_settings(ctx), with_model=False) as rt:
            names = [campaign] if campaign else rt.ledger.campaigns()
            if not names:
                out.print("No campaigns yet. Start one with: gtm run ACCOUNTS.csv")
            for name in names:
                rows = rt.ledger.rows(campaign=name)
                t = Table(title=f"campaign {name}: {len(rows)} account(s)")
                t.add_column("status")
                t.add_column("accounts", justify="right")
                t.add_column("detail")
                by: dict[str, list[ThreadRow]] = {}
                for r in rows:
                    by.setdefault(r.status, []).append(r)
                for st, rs in sorted(by.items()):
                    reasons: dict[str, int] = {}
                    for r in rs:
                        if r.skip_reason:
                            reasons[r.skip_reason] = reasons.get(r.skip_reason, 0) + 1
                    flagged = sum(r.flagged for r in rs) if st == "waiting_for_approval" else 0
                    detail = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
                    if flagged:
                        detail = f"{flagged} flagged"
                    t.add_row(st, str(len(rs)), detail)
                out.print(t)
                entries = rt.deps.outbox.entries(campaign=name)
                states: dict[str, int] = {}
                for e in entries:
                    states[e.state] = states.get(e.state, 0) + 1
                out.print(
                    "outbox: "
                    + (", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "empty")
                )
            _print_headroom(rt)
            _print_attention(rt, campaign)

    _run(go())


def _print_headroom(rt: Runtime) -> None:
    from agents.send import limits_for, next_opening, paced

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


# ---------------------------------------------------------------- suppress, forget


@app.command()
def suppress(
    ctx: typer.Context,
    email: Annotated[list[str] | None, typer.Option(help="Email address; repeatable.")] = None,
    domain: Annotated[list[str] | None, typer.Option(help="Whole domain; repeatable.")] = None,
    linkedin: Annotated[
        list[str] | None, typer.Option(help="LinkedIn profile URL; repeatable.")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(help="CSV with columns email, domain, linkedin_url (any), reason."),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why; kept with the entry.")] = "do not contact",
    show: Annotated[bool, typer.Option("--list", help="List the entries instead.")] = False,
) -> None:
    """Add people or domains to the do-not-contact list, forever, on every channel."""

    async def go() -> int:
        async with open_runtime(_settings(ctx), with_model=False) as rt:
            sup = rt.deps.suppressions
            if show:
                t = Table(title="do-not-contact list")
                for col in ("kind", "value", "reason"):
                    t.add_column(col)
                for kind, value, why in sup.entries():
                    t.add_row(kind, value if kind != "erased" else value[:16] + "…", why)
                out.print(t)
                return 0
            added = 0
            for d in domain or []:
                sup.add("domain", d, reason)
                added += 1
            people = [Contact(name="", email=e) for e in email or []]
            people += [Contact(name="", linkedin_url=u) for u in linkedin or []]
            for probe in people:
                # One channel suppresses all: add every identifier the CRM knows for them.
                record = await rt.deps.crm.find_contact(probe)
                added += sup.add_person(
                    email=probe.email or (record.email if record else None),
                    linkedin_url=probe.linkedin_url or (record.linkedin_url if record else None),
                    person_key=probe.key,
                    reason=reason,
                )
            failed = 0
            if file is not None:
                report = sup.import_csv(file, default_reason=reason)
                added += report.added
                failed = len(report.errors)
                for e in report.errors:
                    err.print(f"[red]rejected[/red] {e}", highlight=False, soft_wrap=True)
            out.print(f"{added} do-not-contact entr{'y' if added == 1 else 'ies'} added.")
            return failed

    if not (show or email or domain or linkedin or file):
        raise _fail("nothing to add: give --email, --domain, --linkedin or --file (or --list)")
    if _run(go()):
        raise typer.Exit(1)


@app.command()
def forget(
    ctx: typer.Context,
    person: Annotated[str, typer.Argument(help="The person's email or LinkedIn profile URL.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a person from memory and the local stores (a GDPR erasure request)."""
    from gtm.privacy import ForgetError
    from gtm.privacy import forget as erase

    if not yes and not typer.confirm(f"Erase everything about {person}? This cannot be undone"):
        raise typer.Exit(1)

    async def go() -> Any:
        async with open_runtime(_settings(ctx), with_model=False) as rt:
            return await erase(rt, person, requested_by=_settings(ctx).reviewer)

    try:
        result = _run(go())
    except ForgetError as exc:
        raise _fail(str(exc)) from None
    done = ", ".join(f"{k} {v}" for k, v in result.erased.items())
    out.print(f"erased ({done}); erasure {result.fingerprint[:16]} recorded.", highlight=False)
    out.print("They stay on the do-not-contact list, as a one-way hash.")
    for note in result.notes:
        err.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)


# -------------------------------------------------------------------------- eval


@app.command("eval")
def eval_(
    ctx: typer.Context,
    dataset: Annotated[
        list[Path] | None,
        typer.Option(help="Dataset file or directory; repeatable (default: evals/datasets)."),
    ] = None,
    prompt_version: Annotated[
        str | None, typer.Option(help="Score this version of the prompts (`<name>@<v>.md`).")
    ] = None,
    prompts: Annotated[
        Path | None, typer.Option(help="Prompt directory to score instead of the shipped one.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name at the configured endpoint.")
    ] = None,
    judge: Annotated[bool, typer.Option(help="Also grade drafts with the LLM judge.")] = False,
    baseline: Annotated[
        Path | None, typer.Option(help="Baseline JSON; exit 1 if a tracked metric regresses.")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where report.md/.json go.")] = Path(
        "eval-report"
    ),
    generate: Annotated[
        bool, typer.Option(help="Write drafts for the generation set with the model.")
    ] = True,
    update_baseline: Annotated[
        bool, typer.Option(help="Write this run's metrics to --baseline instead of comparing.")
    ] = False,
) -> None:
    """Score the guardrail checks against labeled drafts, and the prompts on fresh drafts."""
    from evals.datasets import DEFAULT_DATASETS, DatasetError
    from gtm.evaluate import BaselineError, EvalOptions, run_eval, save_baseline
    from prompts import PromptError

    if update_baseline and baseline is None:
        raise _fail("--update-baseline needs --baseline FILE")
    if model and not _settings(ctx).model_base_url:
        raise _fail(
            "--model names a model at an endpoint; set GTM_MODEL_BASE_URL (the embedded model "
            "is always SmolLM2)"
        )
    opts = EvalOptions(
        datasets=tuple(dataset or (DEFAULT_DATASETS,)),
        prompt_version=prompt_version,
        prompts_dir=prompts,
        model=model,
        judge=judge,
        baseline=None if update_baseline else baseline,
        out=out_dir,
        generate=generate,
    )
    settings = _settings(ctx)
    try:
        with err.status("scoring…") as status:
            report = _run(
                run_eval(settings, opts, on_progress=lambda i: status.update(f"wrote {i}"))
            )
    except (DatasetError, BaselineError, PromptError) as exc:
        raise _fail(str(exc)) from None
    _print_eval(report)
    for note in report.notes:
        err.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if update_baseline and baseline is not None:
        save_baseline(report, baseline)
        out.print(f"baseline written: {baseline}", highlight=False)
    out.print(f"report: {out_dir / 'report.md'} and report.json", highlight=False)
    if report.regressions:
        err.print(
            f"[red]regression:[/red] {len(report.regressions)} tracked metric(s) fell further "
            "below the baseline than the playbook's `evals` thresholds allow: "
            + ", ".join(
                f"{r.metric} {r.baseline:.2f} → {r.current:.2f}" for r in report.regressions
            ),
            highlight=False,
        )
        raise typer.Exit(1)


def _print_eval(report: Any) -> None:
    from evals.checks import CHECK_NAMES

    m = report.metrics
    out.print(
        f"model: {report.model}; prompts: {', '.join(report.prompt_versions.values())}",
        highlight=False,
    )
    t = Table(title="checks: labeled precision / recall, pass rate on generated drafts")
    for col in ("check", "precision", "recall", "generated pass"):
        t.add_column(col, justify="left" if col == "check" else "right")

    def f(key: str) -> str:
        return f"{m[key]:.2f}" if key in m else "–"

    for c in CHECK_NAMES:
        t.add_row(
            c, f(f"labeled.precision.{c}"), f(f"labeled.recall.{c}"), f(f"generation.pass_rate.{c}")
        )
    out.print(t)
    s = Table(title="summary")
    for col in ("metric", "now", "baseline", "status"):
        s.add_column(col)
    regressed = {r.metric: r for r in report.regressions}
    keys = [k for k in sorted(m) if not k.startswith(("labeled.precision", "labeled.recall"))]
    keys = [k for k in keys if not k.startswith("generation.pass_rate.")]
    for k in keys + sorted(set(regressed) - set(keys)):
        r = regressed.get(k)
        base = report.baseline_metrics.get(k)
        status = (
            f"[red]regressed by {r.drop:.2f}[/red]" if r else ("ok" if base is not None else "")
        )
        s.add_row(k, f"{m[k]:.2f}", "" if base is None else f"{base:.2f}", status)
    out.print(s)


# ------------------------------------------------------------------------ doctor


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Check the configuration and reach each configured provider, sending nothing."""
    from gtm.doctor import diagnose

    findings = _run(diagnose(_settings(ctx)))
    t = Table(title="gtm doctor")
    for col in ("component", "status", "detail", "fix"):
        t.add_column(col, overflow="fold")
    for f in findings:
        t.add_row(f.component, "ok" if f.ok else "[red]FAIL[/red]", f.detail, f.fix)
    out.print(t)
    if not all(f.ok for f in findings):
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted: run the same command again to continue where it stopped")
        sys.exit(130)
