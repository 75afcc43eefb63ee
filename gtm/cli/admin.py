"""`gtm suppress`, `forget`, `eval` and `doctor`: lists, erasure, quality gate, configuration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from gtm.cli.common import EXIT_BUSY, EXIT_REFUSED, app, err, fail, out, run_sync, settings_of

if TYPE_CHECKING:
    from tools.suppression import SuppressionKind

# ---------------------------------------------------------------- suppress, forget


@app.command(rich_help_panel="Admin")
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
    from gtm.app.workspace import open_workspace
    from gtm.domain.models import Contact
    from tools.suppression import canonical, why_invalid

    given: list[tuple[str, SuppressionKind, str]] = [
        *(("--email", "email", v) for v in email or []),
        *(("--domain", "domain", v) for v in domain or []),
        *(("--linkedin", "linkedin", v) for v in linkedin or []),
    ]
    refused = [f"{opt}: {why}" for opt, kind, v in given if (why := why_invalid(kind, v))]
    if refused:  # nothing is added when one value is wrong: fix it and run the command again
        raise fail("nothing added; " + "; ".join(refused))
    emails = [canonical("email", v) or v for _, kind, v in given if kind == "email"]
    urls = [canonical("linkedin", v) or v for _, kind, v in given if kind == "linkedin"]

    async def go() -> int:
        async with open_workspace(settings_of(ctx), with_model=False) as rt:
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
            people = [Contact(name="", email=e) for e in emails]
            people += [Contact(name="", linkedin_url=u) for u in urls]
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
                    err.print(
                        f"[red]rejected[/red] {escape(str(e))}", highlight=False, soft_wrap=True
                    )
            out.print(f"{added} do-not-contact entr{'y' if added == 1 else 'ies'} added.")
            return failed

    if not (show or email or domain or linkedin or file):
        raise fail("nothing to add: give --email, --domain, --linkedin or --file (or --list)")
    if run_sync(go()):
        raise typer.Exit(1)


@app.command(rich_help_panel="Admin")
def forget(
    ctx: typer.Context,
    person: Annotated[str, typer.Argument(help="The person's email or LinkedIn profile URL.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a person from memory and the local stores (a GDPR erasure request)."""
    from gtm.app.privacy import ForgetBusy, ForgetError, NothingToForget, identify
    from gtm.app.privacy import forget as erase
    from gtm.app.workspace import open_workspace

    try:
        identify(person)  # refuse a malformed identifier before asking to confirm
    except ForgetError as exc:
        raise fail(str(exc)) from None
    if not yes and not typer.confirm(f"Erase everything about {person}? This cannot be undone"):
        raise typer.Exit(1)

    async def go() -> Any:
        async with open_workspace(settings_of(ctx), with_model=False) as rt:
            return await erase(rt, person, requested_by=settings_of(ctx).reviewer)

    try:
        result = run_sync(go())
    except NothingToForget as exc:  # a valid request that erased nothing is not a success
        raise fail(str(exc), code=EXIT_REFUSED) from None
    except ForgetBusy as exc:
        raise fail(str(exc), code=EXIT_BUSY) from None
    except ForgetError as exc:
        raise fail(str(exc)) from None
    done = ", ".join(f"{k} {v}" for k, v in result.erased.items())
    out.print(f"erased ({done}); erasure {result.fingerprint[:16]} recorded.", highlight=False)
    out.print("They stay on the do-not-contact list, as a one-way hash.")
    for note in result.notes:
        err.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)


# -------------------------------------------------------------------------- eval


