"""An IMAP mailbox read for what came back: replies, auto-replies, bounces, unsubscribes.

Built on IMAPClient (UIDs by default, parsed responses, one exception tree). A read is
UID-based: the last UID seen per mailbox (user, host, port, folder) is kept with the folder's
UIDVALIDITY in a small SQLite file, so a second run fetches only what arrived since. When the
server renumbers the folder (a new UIDVALIDITY) everything is read again; that is harmless,
because events are keyed by Message-ID and the event store keeps a key once.

The folder is opened read-only and bodies are fetched with `BODY.PEEK[]`, so reading never marks
a message as seen in the person's mail client. The password is only ever handed to LOGIN:
IMAPClient redacts LOGIN from its debug log, and every error raised here is scrubbed of it.
Any way of failing to reach the mailbox (closed port, TLS, refused login, missing folder)
raises `MailboxError`, whose `reason` says which, with a one-line message.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from imapclient import IMAPClient  # type: ignore[import-untyped]
from imapclient.exceptions import IMAPClientError, LoginError  # type: ignore[import-untyped]

from tools.sqlite import connect

__all__ = ["FetchedMessage", "ImapMailbox", "MailboxError", "MailboxReason", "NewMail", "UidCursor"]

_BATCH = 100
"""UIDs fetched per FETCH command."""

MailboxReason = Literal["unreachable", "insecure", "login", "folder", "protocol"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS imap_cursor (
    mailbox TEXT PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    last_uid INTEGER NOT NULL
);
"""


class MailboxError(Exception):
    """The mailbox could not be read. `reason`: `unreachable` (connect, TLS, timeout),
    `insecure` (no TLS to a host off loopback: the password is not sent in clear), `login`
    (credentials refused), `folder` (no such folder) or `protocol` (the server misbehaved).
    The message is one line and never holds the password."""

    def __init__(self, reason: MailboxReason, message: str) -> None:
        self.reason = reason
        super().__init__(" ".join(message.split()))


@dataclass(frozen=True)
class FetchedMessage:
    """One message as the server holds it: its UID in the folder and its raw RFC 5322 bytes."""

    uid: int
    raw: bytes


@dataclass(frozen=True)
class NewMail:
    """What one `fetch_new` found: the messages, and the UID to remember once they are in."""

    uidvalidity: int
    up_to_uid: int
    messages: list[FetchedMessage]
    waiting: int
    """Messages left for the next call (beyond `limit`)."""


