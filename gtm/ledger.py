"""The campaign ledger: one row per account thread, for listing, numbering and claiming drafts.

The graph's checkpoints are the source of truth for a thread's state; the ledger is an index over
them (so `gtm inbox` need not scan every checkpoint) plus the atomic claim that stops two
reviewers, or a double click, from deciding one draft twice.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from gtm.models import Account, AccountStatus, Channel, Decision
from tools.sqlite import compact, connect, where

__all__ = ["Ledger", "ThreadRow", "thread_id_for"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign TEXT NOT NULL,
    account_id TEXT NOT NULL,
    thread_id TEXT NOT NULL UNIQUE,
    company TEXT NOT NULL,
    channel TEXT NOT NULL,
    tier INTEGER,
    status TEXT NOT NULL,
    skip_reason TEXT,
    detail TEXT NOT NULL DEFAULT '',
    flagged INTEGER NOT NULL DEFAULT 0,
    claimed_at TEXT,
    claimed_by TEXT,
    decided_by TEXT,
    decided_at TEXT,
    decision TEXT,
    waiting_since TEXT,
    pending_decision TEXT,
    pending_interrupt TEXT,
    contact TEXT NOT NULL DEFAULT '',
    preview TEXT NOT NULL DEFAULT '',
    claim_owner TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS threads_campaign ON threads(campaign, status);
"""

_MIGRATIONS = (
    "ALTER TABLE threads ADD COLUMN pending_decision TEXT",
    "ALTER TABLE threads ADD COLUMN pending_interrupt TEXT",
    "ALTER TABLE threads ADD COLUMN contact TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE threads ADD COLUMN preview TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE threads ADD COLUMN claim_owner TEXT",
)

