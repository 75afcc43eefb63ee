"""What every `gtm` command shares: the Typer app, the consoles, settings, failing cleanly."""

from __future__ import annotations

import os
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:  # the application is imported where a command runs, so `--help` stays fast
    from gtm.app.settings import Settings
    from gtm.app.workspace import Workspace

__all__ = [
    "app",
    "out",
    "err",
    "settings_of",
    "fail",
    "run_sync",
    "usage_errors",
    "now",
    "print_attention",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "EXIT_ROWS_REJECTED",
    "EXIT_ACCOUNTS_FAILED",
    "EXIT_BUSY",
    "EXIT_INTERRUPTED",
]

# Exit statuses, so a script or CI can tell outcomes apart (README, "Exit status").
EXIT_REFUSED = 1
"""A decision was refused (already decided, unsendable), or `forget` matched nobody."""
EXIT_USAGE = 2
"""Bad usage, settings, playbook or file: nothing was done."""
EXIT_ROWS_REJECTED = 3
"""`gtm run`: some rows of the list were rejected; the good ones ran."""
EXIT_ACCOUNTS_FAILED = 4
"""`gtm run`: some accounts failed (each is listed); the next run retries them."""
EXIT_BUSY = 5
"""The campaign is being run by another process right now."""
EXIT_INTERRUPTED = 130

app = typer.Typer(
    help="Research, personalize, review and send account-based outreach, with a human approving.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")


def settings_of(ctx: typer.Context) -> Settings:
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
    log_format: Annotated[
        Literal["text", "json"],
        typer.Option(
            help="json: gtm's logs on stderr as JSON lines, one per graph node step included.",
            envvar="GTM_LOG_FORMAT",
        ),
    ] = "text",
) -> None:
    from gtm.app.settings import SettingsError, load_settings

    try:
        ctx.obj = load_settings().with_overrides(data_dir=data_dir, playbook=playbook)
    except SettingsError as exc:
        raise fail(str(exc)) from None
    if log_format == "json":
        from gtm.app.telemetry import log_json

        log_json()
    if any(os.environ.get(v) for v in _TRACING_VARS):  # LangSmith's switch; off by default
        from gtm.app.tracing import redacted_tracing

        ctx.with_resource(redacted_tracing(ctx.obj))


_TRACING_VARS = (
    "LANGSMITH_TRACING",
    "LANGSMITH_TRACING_V2",
    "LANGCHAIN_TRACING",
    "LANGCHAIN_TRACING_V2",
)
"""Set to anything, LangChain may trace: then every traced run goes through our redaction
(`gtm.app.tracing`), which leaves tracing off unless LangSmith's own check says on."""


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import asyncio  # here, not at the top: `gtm --help` runs no event loop

        return asyncio.run(coro)
    except KeyboardInterrupt:
        # Click would print a bare "Aborted!": say instead that stopping here is safe.
        err.print(
            "interrupted: run the same command again to continue where it stopped", soft_wrap=True
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        if isinstance(exc, usage_errors()):
            raise fail(str(exc)) from None
        raise


def usage_errors() -> tuple[type[Exception], ...]:
    """The errors a command reports as bad usage (exit 2) instead of a traceback. Imported only
    when a command failed, so `gtm --help` does not load the model and provider clients."""
    from gtm.app.llm import EmbeddedModelUnavailable
    from gtm.app.providers import ProviderConfigError
    from gtm.domain.playbook import PlaybookError
    from memory.chroma_http import MemoryServerError
    from tools.pg import DatabaseError

    return (
        PlaybookError,
        EmbeddedModelUnavailable,
        ProviderConfigError,
        MemoryServerError,
        DatabaseError,
    )


def now() -> datetime:
    return datetime.now(UTC)


def print_attention(rt: Workspace, campaign: str | None) -> None:
    unknown = rt.deps.outbox.entries(campaign=campaign, state="unknown")
    for e in unknown:
        err.print(
            f"[red]needs a human[/red]: {e.step} for {e.account_id} ({e.contact_key}) is in "
            "state 'unknown' — check the provider; it will not be resent.",
            highlight=False,
        )
