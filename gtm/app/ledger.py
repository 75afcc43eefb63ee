"""The campaign ledger: one row per account thread, for listing, numbering and claiming drafts.

The graph's checkpoints are the source of truth for a thread's state; the ledger is an index over
them (so `gtm inbox` need not scan every checkpoint) plus the atomic claim that stops two
reviewers, or a double click, from deciding one draft twice.

This is the SQLite ledger (the default). Its rows, its decisions and what any ledger offers
(`LedgerStore`) are in `gtm.app.ledger_api`, re-exported here; `gtm.app.pg_ledger.PgLedger` is
the same ledger on Postgres.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gtm.app.ledger_api import (
    CLAIM_TIMEOUT,
    DecisionRecord,
    ThreadRow,
    owner_is_dead,
    redacted_pending,
    this_process,
    thread_row,
)
from gtm.domain.models import Account, AccountStatus, Channel, Decision
from gtm.domain.threads import thread_id_for
from tools.sqlite import add_columns, compact, connect, where

__all__ = ["CLAIM_TIMEOUT", "DecisionRecord", "Ledger", "ThreadRow"]

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
    seq_pos INTEGER NOT NULL DEFAULT 0,
    next_due TEXT,
    seq_stopped TEXT,
    variant TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS threads_campaign ON threads(campaign, status);
CREATE INDEX IF NOT EXISTS threads_queue ON threads(status, campaign,
    (CASE WHEN COALESCE(tier, 0) = 0 THEN 99 ELSE tier END), COALESCE(waiting_since, updated_at),
    id);
CREATE INDEX IF NOT EXISTS threads_oldest ON threads(status,
    COALESCE(waiting_since, updated_at), id);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    thread_id TEXT NOT NULL,
    action TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS decisions_thread ON decisions(thread_id, seq);
"""

_ADDED_COLUMNS = {
    "pending_decision": "TEXT",
    "pending_interrupt": "TEXT",
    "contact": "TEXT NOT NULL DEFAULT ''",
    "preview": "TEXT NOT NULL DEFAULT ''",
    "claim_owner": "TEXT",
    "seq_pos": "INTEGER NOT NULL DEFAULT 0",
    "next_due": "TEXT",
    "seq_stopped": "TEXT",
    "variant": "TEXT",
}
"""Columns added since the first ledgers were written, brought to older files on open."""


