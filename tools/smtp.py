"""Email over SMTP: STARTTLS, login, a `List-Unsubscribe` header, the Message-ID as receipt.

The Message-ID is derived from the outbox key, so the same key always yields the same id and a
second send of one key can be recognised downstream. smtplib is synchronous; a send runs in a
worker thread. A refusal before the message was accepted (auth, recipient, connection) raises
`ChannelError`; retryable only when the server may simply be busy (4xx, connection refused).
A message that cannot be built (a header would hold a line break, an address is not one valid
address) raises `ChannelError` before any connection: nothing was sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import ssl
from collections.abc import Sequence
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from gtm.domain.models import Receipt
from tools.channels import ChannelError
from tools.sqlite import KeyStore, key_ledger
from tools.unsubscribe import ONE_CLICK_BODY, one_click_url

__all__ = ["MessageError", "SmtpEmail", "build_message", "check_recipient"]

_BAD_HEADER = (ValueError, IndexError, HeaderParseError)
"""What the standard library raises for a header value it refuses (a line break, an address
that does not parse or parses to more or less than one mailbox)."""


class MessageError(ValueError):
    """The message cannot be built as given. It names the field, never its value (an address
    is personal data and errors end up in the outbox and the logs)."""


def _address(what: str, name: str, addr: str) -> Address:
    if not addr.isascii():  # the stdlib would encode it into a mangled, undeliverable address
        raise MessageError(f"{what} is not one valid email address (it holds non-ASCII letters)")
    try:
        return Address(display_name=name, addr_spec=addr)
    except _BAD_HEADER as exc:
        raise MessageError(f"{what} is not one valid email address ({_why(exc)})") from None


def _why(exc: BaseException) -> str:
    text = str(exc)
    if "CR or LF" in text or "linefeed" in text:
        return "it holds a line break"
    if "could be parsed" in text:
        return "it holds more than one address"
    return "it does not parse"


def _set(msg: EmailMessage, header: str, value: str | Address, what: str) -> None:
    try:
        msg[header] = value
    except _BAD_HEADER as exc:
        raise MessageError(f"{what} cannot go in an email header ({_why(exc)})") from None


def check_recipient(*, to: str, to_name: str, subject: str) -> None:
    """Raise `MessageError` if a message to this person with this subject cannot be built.

    The send node asks this of every email, whatever the channel, between reserving the action
    and calling the provider, so a bad row fails with its reason instead of dying mid-send.
    """
    msg = EmailMessage()
    _set(msg, "To", _address("the recipient's address or name", to_name, to), "the recipient")
    _set(msg, "Subject", subject, "the subject")


def build_message(
    *,
    sender: str,
    sender_name: str,
    to: str,
    to_name: str,
    subject: str,
    body: str,
    key: str,
    unsubscribe: str,
    one_click: str | None = None,
) -> EmailMessage:
    """The message as sent. Raises `MessageError` (before any connection) for a header that
    cannot carry its value: a line break in a name or subject, a To that is not one address.

    `one_click` is an https URL for RFC 8058 one-click unsubscribe (`tools.unsubscribe`): it
    goes first in `List-Unsubscribe`, the mailto `unsubscribe` after it as the fallback, with
    `List-Unsubscribe-Post: List-Unsubscribe=One-Click`."""
    msg = EmailMessage()
    _set(msg, "From", _address("the sender's address or name", sender_name, sender), "the sender")
    _set(msg, "To", _address("the recipient's address or name", to_name, to), "the recipient")
    _set(msg, "Subject", subject, "the subject")
    msg["Date"] = formatdate(usegmt=True)
    domain = sender.rsplit("@", 1)[-1]
    msg["Message-ID"] = f"<gtm.{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"
    targets = f"<{one_click}>, <{unsubscribe}>" if one_click else f"<{unsubscribe}>"
    _set(msg, "List-Unsubscribe", targets, "the unsubscribe link")
    if unsubscribe.startswith("https:") or one_click:
        msg["List-Unsubscribe-Post"] = ONE_CLICK_BODY
    msg["X-GTM-Idempotency-Key"] = key
    msg.set_content(body)
    return msg


class SmtpEmail:
    live = True

    def __init__(
        self,
        *,
        sender: str,
        sender_name: str,
        host: str,
        port: int = 587,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        ca_file: Path | None = None,
        unsubscribe: str | None = None,
        timeout: float = 20.0,
        ledger: Path | KeyStore | None = None,
        one_click_base_url: str | None = None,
        one_click_secret: str | None = None,
    ) -> None:
        """`one_click_base_url` and `one_click_secret` (both, or neither) add an RFC 8058
        one-click link per email; the receiver is `gtm.web.webhooks.unsubscribe_route`."""
        self.sender = sender
        self._name = sender_name
        self._host, self._port = host, port
        self._user, self._password = username, password
        self._starttls = starttls
        self._ca_file = ca_file
        self._unsubscribe = unsubscribe or f"mailto:{sender}?subject=unsubscribe"
        self._timeout = timeout
        if (one_click_base_url is None) != (one_click_secret is None):
            raise ValueError("one-click unsubscribe needs both a base URL and a secret")
        if one_click_base_url and one_click_secret:
            one_click_url(one_click_base_url, "check", one_click_secret)  # refuse a bad one now
        self._one_click = (one_click_base_url, one_click_secret)
        self._done = key_ledger(ledger) if ledger is not None else None

    async def aclose(self) -> None:
        if self._done:
            self._done.close()

    async def erase_person(self, emails: Sequence[str], urls: Sequence[str]) -> int | str:
        """Nothing to erase: the key ledger holds hashed outbox keys and Message-IDs derived from
        them, never an address."""
        return 0

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self._ca_file) if self._ca_file else None)

    def _session(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        try:
            smtp.ehlo()
            if self._starttls:
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            if self._user:
                if "PLAIN" in smtp.esmtp_features.get("auth", "").upper().split():
                    # One mechanism, over TLS: a refusal is a refusal, not a cue to try others.
                    smtp.user, smtp.password = self._user, self._password or ""
                    smtp.auth("PLAIN", smtp.auth_plain)
                else:
                    smtp.login(self._user, self._password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    async def check(self) -> str:
        """Connect, STARTTLS, log in and say NOOP: everything but sending."""
        return await asyncio.to_thread(self._check)

    def _check(self) -> str:
        try:
            with self._session() as smtp:
                code, _ = smtp.noop()
                return f"{self._host}:{self._port} answered NOOP with {code}"
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelError(f"smtp {self._host}:{self._port}: {exc}", retryable=True) from None

    def _send(self, msg: EmailMessage) -> None:
        try:
            with self._session() as smtp:
                smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            raise ChannelError(f"smtp login refused ({exc.smtp_code})") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise ChannelError(f"smtp refused the recipient: {list(exc.recipients)}") from None
        except smtplib.SMTPResponseException as exc:
            raise ChannelError(
                f"smtp {exc.smtp_code}: {exc.smtp_error!r}", retryable=400 <= exc.smtp_code < 500
            ) from None
        except (smtplib.SMTPConnectError, ConnectionRefusedError) as exc:
            raise ChannelError(f"smtp {self._host}:{self._port}: {exc}", retryable=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            # Disconnected or timed out mid-session: the message may or may not have been taken.
            raise ChannelError(f"smtp {self._host}:{self._port}: {exc}", maybe_sent=True) from None

    async def send(self, *, to: str, to_name: str, subject: str, body: str, key: str) -> Receipt:
        done = self._done.get(key) if self._done else None
        if done:
            return Receipt(provider_id=done, detail="already sent")
        base, secret = self._one_click
        try:
            one_click = one_click_url(base, key, secret) if base and secret else None
        except ValueError as exc:
            raise ChannelError(f"email not built, nothing sent: {exc}") from None
        try:
            msg = build_message(
                sender=self.sender,
                sender_name=self._name,
                to=to,
                to_name=to_name,
                subject=subject,
                body=body,
                key=key,
                unsubscribe=self._unsubscribe,
                one_click=one_click,
            )
        except MessageError as exc:
            raise ChannelError(f"email not built, nothing sent: {exc}") from None
        await asyncio.to_thread(self._send, msg)
        if self._done:
            self._done.put(key, str(msg["Message-ID"]))
        return Receipt(provider_id=str(msg["Message-ID"]), detail=f"accepted by {self._host}")
