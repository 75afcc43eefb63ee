"""Alerts for a human: escalations, red flags and errors.

Slack incoming webhooks in production; a JSON-lines file in the data directory by default.
A webhook post is not idempotent, so it is retried only on 429 (Slack did not post it).

An alert that cannot be delivered never stops the work that raised it: Slack alerts are queued
first (`AlertQueue`), posted oldest first, and whatever Slack did not take stays queued (with a
warning in the log) until the next alert or the next run flushes the queue. When the webhook
fails (down, revoked, rate-limited, the channel archived) a flush stops at the first alert it
cannot post; when Slack refuses one message as a bad request (HTTP 400: too large, a payload it
cannot read), the flush keeps that one and goes on with the next, so one message Slack will
never take does not hold back the escalations queued behind it. The queue is a
SQLite file of the data directory by default (`SqliteAlertQueue`), or, with GTM_DATABASE_URL,
a table every machine shares (`tools.pg_alerts.PgAlertQueue`), so an alert a worker could not
post is retried by the others even when that worker is gone.

Each queued alert is posted by one flush at a time: the flush claims it (`AlertQueue.claim`),
posts it while holding the claim, and deletes it once Slack took it, or records Slack's refusal
(attempts, last error) and keeps it. A crash between Slack's answer and the delete leaves the
alert queued, so it is posted again by the next flush: at least once, never lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol, cast, runtime_checkable

from tools.http import HttpClient, ProviderError, ValidationError
from tools.provider import Provider
from tools.sqlite import connect

__all__ = [
    "AlertKind",
    "AlertQueue",
    "Alerts",
    "Claim",
    "LocalAlerts",
    "SlackAlerts",
    "SqliteAlertQueue",
]

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

    def redact_waiting(self, redact: Callable[[str], str]) -> int:
        """Rewrite the text of every alert kept for a later delivery with `redact` (an erasure,
        `gtm forget`: a queued alert must not name the person when it goes out); returns how
        many changed. An alert already delivered is the channel's, not ours."""
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

    def redact_waiting(self, redact: Callable[[str], str]) -> int:
        return 0  # nothing waits: `alerts.jsonl` is where alerts are delivered (and `gtm
        # forget` redacts the data directory's .jsonl files as it does the logs)

    async def aclose(self) -> None:
        pass


@dataclass
class Claim:
    """The oldest queued alert a flush holds; the flush says what became of it."""

    seq: int
    kind: AlertKind
    text: str
    posted: bool = False
    """Slack took it: the queue deletes it when the claim ends."""
    error: str | None = None
    """Slack refused it: the queue counts the attempt and keeps this line with it."""

    def done(self) -> None:
        self.posted = True

    def refused(self, error: str) -> None:
        self.error = error[:300]


class AlertQueue(Protocol):
    """Where Slack alerts wait to be posted (a file of the machine, or a shared table)."""

    def put(self, at: datetime, kind: AlertKind, text: str) -> None:
        """Queue one alert, after every alert queued before it."""
        ...

    def claim(self, after: int = 0) -> AbstractContextManager[Claim | None]:
        """The oldest alert after sequence number `after` that no other flush holds (None:
        none), held until the block ends; then deleted if `Claim.done`, its attempt recorded
        if `Claim.refused`, else kept as it was (the block raised)."""
        ...

    def waiting(self) -> int:
        """How many alerts are queued (those another flush holds included)."""
        ...

    def redact(self, redact: Callable[[str], str]) -> int:
        """Rewrite every queued alert's text with `redact` (waiting for one a flush holds: it
        is then posted or kept); how many changed."""
        ...

    def close(self) -> None: ...


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


