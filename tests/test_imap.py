"""What comes back by email, read from a real IMAP server (dovecot on loopback): replies threaded
to the sent email, out-of-office, DSN bounces, List-Unsubscribe mail; each once; and a mailbox
that cannot be read is one clear line, never a traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evals.replies import new_text
from gtm.app.doctor import diagnose
from gtm.app.settings import Settings
from gtm.cli.loop import EXIT_MAILBOX
from tests.support.cli import run_gtm
from tests.support.imap_server import DOVECOT, ImapServer, dovecot_server
from tools.events import EventStore
from tools.imap import ImapMailbox, MailboxError, UidCursor
from tools.mail_events import MailRead, read_message, unsubscribe_of
from tools.outbox import Outbox

ME = "alex@vectorly.example"
SENT_ID = "<gtm.0123456789abcdef@vectorly.example>"
UNSUB = unsubscribe_of(f"mailto:{ME}?subject=unsubscribe")

needs_dovecot = pytest.mark.skipif(
    not DOVECOT.exists(), reason="no dovecot: apt-get install -y dovecot-imapd (make test does)"
)


def _mail(headers: str, body: str) -> bytes:
    head = headers.strip().replace("\n", "\r\n")
    return (head + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()


REPLY = _mail(
    f"""From: Bob Stone <Bob@Acme.ai>
To: Alex Morgan <{ME}>
Subject: Re: your note on pipeline hygiene
Date: Tue, 03 Mar 2026 10:15:00 +0100
Message-ID: <reply.1@acme.ai>
In-Reply-To: {SENT_ID}
References: <older.0@acme.ai> {SENT_ID}
Content-Type: text/plain; charset=utf-8""",
    f"""Happy to talk next week, Tuesday works.

On Mon, 2 Mar 2026 at 10:10, Alex Morgan <{ME}> wrote:
> Hi Bob, a question about pipeline hygiene at Acme.
> Alex
""",
)

OUT_OF_OFFICE = _mail(
    f"""From: Bob Stone <bob@acme.ai>
To: {ME}
Subject: Automatic reply: your note on pipeline hygiene
Date: Tue, 03 Mar 2026 09:00:00 +0000
Message-ID: <ooo.1@acme.ai>
In-Reply-To: {SENT_ID}
Auto-Submitted: auto-replied""",
    "I am out of the office until 16 March with limited access to email.\n",
)

EXCHANGE_OOF = _mail(
    f"""From: bob@acme.ai
To: {ME}
Subject: Abwesenheitsnotiz: pipeline hygiene
Date: Tue, 03 Mar 2026 09:00:00 +0000
Message-ID: <ooo.2@acme.ai>
X-Auto-Response-Suppress: All""",
    "Ich bin bis zum 16. März nicht im Büro.\n",
)

OUTLOOK_NORMAL = _mail(
    f"""From: bob@acme.ai
To: {ME}
Subject: Re: pipeline hygiene
Date: Tue, 03 Mar 2026 09:00:00 +0000
Message-ID: <normal.3@acme.ai>
X-Auto-Response-Suppress: All""",
    "Sounds good.\n",
)

BOUNCE = _mail(
    f"""From: Mail Delivery System <MAILER-DAEMON@mx.vectorly.example>
To: {ME}
Subject: Undelivered Mail Returned to Sender
Date: Tue, 03 Mar 2026 08:00:00 +0000
Message-ID: <dsn.1@mx.vectorly.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUND"
""",
    f"""--BOUND
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--BOUND
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.vectorly.example
Arrival-Date: Tue, 03 Mar 2026 07:59:58 +0000

Original-Recipient: rfc822; Carol@Acme.ai
Final-Recipient: rfc822; carol.old@mail.acme.ai
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 user unknown

--BOUND
Content-Type: text/rfc822-headers

From: Alex Morgan <{ME}>
To: Carol <carol@acme.ai>
Subject: your note
Message-ID: {SENT_ID.replace("0123", "9999")}

--BOUND--
""",
)

DELAYED = BOUNCE.replace(b"Action: failed", b"Action: delayed").replace(b"dsn.1", b"dsn.2")

UNSUBSCRIBE = _mail(
    f"""From: Dan <dan@beta.example>
To: {ME}
Subject: unsubscribe
Date: Tue, 03 Mar 2026 11:00:00 +0000
Message-ID: <unsub.1@beta.example>""",
    "",
)

QUOTED_ONLY = _mail(
    f"""From: bob@acme.ai
