"""Model token use per campaign and model, kept in one SQLite file across runs.

Written by the telemetry callback after every model call and read by `gtm status`. It holds
counts only: no prompt, reply, person or key ever reaches it. With `GTM_DATABASE_URL` the totals
live in Postgres instead (`tools.pg_usage`), added to by the same upsert (`USAGE_ADD`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from tools.sqlite import connect

__all__ = ["USAGE_ADD", "Usage", "UsageStore"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS usage (campaign TEXT NOT NULL, model TEXT NOT NULL,"
    " calls INTEGER NOT NULL DEFAULT 0, prompt_tokens INTEGER NOT NULL DEFAULT 0,"
    " completion_tokens INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (campaign, model));"
)

USAGE_ADD = (
    "INSERT INTO usage (campaign, model, calls, prompt_tokens, completion_tokens)"
    " VALUES (?, ?, 1, ?, ?) ON CONFLICT (campaign, model) DO UPDATE SET"
    " calls = usage.calls + 1, prompt_tokens = usage.prompt_tokens + excluded.prompt_tokens,"
    " completion_tokens = usage.completion_tokens + excluded.completion_tokens"
)
"""Count one call into the (campaign, model) row, in one statement: an atomic upsert that both
SQLite and Postgres run (`?` placeholders; Postgres takes them as `%s`)."""


@dataclass(frozen=True)
class Usage:
    """What one campaign spent on one model, summed over every run."""

    campaign: str
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int


class UsageStore:
    """Running totals of model calls and tokens; several processes may add to one file."""

    def __init__(self, path: Path | str) -> None:
        # Model calls end on whichever thread LangChain runs a callback on, and the workspace's
        # finalizer may close it from another: one connection for all, one call at a time.
        self._db = connect(path, _SCHEMA, any_thread=True)
        self._lock = threading.Lock()

    def add(self, campaign: str, model: str, *, prompt_tokens: int, completion_tokens: int) -> None:
        """Count one model call (an atomic upsert, so concurrent writers never lose a call)."""
        with self._lock:
            self._add(campaign, model, prompt_tokens, completion_tokens)

    def _add(self, campaign: str, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        self._db.execute(
            USAGE_ADD,
            (campaign, model, max(0, prompt_tokens), max(0, completion_tokens)),
        )

    def for_campaign(self, campaign: str) -> list[Usage]:
        """The campaign's totals, one per model, by model name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT campaign, model, calls, prompt_tokens, completion_tokens FROM usage"
                " WHERE campaign = ? ORDER BY model",
                (campaign,),
            ).fetchall()
        return [Usage(*tuple(r)) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
