"""Dux-Soup remote control: queue LinkedIn visits, connection requests and messages.

Every request is signed: `X-Dux-Signature` is the base64 HMAC-SHA1, keyed with the user's
remote-control key, of the exact JSON body sent (or of the URL, for a GET). The body carries
`targeturl` (the URL it is posted to), `timestamp` (ms), `userid`, `command` and `params`.

Queuing is not performing: Dux-Soup's robot works through the queue in the user's browser at
its own pace. The receipt is the queue's `messageid`. Dux-Soup has no idempotency key, so a
key ledger refuses to queue the same key twice (a file, or with GTM_DATABASE_URL a table every
worker shares, `gtm.app.providers`); the outbox is the first guard. A
5xx on a queue call is never retried blindly (the action may be queued).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gtm.domain.models import Receipt
from tools.channels import ChannelError
from tools.http import HttpClient, ProviderError, UnavailableError
from tools.sqlite import KeyStore, key_ledger

__all__ = ["DuxSoupLinkedIn", "sign"]


def sign(key: str, message: bytes) -> str:
    return base64.b64encode(hmac.new(key.encode(), message, hashlib.sha1).digest()).decode()


class DuxSoupLinkedIn:
    live = True

    def __init__(
        self,
        client: HttpClient,
        *,
        user_id: str,
        key: str,
        ledger: Path | KeyStore,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._http = client
        self._user = user_id
        self._key = key
        self._done = key_ledger(ledger)
        self._clock_ms = clock_ms
        self.sender = f"duxsoup:{user_id}"

    @classmethod
    def open(
        cls,
        base_url: str,
        user_id: str,
        key: str,
        *,
        ledger: Path | KeyStore,
        timeout: float = 20.0,
    ) -> DuxSoupLinkedIn:
        client = HttpClient(
            "duxsoup", base_url.rstrip("/"), secrets=[key], rate=(1, 1.0), timeout=timeout
        )
        return cls(client, user_id=user_id, key=key, ledger=ledger)

    async def aclose(self) -> None:
        await self._http.aclose()
        self._done.close()

    async def erase_person(self, emails: Sequence[str], urls: Sequence[str]) -> int | str:
        """Nothing to erase: the key ledger holds hashed outbox keys and queue ids only, never a
        profile. (Dux-Soup's own queue and LinkedIn keep what was sent.)"""
        return 0

    def _url(self, path: str) -> str:
        return f"{self._http.base_url}/{self._user}/{path}"

    async def _queue(self, command: str, profile: str, key: str, **params: str) -> Receipt:
        done = self._done.get(key)
        if done:
            return Receipt(provider_id=done, detail="queued")
        url = self._url("queue")
        body = {
            "command": command,
            "targeturl": url,
            "userid": self._user,
            "timestamp": self._clock_ms(),
            "params": {"profile": profile, **params},
        }
        raw = json.dumps(body, separators=(",", ":")).encode()
        try:
            resp = await self._http.request(
                "POST",
                url,
                content=raw,
                headers={
                    "Content-Type": "application/json",
                    "X-Dux-Signature": sign(self._key, raw),
                },
                idempotent=False,
            )
        except ProviderError as exc:
            maybe = bool(getattr(exc, "maybe_applied", False))
            raise ChannelError(
                str(exc),
                retryable=exc.status == 429 or isinstance(exc, UnavailableError),
                maybe_sent=maybe,
            ) from exc
        message_id = str(resp.json().get("messageid") or "")
        if not message_id:
            raise ChannelError(f"duxsoup: queue answered without a messageid: {resp.text[:200]}")
        self._done.put(key, message_id)
        return Receipt(provider_id=message_id, detail="queued")

    async def visit(self, profile_url: str, *, key: str) -> Receipt:
        return await self._queue("visit", profile_url, key)

    async def connect(self, profile_url: str, note: str, *, key: str) -> Receipt:
        return await self._queue("connect", profile_url, key, messagetext=note)

    async def message(self, profile_url: str, text: str, *, key: str) -> Receipt:
        return await self._queue("message", profile_url, key, messagetext=text)

    async def check(self) -> str:
        return f"signed request accepted; {await self.queue_size()} action(s) in the queue"

    async def queue_size(self) -> int:
        url = self._url("queue/size")
        resp = await self._http.request(
            "GET", url, headers={"X-Dux-Signature": sign(self._key, url.encode())}, idempotent=True
        )
        data: Any = resp.json()
        return int(data.get("size", data) if isinstance(data, dict) else data)
