"""The embedded channels: a LinkedIn action log and an email outbox of `.eml` files.

Both refuse to perform one idempotency key twice, as a careful provider would. Their stamps
(an action's time, a message's Date) come from the injected clock.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from gtm.domain.identity import profile_url
from gtm.domain.models import Receipt
from tools.sqlite import compact, connect
from tools.suppression import normalise

__all__ = ["LocalLinkedInOutbox", "LocalEmailOutbox", "LinkedInAction"]


class LinkedInAction(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    key: str
    kind: Literal["visit", "connect", "message"]
    profile_url: str
    text: str
    sender: str
    at: datetime


def _profile(url: str) -> str:
    """The one form of a profile URL (`gtm.domain.identity.profile_url`), so an erasure asked
    for under any spelling finds the actions logged under another."""
    return profile_url(url) or url.strip().lower().split("?", 1)[0].rstrip("/")


class LocalLinkedInOutbox:
    """Records every LinkedIn action instead of performing it."""

    live = False

    def __init__(
        self,
        path: Path | str,
        *,
        sender: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sender = sender
        self._path = Path(path)
        self._clock = clock
        self._db = connect(
            path,
            "CREATE TABLE IF NOT EXISTS actions (n INTEGER PRIMARY KEY AUTOINCREMENT,"
            " key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, profile_url TEXT NOT NULL,"
            " text TEXT NOT NULL, sender TEXT NOT NULL, at TEXT NOT NULL);",
        )

    def close(self) -> None:
        self._db.close()

    async def aclose(self) -> None:
        self.close()

    async def check(self) -> str:
        return f"action log in {self._path.parent}"

    def _do(self, kind: str, profile_url: str, text: str, key: str) -> Receipt:
        if not profile_url:
            from tools.channels import ChannelError

            raise ChannelError(f"{kind}: no LinkedIn profile URL")
        self._db.execute(
            "INSERT OR IGNORE INTO actions (key, kind, profile_url, text, sender, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (key, kind, profile_url, text, self.sender, self._clock().isoformat()),
        )
        r = self._db.execute("SELECT n FROM actions WHERE key = ?", (key,)).fetchone()
        return Receipt(provider_id=f"li_{r['n']}", detail=kind)

    async def visit(self, profile_url: str, *, key: str) -> Receipt:
        return self._do("visit", profile_url, "", key)

    async def connect(self, profile_url: str, note: str, *, key: str) -> Receipt:
        return self._do("connect", profile_url, note, key)

    async def message(self, profile_url: str, text: str, *, key: str) -> Receipt:
        return self._do("message", profile_url, text, key)

    async def erase_person(self, emails: Sequence[str], urls: Sequence[str]) -> int | str:
        """Delete every action on the person's profiles; count them."""
        want = {_profile(u) for u in urls}
        n = 0
        for r in self._db.execute("SELECT n, profile_url FROM actions").fetchall():
            if _profile(r["profile_url"]) in want:
                n += self._db.execute("DELETE FROM actions WHERE n = ?", (r["n"],)).rowcount
        compact(self._db)
        return n

    def actions(self) -> list[LinkedInAction]:
        return [
            LinkedInAction(
                id=f"li_{r['n']}",
                key=r["key"],
                kind=r["kind"],
                profile_url=r["profile_url"],
                text=r["text"],
                sender=r["sender"],
                at=datetime.fromisoformat(r["at"]),
            )
            for r in self._db.execute("SELECT * FROM actions ORDER BY n")
        ]


class LocalEmailOutbox:
    """Writes one RFC 5322 `.eml` file per message into a directory."""

    live = False

    def __init__(
        self,
        directory: Path,
        *,
        sender: str,
        sender_name: str = "",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sender = sender
        self._sender_name = sender_name
        self._clock = clock
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def aclose(self) -> None:
        pass

    async def check(self) -> str:
        return f".eml outbox in {self.directory}"

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.eml"

    async def send(self, *, to: str, to_name: str, subject: str, body: str, key: str) -> Receipt:
        path = self._path(key)
        if path.exists():
            return Receipt(provider_id=self._message_id(path), detail="already written")
        msg = EmailMessage()
        msg["From"] = formataddr((self._sender_name, self.sender))
        msg["To"] = formataddr((to_name, to))
        msg["Subject"] = subject
        msg["Date"] = format_datetime(self._clock())
        msg["Message-ID"] = make_msgid(domain=self.sender.rsplit("@", 1)[-1])
        msg["X-GTM-Idempotency-Key"] = key
        msg.set_content(body)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(bytes(msg))
        os.replace(tmp, path)
        return Receipt(provider_id=str(msg["Message-ID"]), detail=str(path.name))

    @staticmethod
    def _message_id(path: Path) -> str:
        from email import message_from_bytes

        return str(message_from_bytes(path.read_bytes())["Message-ID"])

    async def erase_person(self, emails: Sequence[str], urls: Sequence[str]) -> int | str:
        """Delete every message to the person's addresses; count them."""
        from email import message_from_bytes
        from email.utils import parseaddr

        want = {normalise("email", e) for e in emails}
        n = 0
        for path in self.messages():
            to = parseaddr(str(message_from_bytes(path.read_bytes())["To"]))[1]
            if normalise("email", to) in want:
                path.unlink()
                n += 1
        return n

    def messages(self) -> list[Path]:
        return sorted(self.directory.glob("*.eml"))
