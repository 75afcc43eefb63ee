"""Alerts for a human: escalations, red flags and errors.

Slack incoming webhooks in production; a JSON-lines file in the data directory by default.
A webhook post is not idempotent, so it is retried only on 429 (Slack did not post it).

An alert that cannot be delivered never stops the work that raised it: Slack alerts are queued
in SQLite first, posted oldest first, and whatever Slack did not take stays queued (with a
warning in the log) until the next alert or the next run opens the providers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from tools.http import HttpClient, ProviderError, ValidationError
from tools.provider import Provider
from tools.sqlite import connect

__all__ = ["Alerts", "AlertKind", "LocalAlerts", "SlackAlerts"]

AlertKind = Literal["escalation", "red_flag", "error"]
_ICON = {"escalation": ":rotating_light:", "red_flag": ":triangular_flag_on_post:", "error": ":x:"}
log = logging.getLogger("gtm.alerts")


@runtime_checkable
class Alerts(Provider, Protocol):
    async def alert(self, kind: AlertKind, text: str) -> None:
        """Deliver, or keep for a later delivery; never raise for a delivery failure."""
        ...

    async def flush(self) -> int:
        """Try again to deliver what is kept; returns how many are still waiting."""
        ...


class LocalAlerts:
    """The embedded default: one JSON line per alert in `alerts.jsonl`, stamped by `clock`."""

    def __init__(
        self, path: Path, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.path = path
        self._clock = clock

    async def alert(self, kind: AlertKind, text: str) -> None:
        line = {"at": self._clock().isoformat(), "kind": kind, "text": text}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")

    async def flush(self) -> int:
        return 0

    async def check(self) -> str:
        return f"{self.path.name} in {self.path.parent}"

    async def aclose(self) -> None:
        pass


_QUEUE = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
"""


class SlackAlerts:
    """Posts to a Slack incoming webhook (`{"text": ...}`), through a queue kept in `queue`."""

    def __init__(
        self,
        client: HttpClient,
        path: str,
        *,
        queue: Path | str = ":memory:",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._http = client
        self._path = path
        self._db = connect(queue, _QUEUE)
        self._clock = clock

    @classmethod
    def open(
        cls,
        webhook_url: str,
        *,
        timeout: float = 10.0,
        queue: Path | str = ":memory:",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> SlackAlerts:
        scheme, _, rest = webhook_url.partition("://")
        host, _, path = rest.partition("/")
        client = HttpClient(
            "slack", f"{scheme}://{host}", secrets=[path], rate=(1, 1.0), timeout=timeout
        )
        return cls(client, "/" + path, queue=queue, clock=clock)

    async def aclose(self) -> None:
        await self._http.aclose()
        self._db.close()

    async def alert(self, kind: AlertKind, text: str) -> None:
        self._db.execute(
            "INSERT INTO pending (at, kind, text) VALUES (?, ?, ?)",
            (self._clock().isoformat(), kind, text),
        )
        await self.flush()

    async def flush(self) -> int:
        """Post what is queued, oldest first; stop at the first failure and keep the rest."""
        rows = self._db.execute("SELECT seq, kind, text FROM pending ORDER BY seq").fetchall()
        for n, row in enumerate(rows):
            body = {"text": f"{_ICON[row['kind']]} *{row['kind']}*: {row['text']}"}
            try:
                await self._http.request("POST", self._path, json=body, idempotent=False)
            except ProviderError as exc:  # the message is already scrubbed of the webhook
                self._db.execute(
                    "UPDATE pending SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                    (str(exc)[:300], row["seq"]),
                )
                log.warning(
                    "Slack did not take %d alert(s), kept for the next try: %s", len(rows) - n, exc
                )
                return len(rows) - n
            self._db.execute("DELETE FROM pending WHERE seq = ?", (row["seq"],))
        return 0

    async def check(self) -> str:
        """Reach the webhook without posting: an empty payload is refused with `no_text`."""
        try:
            await self._http.request("POST", self._path, json={}, idempotent=False)
        except ValidationError as exc:
            if "no_text" in str(exc) or "invalid_payload" in str(exc):
                return "webhook reachable and valid (empty test payload refused, nothing posted)"
            raise
        return "webhook accepted an empty payload (unexpected, but reachable)"