@app.command("eval", rich_help_panel="Admin")
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
    judge: Annotated[
        bool,
        typer.Option(
            help="Also grade drafts with the LLM judge; with a model endpoint, measure its "
            "agreement with the labels."
        ),
    ] = False,
    judge_messages: Annotated[
        list[Path] | None,
        typer.Option(
            help="Labeled messages to calibrate the judge on; repeatable (default: the "
            "held-out set, unless --dataset is given)."
        ),
    ] = None,
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
    record: Annotated[
        str | None,
        typer.Option(
            metavar="NAME|FILE",
            help="Record the model's answers in a cassette (evals/cassettes/NAME.jsonl).",
        ),
    ] = None,
    replay: Annotated[
        str | None,
        typer.Option(
            metavar="NAME|FILE",
            help="Answer every model request from a cassette: no endpoint, no key, no model.",
        ),
    ] = None,
) -> None:
    """Score the guardrail checks against labeled drafts, and the prompts on fresh drafts."""
    from evals.datasets import DEFAULT_DATASETS, DatasetError
    from evals.messages import HELDOUT_MESSAGES, MessageSetError
    from gtm.app.cassette import CassetteError
    from gtm.app.evaluate import BaselineError, EvalOptions, run_eval, save_baseline
    from gtm.app.llm import ModelReplyError
    from prompts import PromptError

    if update_baseline and baseline is None:
        raise fail("--update-baseline needs --baseline FILE")
    if record and replay:
        raise fail("--record or --replay, not both")
    if model and not settings_of(ctx).model_base_url:
        raise fail(
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
        judge_messages=tuple(judge_messages or (() if dataset else (HELDOUT_MESSAGES,))),
        record=_cassette_path(record, DEFAULT_DATASETS),
        replay=_cassette_path(replay, DEFAULT_DATASETS),
    )
    settings = settings_of(ctx)
    try:
        with err.status("scoring…") as status:
            report = run_sync(
                run_eval(
                    settings,
                    opts,
                    on_progress=lambda i: status.update(f"wrote {i}"),
                    on_judged=lambda i: status.update(f"judged {i}"),
                )
            )
    except (DatasetError, BaselineError, PromptError, MessageSetError, CassetteError) as exc:
        raise fail(str(exc)) from None
    except ModelReplyError as exc:  # a timeout or a broken endpoint: nothing recorded, no baseline
        raise fail(f"the model failed, so nothing was scored or recorded: {exc}", 4) from None
    _print_eval(report)
    for note in report.notes:
        err.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    if report.replay_misses:
        err.print(
            f"[red]replay:[/red] {len(report.replay_misses)} model request(s) have no recorded "
            "answer (the prompts or inputs changed since the cassette was recorded); re-record "
            "it with `make record-baseline` and commit it with evals/baseline.json:",
            highlight=False,
            soft_wrap=True,
        )
        for miss in report.replay_misses:
            err.print(f"  {escape(miss)}", highlight=False, soft_wrap=True)
    elif update_baseline and baseline is not None:
        save_baseline(report, baseline)
        out.print(f"baseline written: {baseline}", highlight=False)
    if record:
        out.print(f"cassette written: {opts.record}", highlight=False)
    out.print(f"report: {out_dir / 'report.md'} and report.json", highlight=False)
    if report.replay_misses:
        raise typer.Exit(1)
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


def _cassette_path(name: str | None, datasets: Path) -> Path | None:
    """A cassette by name (evals/cassettes/NAME.jsonl) or by path (has a '/' or '.jsonl')."""
    if name is None:
        return None
    if "/" in name or name.endswith(".jsonl"):
        return Path(name)
    return datasets.parent / "cassettes" / f"{name}.jsonl"


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
    keys = [k for k in keys if not k.startswith(("generation.pass_rate.", "judge_agreement."))]
    for k in keys + sorted(set(regressed) - set(keys)):
        r = regressed.get(k)
        base = report.baseline_metrics.get(k)
        status = (
            f"[red]regressed by {r.drop:.2f}[/red]" if r else ("ok" if base is not None else "")
        )
        s.add_row(k, f"{m[k]:.2f}", "" if base is None else f"{base:.2f}", status)
    out.print(s)
    if report.judge_agreement:
        _print_judge_agreement(report.judge_agreement)


def _print_judge_agreement(sets: Any) -> None:
    """`--judge` with an endpoint: the judge and the checks against the same labels."""
    t = Table(
        title="judge vs checks: agreement with the labels (κ: 1 perfect, 0 chance)",
        caption="drafts: pass/fail; messages: personalized/generic, without research",
    )
    for col in ("set", "cases", "answered", "judge acc", "judge κ", "checks acc", "checks κ"):
        t.add_column(col, justify="left" if col == "set" else "right")

    def f(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f}"

    for s in sets:
        j, c = s.judge(), s.checks()
        t.add_row(
            "drafts" if s.name == "labeled" else "messages",
            str(len(s.cases)),
            f"{len(s.answered)} ({f(s.coverage)})",
            f(j.accuracy),
            f(j.kappa),
            f(c.accuracy),
            f(c.kappa),
        )
    out.print(t)
    for s in sets:
        if len(s.answered) < len(s.cases):
            err.print(
                f"[yellow]note:[/yellow] the judge gave no usable answer for "
                f"{len(s.cases) - len(s.answered)} of {len(s.cases)} cases of the {s.name} set; "
                "both raters' figures are over the cases it answered (ids in report.md)",
                highlight=False,
                soft_wrap=True,
            )


# ------------------------------------------------------------------------ doctor


@app.command(rich_help_panel="Admin")
def doctor(ctx: typer.Context) -> None:
    """Check the configuration and reach each configured provider, sending nothing."""
    from gtm.app.doctor import diagnose

    findings = run_sync(diagnose(settings_of(ctx)))
    t = Table(title="gtm doctor")
    for col in ("component", "status", "detail", "fix"):
        t.add_column(col, overflow="fold")
    for f in findings:
        t.add_row(f.component, "ok" if f.ok else "[red]FAIL[/red]", f.detail, f.fix)
    out.print(t)
    if not all(f.ok for f in findings):
        raise typer.Exit(1)
