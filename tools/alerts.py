"""Alerts for a human: escalations, red flags and errors.

Slack incoming webhooks in production; a JSON-lines file in the data directory by default.
A webhook post is not idempotent, so it is retried only on 429 (Slack did not post it).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from tools.http import HttpClient, ValidationError

__all__ = ["Alerts", "AlertKind", "LocalAlerts", "SlackAlerts"]

AlertKind = Literal["escalation", "red_flag", "error"]
_ICON = {"escalation": ":rotating_light:", "red_flag": ":triangular_flag_on_post:", "error": ":x:"}


@runtime_checkable
class Alerts(Protocol):
    async def alert(self, kind: AlertKind, text: str) -> None: ...


class LocalAlerts:
    """The embedded default: one JSON line per alert in `alerts.jsonl`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def alert(self, kind: AlertKind, text: str) -> None:
        line = {"at": datetime.now(UTC).isoformat(), "kind": kind, "text": text}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")

    def close(self) -> None:
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

    def close(self) -> None:
        pass

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