class UidCursor:
    """The last UID read per mailbox, with the UIDVALIDITY it belongs to (SQLite)."""

    def __init__(self, path: Path | str) -> None:
        self._db = connect(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def last_uid(self, mailbox: str, uidvalidity: int) -> int:
        """The last UID read under this UIDVALIDITY; 0 when none was, or the folder was
        renumbered since (then everything is read again)."""
        row = self._db.execute(
            "SELECT uidvalidity, last_uid FROM imap_cursor WHERE mailbox = ?", (mailbox,)
        ).fetchone()
        if row is None or int(row["uidvalidity"]) != uidvalidity:
            return 0
        return int(row["last_uid"])

    def advance(self, mailbox: str, uidvalidity: int, uid: int) -> None:
        """Remember `uid` as read (never moves backwards under one UIDVALIDITY)."""
        self._db.execute(
            "INSERT INTO imap_cursor (mailbox, uidvalidity, last_uid) VALUES (?, ?, ?) "
            "ON CONFLICT(mailbox) DO UPDATE SET last_uid = CASE "
            "WHEN imap_cursor.uidvalidity = excluded.uidvalidity "
            "THEN MAX(imap_cursor.last_uid, excluded.last_uid) ELSE excluded.last_uid END, "
            "uidvalidity = excluded.uidvalidity",
            (mailbox, uidvalidity, uid),
        )


class ImapMailbox:
    """One folder of one IMAP account. Synchronous (IMAPClient is); callers in async code run
    it in a worker thread. Each call opens, uses and logs out of its own connection."""

    def __init__(
        self,
        *,
        host: str,
        username: str,
        password: str,
        port: int = 993,
        folder: str = "INBOX",
        ssl: bool = True,
        starttls: bool = False,
        ca_file: Path | None = None,
        timeout: float = 20.0,
        cursor: Path | None = None,
    ) -> None:
        self.host, self.port, self.folder = host, port, folder
        self._user, self._password = username, password
        self._ssl, self._starttls = ssl, starttls
        self._ca_file = ca_file
        self._timeout = timeout
        self._cursor_path = cursor

    @property
    def name(self) -> str:
        """The mailbox as shown and as the cursor keys it: user@host:port/folder."""
        return f"{self._user}@{self.host}:{self.port}/{self.folder}"

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self._ca_file) if self._ca_file else None)

    @contextmanager
    def _session(self) -> Iterator[tuple[Any, dict[bytes, Any]]]:
        """Connected, logged in, folder selected read-only; yields the client and SELECT's
        answer. Every failure becomes a `MailboxError` naming what failed."""
        where = f"imap {self.host}:{self.port}"
        if not (self._ssl or self._starttls or _loopback(self.host)):
            raise MailboxError(
                "insecure", f"{where}: neither TLS nor STARTTLS; the password is not sent in clear"
            )
        try:
            client = IMAPClient(
                self.host,
                port=self.port,
                ssl=self._ssl,
                ssl_context=self._tls() if self._ssl else None,
                timeout=self._timeout,
            )
        except (OSError, IMAPClientError) as exc:
            raise MailboxError("unreachable", f"{where}: cannot connect ({_why(exc)})") from None
        try:
            try:
                if self._starttls and not self._ssl:
                    client.starttls(self._tls())
            except (OSError, IMAPClientError) as exc:
                raise MailboxError(
                    "unreachable", f"{where}: STARTTLS failed ({_why(exc)})"
                ) from None
            try:
                client.login(self._user, self._password)
            except LoginError as exc:
                why = self._scrub(_why(exc))
                raise MailboxError(
                    "login", f"{where}: login refused for {self._user} ({why})"
                ) from None
            try:
                selected = client.select_folder(self.folder, readonly=True)
            except IMAPClientError as exc:
                why = self._scrub(_why(exc))
                raise MailboxError(
                    "folder", f"{where}: cannot open folder {self.folder!r} ({why})"
                ) from None
            yield client, selected
        except (OSError, IMAPClientError) as exc:
            why = self._scrub(_why(exc))
            reason: MailboxReason = "unreachable" if isinstance(exc, OSError) else "protocol"
            raise MailboxError(reason, f"{where}: {why}") from None
        finally:
            try:
                client.logout()
            except (OSError, IMAPClientError):
                try:
                    client.shutdown()
                except OSError:
                    pass

    def check(self) -> str:
        """Log in and open the folder, reading nothing: what `gtm doctor` asks."""
        with self._session() as (_, selected):
            count = int(selected.get(b"EXISTS", 0))
        return f"{self.name}: logged in, {count} message(s) in the folder"

    def fetch_new(self, *, limit: int = 500) -> NewMail:
        """The messages with a UID above the last one remembered, oldest first, at most
        `limit` of them (the rest wait for the next call). Nothing is remembered until
        `remember` is called with the result, so a crash in between re-reads (harmlessly)
        rather than skips."""
        if self._cursor_path is None:
            raise ValueError("fetch_new needs a cursor file (cursor=...)")
        cursor = UidCursor(self._cursor_path)
        try:
            with self._session() as (client, selected):
                validity = int(selected[b"UIDVALIDITY"])
                last = cursor.last_uid(self.name, validity)
                # "UID n:*" always matches the newest message, even below n: filter.
                found = sorted(u for u in client.search(["UID", f"{last + 1}:*"]) if u > last)
                uids = found[:limit]
                messages: list[FetchedMessage] = []
                for start in range(0, len(uids), _BATCH):
                    chunk = uids[start : start + _BATCH]
                    got = client.fetch(chunk, ["BODY.PEEK[]"])
                    for uid in chunk:
                        body = got.get(uid, {}).get(b"BODY[]")
                        if isinstance(body, bytes):  # else expunged since SEARCH
                            messages.append(FetchedMessage(uid, body))
        finally:
            cursor.close()
        return NewMail(validity, uids[-1] if uids else last, messages, len(found) - len(uids))

    def remember(self, mail: NewMail) -> None:
        """Mark everything `fetch_new` returned in `mail` as read for the next call."""
        if self._cursor_path is None:
            raise ValueError("remember needs a cursor file (cursor=...)")
        cursor = UidCursor(self._cursor_path)
        try:
            cursor.advance(self.name, mail.uidvalidity, mail.up_to_uid)
        finally:
            cursor.close()


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc).strip() or type(exc).__name__
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text
