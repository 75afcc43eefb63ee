"""`gtm serve`: the web inbox, the webhook receivers and a scheduler, in one long-running process.

The server is `gtm inbox --web`'s (same binding rules, same printed sign-in token), with the
receivers that are configured added beside it: Dux-Soup's webhook when
GTM_DUXSOUP_WEBHOOK_SECRET is set (its profile visits go to the workspace's profile store, for
research), RFC 8058 one-click unsubscribe when GTM_UNSUBSCRIBE_SECRET is set. They guard
themselves with their own secrets, not the sign-in token.

An APScheduler job runs every `--every`, one at a time (a tick that is still running when the
next is due is not doubled; missed ticks coalesce into one). A tick does what `gtm sync` does
(`gtm.app.sync.sync_all`: drop folder, mailbox, escalation pass) and then advances the due
sequence steps of every campaign in the ledger, each under the campaign's run lock so it never
races a `gtm run` of the same campaign (with GTM_DATABASE_URL: under the campaign's end-of-run
lease in the database, `gtm.app.workers.end_of_run_lease`, which `gtm run` workers on any
machine take for the same pass; a lock file would guard one machine only), and last evaluates
the playbook's red flags (each new one printed on a line and alerted once; `gtm.app.loop_pass`).
The model starts on the first tick that needs it (a reply to classify, a follow-up due), so an
idle server holds no model.
Every part is idempotent and resumable, so a tick that fails is logged and the next one picks
up where it stopped; Ctrl-C cancels a running tick the way it stops `gtm run`, and the next
start continues.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from gtm.cli.common import app, err, fail, out, settings_of, usage_errors

if TYPE_CHECKING:  # the server, scheduler and model load when `gtm serve` runs, not on --help
    import asyncio

    from starlette.routing import BaseRoute

    from gtm.app.loop import IngestReport
    from gtm.app.settings import Settings
    from gtm.app.sync import SyncReport
    from gtm.app.workspace import Workspace
    from gtm.domain.events import Event
    from gtm.domain.models import OutboxEntry
    from gtm.web.app import WebInbox
    from tools.imap import ImapMailbox
    from tools.pg_leases import AccountLeases
    from tools.profiles import ProfileSnapshot

__all__ = ["Tick", "parse_every", "serve_command"]

log = logging.getLogger("gtm.serve")

_EVERY = re.compile(r"\s*(\d+)\s*([smhd])\s*")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_every(value: str) -> timedelta:
    """`15m`, `30s`, `2h` or `1d` as a positive interval; ValueError otherwise."""
    m = _EVERY.fullmatch(value)
    if m is None or int(m.group(1)) == 0:
        raise ValueError(f"{value!r} is not an interval like 30s, 15m, 2h or 1d")
    return timedelta(**{_UNIT[m.group(2)]: int(m.group(1))})


class Tick:
    """The scheduler's job and what it works on: the inbox's open workspace (set when the
    server has started), the mailbox, and the model for classifying replies and drafting
    follow-ups, started on the first tick that has one of those to do (the configured endpoint,
    or the embedded model as `gtm run` starts it) and kept for the ticks after it."""

    def __init__(self, settings: Settings, mailbox: ImapMailbox | None) -> None:
        self.settings = settings
        self.mailbox = mailbox
        self.rt: Workspace | None = None
        self.ticks = 0
        self.failures = 0
        self.model_error: str | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._running: asyncio.Task[None] | None = None
        self.leases: AccountLeases | None = None
        """With GTM_DATABASE_URL: this server's leases (it takes each campaign's end-of-run
        lease while it advances that campaign's follow-ups); None: lock files."""

    def ingest(self, events: Sequence[Event]) -> IngestReport:
        """What the webhook receivers call; they are served only once `rt` is set."""
        from gtm.app.loop import ingest

        if self.rt is None:
            raise RuntimeError("the workspace is not open yet")
        return ingest(self.rt, events)

    def profiles(self, snapshots: Sequence[ProfileSnapshot]) -> int:
        """What Dux-Soup's receiver calls with the profiles it visited: into the workspace's
        profile store, for research; how many changed what is known."""
        if self.rt is None:
            raise RuntimeError("the workspace is not open yet")
        return self.rt.profiles.record(snapshots)

    @contextlib.asynccontextmanager
    async def running(self, inbox: WebInbox, every: timedelta) -> AsyncIterator[None]:
        """Start the scheduler with the server, stop it (cancelling a running tick) with it."""
        import asyncio

        from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

        async with contextlib.AsyncExitStack() as stack:
            self._stack = stack
            self.rt = inbox.rt
            if (url := self.settings.database_url) is not None:
                from tools.pg_leases import AccountLeases, new_worker_id

                self.leases = await asyncio.to_thread(
                    AccountLeases,
                    url.get_secret_value(),
                    worker=f"gtm serve {new_worker_id()}",
                    retry_window=self.settings.database_retry_s,
                )
                stack.callback(self._close_leases)
            scheduler = AsyncIOScheduler(timezone="UTC")
            scheduler.add_job(
                self.run,
                "interval",
                seconds=every.total_seconds(),
                id="sync",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
            scheduler.start()
            try:
                yield
            finally:
                scheduler.shutdown(wait=False)  # cancels a running tick: resumable, as Ctrl-C
                if (task := self._running) is not None and not task.done():
                    # Let its cleanup (locks, stores) run while the workspace is still open.
                    await asyncio.wait([task], timeout=30)
                out.print(f"scheduler stopped after {self.ticks} tick(s)", highlight=False)

    def _close_leases(self) -> None:
        if self.leases is not None:
            self.leases.close()
            self.leases = None

    async def with_model(self) -> Workspace | None:
        """The workspace with a started model; None when none can start (said once: the
        replies wait and no follow-up is drafted, as without a model in `gtm sync`)."""
        from gtm.app.llm import EmbeddedModelUnavailable, open_chat_model
        from gtm.app.workspace import ModelNotStarted

        rt, stack = self.rt, self._stack
        if rt is None or stack is None:
            return None
        if not isinstance(rt.deps.model, ModelNotStarted):
            return rt
        if self.model_error is not None:
            return None
        out.print("starting the model for replies and follow-ups", highlight=False)
        try:
            model, desc = await stack.enter_async_context(
                open_chat_model(
                    self.settings.model_settings(), log_dir=self.settings.data_dir / "logs"
                )
            )
        except EmbeddedModelUnavailable as exc:
            self.model_error = str(exc)
            err.print(f"[yellow]model[/yellow]: {escape(self.model_error)}", highlight=False)
            return None
        out.print(f"model: {escape(desc)}", highlight=False)
        deps = dataclasses.replace(rt.deps, model=model, model_name=desc)
        self.rt = dataclasses.replace(rt, deps=deps, model_description=desc)
        return self.rt

    async def run(self) -> None:
        """One tick. Any failure is logged and counted; the scheduler keeps its schedule."""
        import asyncio

        self.ticks += 1
        self._running = asyncio.current_task()
        try:
            await self.once()
        except asyncio.CancelledError:
            log.info("tick cancelled by shutdown; the next start picks up where it stopped")
        except Exception:
            self.failures += 1
            log.exception("scheduled sync failed; the next tick retries (it is idempotent)")
        finally:
            self._running = None

    async def once(self) -> None:
        """Take in what came back, advance every campaign's due follow-ups, then evaluate the
        red flags (a new one is printed and alerted once). The model starts only when a reply
        waits for it or a follow-up is due."""
        from gtm.app.campaigns import CampaignBusy
        from gtm.app.escalation_pass import escalate_pending
        from gtm.app.loop import FolderReport
        from gtm.app.loop_pass import red_flag_pass
        from gtm.app.sequences import advance_sequences, due_follow_ups
        from gtm.app.sync import SyncReport, sync_all

        rt = self.rt
        if rt is None:
            return
        report = await sync_all(rt, self.mailbox)
        _print_sync(report)
        if report.escalations.waiting_for_model and (ready := await self.with_model()):
            acted = await escalate_pending(ready)
            _print_sync(SyncReport(folder=FolderReport(), mail=None, escalations=acted))
        for campaign in rt.ledger.campaigns():
            try:
                async with self._campaign_held(rt, campaign):
                    due = await due_follow_ups(rt, campaign)
                    if not due.due or (ready := await self.with_model()) is None:
                        continue
                    seq = await advance_sequences(ready, campaign)
            except CampaignBusy:
                continue  # a `gtm run` (or another server) is advancing it now
            for line in seq.stopped:
                out.print(f"sequence stopped: {escape(line)}", highlight=False, soft_wrap=True)
            if seq.advanced:
                out.print(
                    f"{escape(campaign)}: {len(seq.advanced)} follow-up(s) taken to their next "
                    "step",
                    highlight=False,
                    soft_wrap=True,
                )
        for flag in await red_flag_pass(rt):  # each flag, week and campaign fires once
            out.print(
                f"red flag {flag.id}: {escape(flag.message)}", highlight=False, soft_wrap=True
            )

    @contextlib.asynccontextmanager
    async def _campaign_held(self, rt: Workspace, campaign: str) -> AsyncIterator[None]:
        """The campaign's run lock file, or on Postgres its end-of-run lease (any machine's
        `gtm run` workers take that one for the same pass); `CampaignBusy` when held."""
        from gtm.app.campaigns import campaign_lock
        from gtm.app.workers import end_of_run_lease

        if self.leases is None:
            with campaign_lock(rt.settings.data_dir, campaign):
                yield
        else:
            async with end_of_run_lease(self.leases, campaign):
                yield


def _print_sync(report: SyncReport) -> None:
    """One line per tick that took something in; silence when nothing came back."""
    got = report.folder.ingested
    mail = report.mail
    if mail is not None and mail.error is not None:
        err.print(f"[yellow]mailbox[/yellow]: {escape(mail.error)}", highlight=False)
    new = got.new + (mail.ingested.new if mail else 0)
    escalated = len(report.escalations.escalations)
    if new or report.folder.rejected or escalated:
        out.print(
            f"sync: {new} new event(s), {len(report.folder.rejected)} file(s) rejected, "
            f"{escalated} escalation(s)",
            highlight=False,
        )


def _routes(settings: Settings, tick: Tick) -> list[BaseRoute]:
    """The receivers `settings` configures; their secrets never appear in the output."""
    from gtm.web.webhooks import unsubscribe_route, webhook_routes

    routes: list[BaseRoute] = list(webhook_routes(settings, tick.ingest, profiles=tick.profiles))
    if routes:
        out.print(
            "Dux-Soup webhook: <this address>/webhooks/duxsoup/<GTM_DUXSOUP_WEBHOOK_SECRET>",
            highlight=False,
            soft_wrap=True,
        )
    if settings.unsubscribe_secret is not None:

        def lookup(key: str) -> OutboxEntry | None:
            return tick.rt.deps.outbox.get(key) if tick.rt is not None else None

        secret = settings.unsubscribe_secret.get_secret_value()
        routes.append(unsubscribe_route(secret, lookup, tick.ingest))
        out.print("one-click unsubscribe: <this address>/unsubscribe/<token>", highlight=False)
    return routes


@app.command("serve", rich_help_panel="Loop")
def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 8765,
    every: Annotated[
        str, typer.Option(help="How often to sync and advance sequences: 30s, 15m, 2h, 1d.")
    ] = "15m",
) -> None:
    """Run the web inbox, the webhook receivers and a scheduler (what `gtm sync` does, then due
    follow-ups) in one process until Ctrl-C."""
    from gtm.app.sync import MailboxConfigError, open_mailbox
    from gtm.web import serve
    from gtm.web.webhooks import WebhookConfigError

    try:
        interval = parse_every(every)
    except ValueError as exc:
        raise fail(f"--every: {exc}") from None
    settings = settings_of(ctx)
    try:
        tick = Tick(settings, open_mailbox(settings))
        routes = _routes(settings, tick)
    except (MailboxConfigError, WebhookConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    if not (host in ("localhost", "::1") or host.startswith("127.")):
        err.print(
            f"[yellow]warning[/yellow]: serving on {host}, not loopback: anyone who can reach it "
            "and learns the token can approve sends.",
            highlight=False,
        )
    out.print(f"syncing every {every.strip()}", highlight=False)
    try:
        serve(
            settings,
            host=host,
            port=port,
            announce=lambda line: out.print(line, soft_wrap=True),
            extra_routes=routes,
            background=lambda inbox: tick.running(inbox, interval),
        )
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except usage_errors() as exc:  # a playbook, or a server or database away at start-up
        raise fail(str(exc)) from None
