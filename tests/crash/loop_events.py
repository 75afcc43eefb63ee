"""What comes back in the crash harness's loop trials: a seeded plan of reactions, the events a
simulated Dux-Soup derives from it, the simulated clock, and the scripted reply classifier.

The plan says, per person, how many days after their connection request they accept, reply or
opt out; the events themselves are derived from the LinkedIn action log (when the connection
request really went out), so every process that derives them gets the same event, with the same
key and time, however often it was killed: that is what a webhook re-delivery looks like.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gtm.domain.events import Event
from gtm.domain.identity import profile_url
from tests.support.openai_server import tool_call_response, write_from_facts

__all__ = [
    "START",
    "RETRY_WINDOW",
    "REPLIES",
    "SimClock",
    "write_plan",
    "load_plan",
    "due_events",
    "write_atomic",
    "classify_or_write",
]

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
"""The simulated campaign starts on a Monday morning."""
RETRY_WINDOW = timedelta(days=2)
"""An event marked `retries` is delivered again on every round for this long after it is due."""

REPLIES: dict[str, tuple[list[str], list[tuple[str, str]]]] = {
    "Happy to chat, could we set up a call next Tuesday?": (
        ["interested", "meeting_request"],
        [("interested", "Happy to chat"), ("meeting_request", "set up a call next Tuesday")],
    ),
    "Not for us right now, thanks.": (["not_interested"], [("not_interested", "Not for us")]),
    "Please remove me from your list.": (["opt_out"], [("opt_out", "remove me from your list")]),
    "We use Pinecone today and the filters are slow for us.": (
        ["competitor_mentioned", "product_feedback"],
        [("competitor_mentioned", "We use Pinecone"), ("product_feedback", "filters are slow")],
    ),
}
"""Reply texts the plan draws from, and what the scripted classifier answers for each."""


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text`, durably: a kill leaves the old file or the new, never half."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class SimClock:
    """Simulated time, kept in a file so successive (killed) processes agree and it only moves
    forward: a process starts an hour after the last time written (no process of the harness
    lives an hour), runs on the real clock from there, and `step` jumps it ahead, durably."""

    def __init__(self, path: Path) -> None:
        self._path = path
        last = datetime.fromisoformat(path.read_text().strip()) if path.exists() else START
        self._set(last + timedelta(hours=1))

    def _set(self, base: datetime) -> None:
        write_atomic(self._path, base.isoformat())
        self._base, self._mono = base, _monotonic()

    def __call__(self) -> datetime:
        return self._base + timedelta(seconds=_monotonic() - self._mono)

    def step(self, by: timedelta) -> datetime:
        self._set(self() + by)
        return self._base

    def day(self) -> float:
        return (self() - START) / timedelta(days=1)


def _monotonic() -> float:
    import time

    return time.monotonic()


def write_plan(path: Path, accounts: Path, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    """Seeded reactions per profile URL: many accept, some reply, a few opt out; some events
    are delivered again (`retries`), half come through the drop folder and `sync`."""
    plan: dict[str, list[dict[str, Any]]] = {}
    with accounts.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            url = profile_url(row["linkedin_url"]) or row["linkedin_url"]
            out: list[dict[str, Any]] = []
            if rng.random() < 0.75:
                out.append({"kind": "connection_accepted", "days": rng.uniform(0.2, 3.5)})
                if rng.random() < 0.5:  # before, between or after the two follow-ups, or
                    # (3 days after the accept) while the first one waits for its approval
                    days = rng.uniform(0.5, 10.0) if rng.random() < 0.6 else rng.uniform(2.9, 3.1)
                    out.append(
                        {
                            "kind": "message_received",
                            "days": days,
                            "after": "connection_accepted",
                            "text": rng.choice(list(REPLIES)),
                        }
                    )
            if rng.random() < 0.08:
                out.append({"kind": "unsubscribe", "days": rng.uniform(1.0, 9.0)})
            for e in out:
                e["retries"] = rng.random() < 0.3
                e["via"] = "folder" if rng.random() < 0.5 else "ingest"
            if out:
                plan[url] = out
    path.write_text(json.dumps(plan, indent=1))
    return plan


def load_plan(path: Path) -> dict[str, list[dict[str, Any]]]:
    plan: dict[str, list[dict[str, Any]]] = json.loads(path.read_text())
    return plan


def _key(kind: str, url: str) -> str:
    return f"dux:{kind}:{hashlib.sha256(url.encode()).hexdigest()[:16]}"


def due_events(
    plan: dict[str, list[dict[str, Any]]],
    connects: dict[str, datetime],
    now: datetime,
    since: datetime,
) -> list[tuple[Event, str]]:
    """The events to deliver now, each with its path (`ingest` or `folder`): those that
    happened after `since` (the last delivery that finished) up to `now`, and those marked
    `retries` again for `RETRY_WINDOW`. `connects` maps a profile to when the connection
    request was sent; nothing happens for a person never asked."""
    out = []
    for url, reactions in plan.items():
        sent = connects.get(url)
        if sent is None:
            continue
        at_of: dict[str, datetime] = {}
        for r in reactions:
            anchor = at_of.get(r.get("after", ""), sent)
            at = anchor + timedelta(days=r["days"])
            at_of[r["kind"]] = at
            window = since - RETRY_WINDOW if r["retries"] else since
            if not window < at <= now:
                continue
            ev = Event(
                key=_key(r["kind"], url),
                source="duxsoup",
                kind=r["kind"],
                channel="linkedin",
                at=at,
                linkedin_url=url,
                text=r.get("text", ""),
            )
            out.append((ev, r["via"]))
    return sorted(out, key=lambda p: p[0].at)


def classify_or_write(request: dict[str, Any]) -> dict[str, Any]:
    """The scripted model: answers the reply classifier from `REPLIES` (quotes copied from the
    reply), and every draft as `write_from_facts` does."""
    name = request.get("tool_choice", {}).get("function", {}).get("name")
    if name != "ReplyAnswer":
        return write_from_facts(request)
    user = request["messages"][-1]["content"]
    for text, (signals, quotes) in REPLIES.items():
        if re.search(re.escape(text), user):
            evidence = [{"signal": s, "quote": q} for s, q in quotes]
            return tool_call_response(name, {"signals": signals, "evidence": evidence})
    return tool_call_response(name, {"signals": [], "evidence": []})