CLAIM_TIMEOUT = timedelta(minutes=15)
"""A claim older than this is taken to belong to a process that died mid-decision. Applying a
decision may wait out a pacing gap (at most `pacing.max_inline_wait_seconds`) and provider
retries, so this is longer than both."""


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _is_dead(owner: str | None) -> bool:
    """The process that took a claim is certainly gone (same host, no such pid). Anything we
    cannot tell, another host or a pid we may not signal, counts as alive until the timeout."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def thread_id_for(campaign: str, account_id: str) -> str:
    return f"{campaign}:{account_id}"


class ThreadRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    campaign: str
    account_id: str
    thread_id: str
    company: str
    channel: Channel
    tier: int | None
    status: AccountStatus
    skip_reason: str | None
    detail: str
    flagged: bool
    contact: str
    """Who the draft is for, "Name, Title" (empty before research picks someone)."""
    preview: str
    """The start of the current draft, for lists that must not open every checkpoint."""
    deciding: bool
    """A decision is recorded and not yet applied (the graph is taking it)."""
    decided_by: str | None
    decided_at: datetime | None
    decision: str | None
    waiting_since: datetime | None
    updated_at: datetime


class Ledger:
    def __init__(self, path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._clock = clock
        self._db = connect(path, _SCHEMA)
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(threads)")}
        for sql in _MIGRATIONS:
            if sql.split()[5] not in have:
                self._db.execute(sql)

    def close(self) -> None:
        self._db.close()

    def compact(self) -> None:
        """Rewrite the file so erased values leave no trace in free pages or the WAL."""
        compact(self._db)

    def _now(self) -> str:
        return self._clock().isoformat()

    @staticmethod
    def _row(r: sqlite3.Row) -> ThreadRow:
        d = dict(r)
        for k in ("decided_at", "waiting_since", "updated_at"):
            d[k] = datetime.fromisoformat(d[k]) if d[k] else None
        d["flagged"] = bool(d["flagged"])
        d["deciding"] = d.pop("pending_decision") is not None
        for k in ("claimed_at", "claimed_by", "claim_owner", "created_at", "pending_interrupt"):
            d.pop(k)
        return ThreadRow.model_validate(d)

    def ensure(self, campaign: str, account: Account, channel: Channel) -> ThreadRow:
        """The row for this account in this campaign, created as `queued` if new."""
        tid = thread_id_for(campaign, account.account_id)
        now = self._now()
        self._db.execute(
            "INSERT OR IGNORE INTO threads (campaign, account_id, thread_id, company, channel,"
            " status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
            (campaign, account.account_id, tid, account.company, channel, now, now),
        )
        row = self.get(tid)
        assert row is not None
        return row

    def update(
        self,
        thread_id: str,
        *,
        status: AccountStatus,
        tier: int | None = None,
        skip_reason: str | None = None,
        detail: str = "",
        flagged: bool = False,
        contact: str | None = None,
        preview: str | None = None,
    ) -> None:
        now = self._now()
        self._db.execute(
            "UPDATE threads SET status = ?, tier = COALESCE(?, tier), skip_reason = ?, detail = ?,"
            " flagged = ?, updated_at = ?,"
            " claimed_at = NULL, claimed_by = NULL, claim_owner = NULL,"
            " contact = COALESCE(?, contact), preview = COALESCE(?, preview),"
            " pending_decision = NULL, pending_interrupt = NULL,"
            " waiting_since = CASE WHEN ? = 'waiting_for_approval'"
            "   THEN COALESCE(waiting_since, ?) ELSE NULL END"
            " WHERE thread_id = ?",
            (
                status,
                tier,
                skip_reason,
                detail,
                int(flagged),
                now,
                contact,
                preview,
                status,
                now,
                thread_id,
            ),
        )

    def claim(self, row_id: int, who: str) -> bool:
        """Take a waiting draft for a decision. False: someone else has it, or it is decided."""
        now = self._clock()
        stale = (now - CLAIM_TIMEOUT).isoformat()
        take = (
            "UPDATE threads SET claimed_at = ?, claimed_by = ?, claim_owner = ? WHERE id = ?"
            " AND status = 'waiting_for_approval'"
        )
        me = _this_process()
        cur = self._db.execute(
            take + " AND (claimed_at IS NULL OR claimed_at < ?)",
            (now.isoformat(), who, me, row_id, stale),
        )
        if cur.rowcount == 1:
            return True
        # A live-looking claim whose process has died (killed mid-decision) is taken over now
        # rather than after the timeout; compare-and-swap so two takers cannot both win.
        held = self._db.execute(
            "SELECT claimed_at, claim_owner FROM threads WHERE id = ?", (row_id,)
        ).fetchone()
        if held is None or held["claimed_at"] is None or not _is_dead(held["claim_owner"]):
            return False
        cur = self._db.execute(
            take + " AND claimed_at = ? AND claim_owner = ?",
            (now.isoformat(), who, me, row_id, held["claimed_at"], held["claim_owner"]),
        )
        return cur.rowcount == 1

    def busy(self, thread_id: str) -> bool:
        """Someone holds a live claim on this thread: a decision is being applied right now."""
        stale = (self._clock() - CLAIM_TIMEOUT).isoformat()
        r = self._db.execute(
            "SELECT claim_owner FROM threads WHERE thread_id = ? AND claimed_at >= ?",
            (thread_id, stale),
        ).fetchone()
        return r is not None and not _is_dead(r["claim_owner"])

    def release(self, row_id: int) -> None:
        self._db.execute(
            "UPDATE threads SET claimed_at = NULL, claimed_by = NULL, claim_owner = NULL"
            " WHERE id = ?",
            (row_id,),
        )

    def record_decision(self, row_id: int, *, decision: Decision, interrupt_id: str) -> None:
        """Write the decision down before it is applied, with the pause it answers.

        A process that dies after this line leaves the decision here; the next run applies it
        (`pending`), so a reviewer never has to approve the same draft twice.
        """
        self._db.execute(
            "UPDATE threads SET decision = ?, decided_by = ?, decided_at = ?,"
            " pending_decision = ?, pending_interrupt = ? WHERE id = ?",
            (
                decision.action,
                decision.reviewer,
                decision.at.isoformat(),
                decision.model_dump_json(),
                interrupt_id,
                row_id,
            ),
        )

    def pending(self, thread_id: str) -> tuple[Decision, str] | None:
        """A decision recorded but not yet applied, and the interrupt it answers."""
        r = self._db.execute(
            "SELECT pending_decision, pending_interrupt FROM threads WHERE thread_id = ?",
            (thread_id,),
        ).fetchone()
        if not r or not r["pending_decision"]:
            return None
        return Decision.model_validate_json(r["pending_decision"]), str(r["pending_interrupt"])

    def get(self, ref: int | str) -> ThreadRow | None:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            r = self._db.execute("SELECT * FROM threads WHERE id = ?", (int(ref),)).fetchone()
        else:
            r = self._db.execute("SELECT * FROM threads WHERE thread_id = ?", (ref,)).fetchone()
        return self._row(r) if r else None

    def rows(
        self, campaign: str | None = None, status: AccountStatus | None = None
    ) -> list[ThreadRow]:
        clause, args = where(campaign=campaign, status=status)
        rows = self._db.execute(f"SELECT * FROM threads{clause} ORDER BY id", args).fetchall()
        return [self._row(r) for r in rows]

    def recently_decided(self, limit: int = 20) -> list[ThreadRow]:
        """The latest decisions, newest first, including ones still being applied."""
        rows = self._db.execute(
            "SELECT * FROM threads WHERE decided_at IS NOT NULL ORDER BY decided_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [self._row(r) for r in rows]

    def campaigns(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT campaign FROM threads ORDER BY 1")]