class Ledger:
    def __init__(self, path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._clock = clock
        self._db = connect(path, _SCHEMA)
        add_columns(self._db, "threads", _ADDED_COLUMNS)

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
        for k in ("decided_at", "waiting_since", "updated_at", "next_due"):
            d[k] = datetime.fromisoformat(d[k]) if d[k] else None
        return thread_row(d)

    def ensure(
        self,
        campaign: str,
        account: Account,
        channel: Channel,
        *,
        variant: str | None = None,
        slot: int = 0,
    ) -> ThreadRow:
        """The row for this account in this campaign, created as `queued` if new; `slot` > 0
        is the thread of the account's next person (`Playbook.contacts_per_account`).

        `variant` is written only with a new row, in the same statement, so a thread's prompt
        variant is on disk before anything is drafted and a later call (a resumed run) never
        draws it again.
        """
        tid = thread_id_for(campaign, account.account_id, slot)
        now = self._now()
        self._db.execute(
            "INSERT OR IGNORE INTO threads (campaign, account_id, thread_id, company, channel,"
            " status, variant, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
            (campaign, account.account_id, tid, account.company, channel, variant, now, now),
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

    def set_sequence(self, thread_id: str, *, position: int, next_due: datetime | None) -> None:
        """Where the thread's sequence stands: its step and when the next one is due."""
        self._db.execute(
            "UPDATE threads SET seq_pos = ?, next_due = ? WHERE thread_id = ?",
            (position, next_due.isoformat() if next_due else None, thread_id),
        )

    def stop_sequence(self, ref: int | str, reason: str) -> ThreadRow | None:
        """End a thread's sequence: no further follow-up is drafted or sent. The first reason
        stays (stopping twice changes nothing). None: no such thread."""
        row = self.get(ref)
        if row is None:
            return None
        self._db.execute(
            "UPDATE threads SET seq_stopped = COALESCE(seq_stopped, ?), next_due = NULL,"
            " updated_at = ? WHERE id = ?",
            (reason, self._now(), row.id),
        )
        return self.get(row.id)

    def claim(self, row_id: int, who: str) -> bool:
        """Take a waiting draft for a decision. False: someone else has it, or it is decided."""
        now = self._clock()
        stale = (now - CLAIM_TIMEOUT).isoformat()
        take = (
            "UPDATE threads SET claimed_at = ?, claimed_by = ?, claim_owner = ? WHERE id = ?"
            " AND status = 'waiting_for_approval'"
        )
        me = this_process()
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
        if held is None or held["claimed_at"] is None or not owner_is_dead(held["claim_owner"]):
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
        return r is not None and not owner_is_dead(r["claim_owner"])

    def release(self, row_id: int) -> None:
        self._db.execute(
            "UPDATE threads SET claimed_at = NULL, claimed_by = NULL, claim_owner = NULL"
            " WHERE id = ?",
            (row_id,),
        )

    def record_decision(self, row_id: int, *, decision: Decision, interrupt_id: str) -> None:
        """Write the decision down before it is applied, with the pause it answers.

        A process that dies after this line leaves the decision here; the next run applies it
        (`pending`), so a reviewer never has to approve the same draft twice. The decision
        also joins the thread's history, in the same transaction.
        """
        at = decision.at.isoformat()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "UPDATE threads SET decision = ?, decided_by = ?, decided_at = ?,"
                " pending_decision = ?, pending_interrupt = ? WHERE id = ?",
                (
                    decision.action,
                    decision.reviewer,
                    at,
                    decision.model_dump_json(),
                    interrupt_id,
                    row_id,
                ),
            )
            self._db.execute(
                "INSERT INTO decisions (thread_id, action, reviewer, at, note)"
                " SELECT thread_id, ?, ?, ?, ? FROM threads WHERE id = ?",
                (
                    decision.action,
                    decision.reviewer,
                    at,
                    decision.reason or decision.instructions or "",
                    row_id,
                ),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def history(self, thread_id: str) -> list[DecisionRecord]:
        """Every decision recorded on this thread, oldest first."""
        rows = self._db.execute(
            "SELECT action, reviewer, at, note FROM decisions WHERE thread_id = ? ORDER BY seq",
            (thread_id,),
        ).fetchall()
        return [
            DecisionRecord(
                action=r["action"],
                reviewer=r["reviewer"],
                at=datetime.fromisoformat(r["at"]),
                note=r["note"],
            )
            for r in rows
        ]

    def forget_history(self, thread_id: str) -> int:
        """Drop a thread's decision history (its reasons may name the person being erased)."""
        return self._db.execute("DELETE FROM decisions WHERE thread_id = ?", (thread_id,)).rowcount

    def redact_notes(self, thread_ids: Sequence[str], redact: Callable[[str], str]) -> int:
        """Rewrite the decision notes, and the text of a recorded-but-unapplied decision, of
        these threads through `redact` (a reviewer's reason or instructions may name someone
        being erased). Returns how many notes and decisions changed."""
        wanted, changed = set(thread_ids), 0
        notes = "SELECT seq, thread_id, note FROM decisions WHERE note != ''"
        for seq, tid, note in self._db.execute(notes).fetchall():
            if tid in wanted and (new := redact(note)) != note:
                self._db.execute("UPDATE decisions SET note = ? WHERE seq = ?", (new, seq))
                changed += 1
        pending = "SELECT thread_id, pending_decision FROM threads WHERE pending_decision != ''"
        for tid, raw in self._db.execute(pending).fetchall():
            if tid in wanted and (rewritten := redacted_pending(raw, redact)) is not None:
                self._db.execute(
                    "UPDATE threads SET pending_decision = ? WHERE thread_id = ?", (rewritten, tid)
                )
                changed += 1
        return changed

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
            if not 0 < int(ref) < 2**63:  # SQLite's integers end there: no such draft
                return None
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

    def select(
        self,
        clause: str = "",
        args: Sequence[Any] = (),
        *,
        order: str = "id",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ThreadRow]:
        """The rows meeting an SQL condition on `threads`' columns, in `order`, and only the
        page asked for: a listing of 10,000 drafts builds the rows it shows, no more."""
        sql = f"SELECT * FROM threads{' WHERE ' + clause if clause else ''} ORDER BY {order}"
        if limit is not None:
            sql, args = sql + " LIMIT ? OFFSET ?", [*args, limit, offset]
        return [self._row(r) for r in self._db.execute(sql, list(args))]

    def aggregate(
        self, columns: str, clause: str = "", args: Sequence[Any] = (), *, group_by: str = ""
    ) -> list[tuple[Any, ...]]:
        """`SELECT columns ... GROUP BY group_by` over the rows meeting `clause`: counts and
        oldest dates from SQLite instead of from every row loaded, one tuple a row."""
        sql = f"SELECT {columns} FROM threads{' WHERE ' + clause if clause else ''}"
        if group_by:
            sql += f" GROUP BY {group_by} ORDER BY {group_by}"
        return [tuple(r) for r in self._db.execute(sql, list(args))]

    def recently_decided(self, limit: int = 20) -> list[ThreadRow]:
        """The latest decisions, newest first, including ones still being applied."""
        rows = self._db.execute(
            "SELECT * FROM threads WHERE decided_at IS NOT NULL ORDER BY decided_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [self._row(r) for r in rows]

    def campaigns(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT campaign FROM threads ORDER BY 1")]
