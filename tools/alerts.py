"""Alerts for a human: escalations, red flags and errors.

Slack incoming webhooks in production; a JSON-lines file in the data directory by default.
A webhook post is not idempotent, so it is retried only on 429 (Slack did not post it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from tools.http import HttpClient, ValidationError
from tools.provider import Provider

__all__ = ["Alerts", "AlertKind", "LocalAlerts", "SlackAlerts"]

AlertKind = Literal["escalation", "red_flag", "error"]
_ICON = {"escalation": ":rotating_light:", "red_flag": ":triangular_flag_on_post:", "error": ":x:"}


@runtime_checkable
class Alerts(Provider, Protocol):
    async def alert(self, kind: AlertKind, text: str) -> None: ...


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

    async def check(self) -> str:
        return f"{self.path.name} in {self.path.parent}"

    async def aclose(self) -> None:
        pass


class SlackAlerts:
    """Posts to a Slack incoming webhook (`{"text": ...}`)."""

    def __init__(self, client: HttpClient, path: str) -> None:
        self._http = client
        self._path = path

    @classmethod
    def open(cls, webhook_url: str, *, timeout: float = 10.0) -> SlackAlerts:
        scheme, _, rest = webhook_url.partition("://")
        host, _, path = rest.partition("/")
        client = HttpClient(
            "slack", f"{scheme}://{host}", secrets=[path], rate=(1, 1.0), timeout=timeout
        )
        return cls(client, "/" + path)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def alert(self, kind: AlertKind, text: str) -> None:
        await self._http.request(
            "POST", self._path, json={"text": f"{_ICON[kind]} *{kind}*: {text}"}, idempotent=False
        )

    async def check(self) -> str:
        """Reach the webhook without posting: an empty payload is refused with `no_text`."""
        try:
            await self._http.request("POST", self._path, json={}, idempotent=False)
        except ValidationError as exc:
            if "no_text" in str(exc) or "invalid_payload" in str(exc):
                return "webhook reachable and valid (empty test payload refused, nothing posted)"
            raise
        return "webhook accepted an empty payload (unexpected, but reachable)"