class SqliteAlertQueue:
    """The queue in a SQLite file of this machine (`alerts.sqlite`; `:memory:` for none). A
    claim holds no lock, as before the queue had a Postgres twin: one `SlackAlerts` flushes one
    at a time, but two `gtm` processes of one machine flushing at the same moment could both
    post its oldest alert."""

    def __init__(self, path: Path | str = ":memory:") -> None:
        self._db = connect(path, _QUEUE)

    def put(self, at: datetime, kind: AlertKind, text: str) -> None:
        self._db.execute(
            "INSERT INTO pending (at, kind, text) VALUES (?, ?, ?)", (at.isoformat(), kind, text)
        )

    @contextmanager
    def claim(self, after: int = 0) -> Iterator[Claim | None]:
        row = self._db.execute(
            "SELECT seq, kind, text FROM pending WHERE seq > ? ORDER BY seq LIMIT 1", (after,)
        ).fetchone()
        if row is None:
            yield None
            return
        claim = Claim(int(row["seq"]), cast(AlertKind, row["kind"]), str(row["text"]))
        yield claim
        if claim.posted:
            self._db.execute("DELETE FROM pending WHERE seq = ?", (claim.seq,))
        elif claim.error is not None:
            self._db.execute(
                "UPDATE pending SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                (claim.error, claim.seq),
            )

    def waiting(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM pending").fetchone()[0])

    def redact(self, redact: Callable[[str], str]) -> int:
        changed = [
            (new, seq)
            for seq, text in self._db.execute("SELECT seq, text FROM pending").fetchall()
            if (new := redact(text)) != text
        ]
        self._db.executemany("UPDATE pending SET text = ? WHERE seq = ?", changed)
        return len(changed)

    def close(self) -> None:
        self._db.close()


class SlackAlerts:
    """Posts to a Slack incoming webhook (`{"text": ...}`), through `queue`: an `AlertQueue`,
    or the path of a SQLite file to keep one in."""

    def __init__(
        self,
        client: HttpClient,
        path: str,
        *,
        queue: Path | str | AlertQueue = ":memory:",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._http = client
        self._path = path
        self._queue = SqliteAlertQueue(queue) if isinstance(queue, Path | str) else queue
        self._clock = clock
        self._flushing = asyncio.Lock()

    @classmethod
    def open(
        cls,
        webhook_url: str,
        *,
        timeout: float = 10.0,
        queue: Path | str | AlertQueue = ":memory:",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> SlackAlerts:
        scheme, _, rest = webhook_url.partition("://")
        host, _, path = rest.partition("/")
        client = HttpClient(
            "slack", f"{scheme}://{host}", secrets=[path], rate=(1, 1.0), timeout=timeout
        )
        return cls(client, "/" + path, queue=queue, clock=clock)

    async def aclose(self) -> None:
        try:
            await self._http.aclose()
        finally:
            self._queue.close()

    async def alert(self, kind: AlertKind, text: str) -> None:
        self._queue.put(self._clock(), kind, text)
        await self.flush()

    async def flush(self) -> int:
        """Post what is queued, oldest first, and keep what Slack does not take: a message it
        refuses as a bad request (400) is kept and passed over, any other failure stops the
        flush. One flush at a time in this process; flushes elsewhere skip the alert this one
        holds (and this one theirs), so two machines post each alert once, in parallel.
        Returns how many alerts are left queued: 0 once nothing is left for this flush
        (another may still be posting the last ones)."""
        async with self._flushing:
            after, refused = 0, 0
            while True:
                with self._queue.claim(after) as claim:
                    if claim is None:
                        break
                    body = {"text": f"{_ICON[claim.kind]} *{claim.kind}*: {claim.text}"}
                    try:
                        await self._http.request("POST", self._path, json=body, idempotent=False)
                    except ProviderError as exc:  # the message is already scrubbed of the webhook
                        claim.refused(str(exc))
                        failure: ProviderError | None = exc
                    else:
                        claim.done()
                        failure = None
                    after = claim.seq
                if isinstance(failure, ValidationError) and failure.status == 400:
                    refused += 1
                    log.warning(
                        "Slack refused a queued %s alert, kept; posting the ones after it: %s",
                        claim.kind,
                        failure,
                    )
                elif failure is not None:
                    left = self._queue.waiting()
                    log.warning(
                        "Slack did not take %d alert(s), kept for the next try: %s", left, failure
                    )
                    return left
            return self._queue.waiting() if refused else 0

    def redact_waiting(self, redact: Callable[[str], str]) -> int:
        return self._queue.redact(redact)

    async def check(self) -> str:
        """Reach the webhook without posting: an empty payload is refused with `no_text`."""
        try:
            await self._http.request("POST", self._path, json={}, idempotent=False)
        except ValidationError as exc:
            if "no_text" in str(exc) or "invalid_payload" in str(exc):
                return "webhook reachable and valid (empty test payload refused, nothing posted)"
            raise
        return "webhook accepted an empty payload (unexpected, but reachable)"
