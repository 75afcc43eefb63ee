"""`gtm sync`: everything that came back, from every source, taken in once and acted on.

The drop folder (`gtm.app.loop.sync`), then the new mail of the configured IMAP mailbox (replies,
auto-replies, bounces and unsubscribes, turned into events by `tools.mail_events` and matched
like any other event by `gtm.app.loop.ingest`), then the escalation pass over every event not
yet escalated (`gtm.app.escalation_pass`). `gtm sync` runs it once; each tick of `gtm serve`
runs it again. Every part is idempotent, so a pass cut short is finished by the next one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gtm.app.escalation_pass import PendingReport, escalate_pending
from gtm.app.loop import FolderReport, IngestReport, ingest, sync, why_invalid
from gtm.app.settings import Settings
from gtm.app.workspace import Workspace
from tools.imap import ImapMailbox, MailboxError, NewMail
from tools.mail_events import read_message, unsubscribe_of

__all__ = [
    "MailReport",
    "MailboxConfigError",
    "SyncReport",
    "open_mailbox",
    "read_mailbox",
    "sync_all",
]


class MailboxConfigError(ValueError):
    """GTM_IMAP_HOST is set but the login it needs is not: nothing can be read."""


def open_mailbox(s: Settings) -> ImapMailbox | None:
    """The configured mailbox, or None when GTM_IMAP_HOST is unset; `MailboxConfigError` when
    it is set without a username or password. Nothing is connected until it is fetched."""
    if not s.imap_host:
        return None
    for name, value in (("USERNAME", s.imap_username), ("PASSWORD", s.imap_password)):
        if not value:
            raise MailboxConfigError(
                f"GTM_IMAP_HOST is set but GTM_IMAP_{name} is not: nothing was read"
            )
    return ImapMailbox(
        host=s.imap_host,
        port=s.imap_port,
        username=s.imap_username or "",
        password=s.imap_password.get_secret_value() if s.imap_password else "",
        folder=s.imap_folder,
        ssl=s.imap_ssl,
        starttls=s.imap_starttls,
        ca_file=s.imap_ca_file,
        timeout=s.http_timeout_s,
        cursor=s.path("imap.sqlite"),
    )


def read_mailbox(ws: Workspace, mailbox: ImapMailbox, mail: NewMail) -> tuple[IngestReport, int]:
    """Turn each fetched message into an event and take it in; count what was no event. The
    mailbox's cursor moves only after the ingest, so a crash before it re-reads, harmlessly."""
    from evals.replies import new_text  # its reply parser loads only when there is mail

    s = ws.settings
    unsub = unsubscribe_of(s.email_unsubscribe or f"mailto:{s.email_from}?subject=unsubscribe")
    own = [s.email_from, *([s.imap_username] if s.imap_username else [])]
    events, skipped = [], 0
    for m in mail.messages:
        read = read_message(m.raw, own_addresses=own, unsubscribe=unsub, new_text=new_text)
        if read.event is None or why_invalid(read.event) is not None:
            skipped += 1
            continue
        events.append(read.event)
    report = ingest(ws, events)
    mailbox.remember(mail)
    return report, skipped


@dataclass
class MailReport:
    """What one read of the mailbox did."""

    name: str
    messages: int = 0
    ingested: IngestReport = field(default_factory=IngestReport)
    skipped: int = 0
    """Messages that were no event (not a reply, bounce or unsubscribe we can place)."""
    waiting: int = 0
    """Messages left for the next read (one read takes a bounded batch)."""
    error: str | None = None
    """Why the mailbox could not be read; the drop folder was still taken in."""


@dataclass
class SyncReport:
    """What `sync_all` did: the drop folder, the mailbox (None when none is configured) and
    the escalation pass."""

    folder: FolderReport
    mail: MailReport | None
    escalations: PendingReport


async def sync_all(ws: Workspace, mailbox: ImapMailbox | None) -> SyncReport:
    """Everything `gtm sync` (and each tick of `gtm serve`) takes in: the drop folder, then the
    new mail in `mailbox` when one is given, then the escalation pass over every event not yet
    escalated. Each part is idempotent, so a run cut short is finished by the next one. A
    mailbox that cannot be read is reported in `mail.error`, not raised."""
    folder = sync(ws)
    mail: MailReport | None = None
    if mailbox is not None:
        mail = MailReport(name=mailbox.name)
        try:
            new = await asyncio.to_thread(mailbox.fetch_new)
        except MailboxError as exc:
            mail.error = str(exc)
        else:
            mail.ingested, mail.skipped = read_mailbox(ws, mailbox, new)
            mail.messages, mail.waiting = len(new.messages), new.waiting
    acted = await escalate_pending(ws)
    return SyncReport(folder=folder, mail=mail, escalations=acted)
