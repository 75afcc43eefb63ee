"""In-memory twins of the CRM and channels, for tests. Same behaviour, nothing on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gtm.domain.models import Receipt
from tools.local_crm import LocalCRM
from tools.local_outbox import LocalLinkedInOutbox

__all__ = ["InMemoryCRM", "InMemoryLinkedIn", "InMemoryEmail"]


class InMemoryCRM(LocalCRM):
    """The local CRM on an in-memory SQLite database."""

    def __init__(self) -> None:
        super().__init__(Path(":memory:"))

    async def check(self) -> str:
        return "SQLite CRM in memory"


class InMemoryLinkedIn(LocalLinkedInOutbox):
    def __init__(self, *, sender: str = "test-seat") -> None:
        super().__init__(":memory:", sender=sender)

    async def check(self) -> str:
        return "action log in memory"


class InMemoryEmail:
    """Keeps sent messages in a list; the same key twice returns the first receipt."""

    live = False

    def __init__(self, *, sender: str = "test@example.com") -> None:
        self.sender = sender
        self.sent: dict[str, tuple[Receipt, dict[str, str]]] = {}

    async def check(self) -> str:
        return f"{len(self.sent)} message(s) in memory"

    async def aclose(self) -> None:
        pass

    async def erase_person(self, emails: Sequence[str], urls: Sequence[str]) -> int | str:
        want = {e.strip().lower() for e in emails}
        gone = [k for k, (_, msg) in self.sent.items() if msg["to"].strip().lower() in want]
        for k in gone:
            del self.sent[k]
        return len(gone)

    async def send(self, *, to: str, to_name: str, subject: str, body: str, key: str) -> Receipt:
        if key not in self.sent:
            receipt = Receipt(provider_id=f"<{len(self.sent) + 1}.{key[:8]}@memory>")
            self.sent[key] = (
                receipt,
                {"to": to, "to_name": to_name, "subject": subject, "body": body},
            )
        return self.sent[key][0]