To: {ME}
Subject: Re: your note on pipeline hygiene
Date: Tue, 03 Mar 2026 12:00:00 +0000
Message-ID: <reply.2@acme.ai>
In-Reply-To: {SENT_ID}""",
    f"""On Mon, 2 Mar 2026 at 10:10, Alex Morgan <{ME}> wrote:
> Hi Bob, a question about pipeline hygiene at Acme.
""",
)

GERMAN = _mail(
    f"""From: Jörg Weiß <joerg@beispiel.de>
To: {ME}
Subject: AW: Ihre Nachricht
Date: Tue, 03 Mar 2026 13:00:00 +0100
Message-ID: <antwort.1@beispiel.de>
In-Reply-To: <gtm.other@vectorly.example>
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit""",
    f"""Danke, das klingt interessant. Können Sie mir Unterlagen schicken?

Am 02.03.2026 um 10:10 schrieb Alex Morgan <{ME}>:
> Hallo Herr Weiß, eine Frage zur Pipeline.
""",
)

OWN_COPY = _mail(
    f"""From: Alex Morgan <{ME}>
To: bob@acme.ai
Subject: your note on pipeline hygiene
Date: Mon, 02 Mar 2026 10:10:00 +0000
Message-ID: {SENT_ID}""",
    "Hi Bob\n",
)


def _read(raw: bytes) -> MailRead:
    return read_message(raw, own_addresses=[ME], unsubscribe=UNSUB, new_text=new_text)


# -- reading one message ---------------------------------------------------------------------


def test_a_reply_keeps_its_thread_and_only_the_new_text() -> None:
    ev = _read(REPLY).event
    assert ev is not None and ev.kind == "email_reply" and ev.source == "imap"
    assert ev.key == "<reply.1@acme.ai>" and ev.email == "bob@acme.ai"
    assert ev.in_reply_to == (SENT_ID, "<older.0@acme.ai>")
    assert ev.at == datetime(2026, 3, 3, 9, 15, tzinfo=UTC)
    assert ev.text == "Happy to talk next week, Tuesday works."


def test_auto_replies_by_rfc3834_and_by_exchange_subject() -> None:
    rfc = _read(OUT_OF_OFFICE).event
    assert rfc is not None and rfc.kind == "auto_reply" and rfc.in_reply_to == (SENT_ID,)
    exchange = _read(EXCHANGE_OOF).event
    assert exchange is not None and exchange.kind == "auto_reply"
    # X-Auto-Response-Suppress on an ordinary reply (Outlook adds it) is not an auto-reply.
    normal = _read(OUTLOOK_NORMAL).event
    assert normal is not None and normal.kind == "email_reply"
    said_no = _read(OUTLOOK_NORMAL.replace(b"X-Auto-Response", b"Auto-Submitted: no\r\nX-A"))
    assert said_no.event is not None and said_no.event.kind == "email_reply"


def test_a_dsn_is_a_bounce_for_the_original_recipient_and_sent_message() -> None:
    ev = _read(BOUNCE).event
    assert ev is not None and ev.kind == "bounce"
    assert ev.email == "carol@acme.ai"  # Original-Recipient, not the rewritten final one
    assert ev.in_reply_to == (SENT_ID.replace("0123", "9999"),)
    assert "5.1.1" in ev.text and "user unknown" in ev.text
    delayed = _read(DELAYED)
    assert delayed.event is None and "no failed recipient" in delayed.skipped


def test_mail_to_the_unsubscribe_mailto_is_an_unsubscribe() -> None:
    ev = _read(UNSUBSCRIBE).event
    assert ev is not None and ev.kind == "unsubscribe" and ev.email == "dan@beta.example"
    # The same address without the subject the mailto asks for is an ordinary reply.
    other = _read(UNSUBSCRIBE.replace(b"Subject: unsubscribe", b"Subject: Re: hello"))
    assert other.event is not None and other.event.kind == "email_reply"
    # A dedicated address needs no subject.
    dedicated = unsubscribe_of("mailto:optout@vectorly.example")
    assert dedicated == unsubscribe_of("mailto:OptOut@vectorly.example")
    raw = UNSUBSCRIBE.replace(f"To: {ME}".encode(), b"To: optout@vectorly.example")
    raw = raw.replace(b"Subject: unsubscribe", b"Subject: please stop")
    got = read_message(raw, own_addresses=[ME], unsubscribe=dedicated, new_text=new_text)
    assert got.event is not None and got.event.kind == "unsubscribe"
    assert unsubscribe_of("https://vectorly.example/u/1") is None


def test_a_quoted_thread_alone_leaves_no_text_and_german_is_read() -> None:
    quoted = _read(QUOTED_ONLY).event
    assert quoted is not None and quoted.kind == "email_reply" and quoted.text == ""
    german = _read(GERMAN).event
    assert german is not None and german.email == "joerg@beispiel.de"
    assert german.text == "Danke, das klingt interessant. Können Sie mir Unterlagen schicken?"


def test_our_own_copies_and_odd_messages_are_no_event() -> None:
    assert _read(OWN_COPY).skipped == "from our own address"
    no_id = _mail("From: x@y.example\nSubject: hi", "hello")
    first, second = _read(no_id).event, _read(no_id).event
    assert first is not None and second is not None
    assert first.key.startswith("imap:") and first.key == second.key  # stable without an id
    html = _mail(
        "From: x@y.example\nMessage-ID: <h@y>\nContent-Type: text/html",
        "<p>Yes <b>please</b></p><script>x()</script>",
    )
    read = _read(html).event
    assert read is not None and read.text == "Yes please"


def test_the_cursor_never_goes_back_and_restarts_on_a_new_uidvalidity(tmp_path: Path) -> None:
    cur = UidCursor(tmp_path / "imap.sqlite")
    assert cur.last_uid("box", 7) == 0
    cur.advance("box", 7, 5)
    cur.advance("box", 7, 3)
    assert cur.last_uid("box", 7) == 5
    assert cur.last_uid("box", 8) == 0
    cur.advance("box", 8, 2)
    assert cur.last_uid("box", 8) == 2
    cur.close()


# -- a real mailbox --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ImapServer]:
    if not DOVECOT.exists():
        pytest.skip("no dovecot: apt-get install -y dovecot-imapd (make test does)")
    with dovecot_server() as s:
        yield s


def _mailbox(s: ImapServer, folder: str, tmp: Path, **kw: object) -> ImapMailbox:
    args: dict[str, object] = {
        "host": s.host,
        "port": s.port,
        "username": s.username,
        "password": s.password,
        "folder": folder,
        "ssl": False,
        "timeout": 10.0,
        "cursor": tmp / "imap.sqlite",
    }
    args.update(kw)
    return ImapMailbox(**args)  # type: ignore[arg-type]


@needs_dovecot
def test_fetch_new_reads_each_message_once_without_marking_it_seen(
    server: ImapServer, tmp_path: Path
) -> None:
    for raw in (REPLY, OUT_OF_OFFICE):
        server.append(raw, "fetch")
    box = _mailbox(server, "fetch", tmp_path)
    assert "logged in, 2 message(s)" in box.check()
    first = box.fetch_new()
    assert [m.raw.count(b"Message-ID") for m in first.messages] == [1, 1]
    assert box.fetch_new().messages == first.messages  # nothing remembered yet: read again
    box.remember(first)
    assert box.fetch_new().messages == []
    server.append(BOUNCE, "fetch")
    later = box.fetch_new(limit=1)
    assert len(later.messages) == 1 and b"dsn.1" in later.messages[0].raw
    box.remember(later)
    assert box.fetch_new().messages == []


@needs_dovecot
def test_wrong_password_closed_port_and_missing_folder_say_which(
    server: ImapServer, tmp_path: Path
) -> None:
    with pytest.raises(MailboxError) as refused:
        _mailbox(server, "INBOX", tmp_path, password="wrong-pass-123").check()
    assert refused.value.reason == "login" and "wrong-pass-123" not in str(refused.value)
    with pytest.raises(MailboxError) as missing:
        _mailbox(server, "Nope", tmp_path).check()
    assert missing.value.reason == "folder" and "'Nope'" in str(missing.value)
    with pytest.raises(MailboxError) as closed:
        _mailbox(server, "INBOX", tmp_path, port=_closed_port()).check()
    assert closed.value.reason == "unreachable" and "connection refused" in str(closed.value)
    with pytest.raises(MailboxError) as clear:  # no TLS off loopback: LOGIN is never sent
        _mailbox(server, "INBOX", tmp_path, host="imap.vectorly.example").check()
    assert clear.value.reason == "insecure"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gtm(data: Path, env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    env.update(ANONYMIZED_TELEMETRY="False", COLUMNS="200", GTM_EMAIL_FROM=ME, **env_extra)
    return run_gtm(env, "--data-dir", str(data), *args)


def _imap_env(s: ImapServer, folder: str, **over: str) -> dict[str, str]:
    env = {
        "GTM_IMAP_HOST": s.host,
        "GTM_IMAP_PORT": str(s.port),
        "GTM_IMAP_USERNAME": s.username,
        "GTM_IMAP_PASSWORD": s.password,
        "GTM_IMAP_FOLDER": folder,
        "GTM_IMAP_SSL": "false",
    }
    env.update(over)
    return env


@needs_dovecot
def test_gtm_sync_takes_in_the_mailbox_once_matched_to_the_sent_email(
    server: ImapServer, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    outbox = Outbox(data / "outbox.sqlite", clock=lambda: datetime(2026, 3, 2, 10, tzinfo=UTC))
    outbox.reserve(
        key="k-email",
        campaign="spring",
        account_id="acme.ai",
        contact_key="bob@acme.ai",
        step="email",
        channel="email",
        sender=ME,
    )
    outbox.mark_sent("k-email", SENT_ID)
    outbox.close()
    for raw in (REPLY, OUT_OF_OFFICE, BOUNCE, UNSUBSCRIBE, QUOTED_ONLY, GERMAN, OWN_COPY):
        server.append(raw, "sync")
    env = _imap_env(server, "sync")

    first = _gtm(data, env, "sync")
    assert first.returncode == 0, first.stderr
    assert "7 message(s) from" in first.stdout
    assert "6 new (3 matched, 3 unmatched), 0 already ingested, 1 not an event" in first.stdout
    again = _gtm(data, env, "sync")
    assert again.returncode == 0 and "0 message(s) from" in again.stdout

    store = EventStore(data / "events.sqlite")
    kinds = {s.event.key: (s.event.kind, s.outbox_key) for s in store.events()}
    store.close()
    assert kinds == {
        "<reply.1@acme.ai>": ("email_reply", "k-email"),
        "<ooo.1@acme.ai>": ("auto_reply", "k-email"),
        "<reply.2@acme.ai>": ("email_reply", "k-email"),
        "<dsn.1@mx.vectorly.example>": ("bounce", None),  # sent to Carol: no such touch here
        "<unsub.1@beta.example>": ("unsubscribe", None),
        "<antwort.1@beispiel.de>": ("email_reply", None),
    }


@needs_dovecot
def test_gtm_sync_and_doctor_say_plainly_when_the_mailbox_cannot_be_read(
    server: ImapServer, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    wrong = _gtm(data, _imap_env(server, "INBOX", GTM_IMAP_PASSWORD="hunter2-wrong"), "sync")
    assert wrong.returncode == EXIT_MAILBOX == 6
    assert "login refused" in wrong.stderr and "Traceback" not in wrong.stderr + wrong.stdout
    assert "hunter2-wrong" not in wrong.stderr + wrong.stdout
    assert "0 file(s) from" in wrong.stdout  # the drop folder was still taken in
    closed = _gtm(data, _imap_env(server, "INBOX", GTM_IMAP_PORT=str(_closed_port())), "sync")
    assert closed.returncode == 6 and "connection refused" in closed.stderr
    assert "Traceback" not in closed.stderr and len(closed.stderr.strip().splitlines()) == 1
    no_user = _gtm(data, _imap_env(server, "INBOX", GTM_IMAP_USERNAME=""), "sync")
    assert no_user.returncode == 2 and "GTM_IMAP_USERNAME is not" in no_user.stderr

    def doctor(**over: object) -> tuple[bool, str, str]:
        values: dict[str, object] = {
            "data_dir": data,
            "imap_host": server.host,
            "imap_port": server.port,
            "imap_username": server.username,
            "imap_password": server.password,
            "imap_ssl": False,
            **over,
        }
        found = asyncio.run(diagnose(Settings(**values)))  # type: ignore[arg-type]
        f = next(f for f in found if f.component.startswith("mailbox"))
        return f.ok, f.detail, f.fix

    ok, detail, _ = doctor()
    assert ok and "logged in" in detail
    ok, detail, fix = doctor(imap_password="hunter2-wrong")
    assert not ok and "login refused" in detail and "GTM_IMAP_PASSWORD" in fix
    assert "hunter2-wrong" not in detail
    ok, detail, fix = doctor(imap_folder="Nope")
    assert not ok and "GTM_IMAP_FOLDER" in fix
