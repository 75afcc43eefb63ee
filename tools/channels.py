"""The outreach seams: LinkedIn actions and email.

Local outboxes (`tools.local_outbox`) are the embedded default; Dux-Soup and SMTP clients
implement the same Protocols. `key` is the outbox idempotency key: a provider that supports
idempotency gets it; the local twins refuse to perform the same key twice.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from gtm.domain.models import Receipt
from tools.provider import HoldsPeople

__all__ = ["LinkedInChannel", "EmailChannel", "ChannelError"]


class ChannelError(RuntimeError):
    """A provider refused or failed an action.

    `retryable`: the action certainly did not happen and trying later may work (busy, refused
    connection). `maybe_sent`: the call broke off after the provider may have acted (timeout,
    5xx on a send); such an action must never be repeated automatically.
    """

    def __init__(self, message: str, *, retryable: bool = False, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable and not maybe_sent
        self.maybe_sent = maybe_sent


@runtime_checkable
class LinkedInChannel(HoldsPeople, Protocol):
    sender: str
    """The sender seat (LinkedIn account) actions are performed as."""
    live: bool
    """True when actions reach real people (pacing applies); False for the local twins."""

    async def visit(self, profile_url: str, *, key: str) -> Receipt: ...

    async def connect(self, profile_url: str, note: str, *, key: str) -> Receipt: ...

    async def message(self, profile_url: str, text: str, *, key: str) -> Receipt: ...


@runtime_checkable
class EmailChannel(HoldsPeople, Protocol):
    sender: str
    """The From address."""
    live: bool

    async def send(
        self, *, to: str, to_name: str, subject: str, body: str, key: str
    ) -> Receipt: ...
