"""The campaign ledger (`gtm.app.ledger.Ledger`) on Postgres, shared by processes on many machines.

Same methods, same answers (`gtm.app.ledger_api.LedgerStore`). What SQLite gets from its single
writer, this gets from the server's row locks: a claim is one `UPDATE ... WHERE` that only
matches an unclaimed (or stale) row, so two reviewers on two machines clicking at once cannot
both take a draft; the one that waits re-reads the row when the other commits and finds it
taken. A decision and its history entry are written in one transaction.

Listings keep SQLite's order: text compares byte by byte (the "C" collation, migration 0002),
NULLs sort first ascending and last descending (written out on every `ORDER BY`), and
`aggregate` hands times back as the ISO text SQLite stores. While the database is briefly away,
each method is run again whole (`tools.pg.retried`); `claim`, `record_decision` and the counting
erasures are not run again after an ambiguous commit (see `tools.pg`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from gtm.app.ledger_api import (
    CLAIM_TIMEOUT,
    DecisionRecord,
    LedgerStore,
    ThreadRow,
    owner_is_dead,
    redacted_pending,
    this_process,
    thread_row,
)
from gtm.domain.models import Account, AccountStatus, Channel, Decision
from gtm.domain.threads import thread_id_for
from tools.pg import PgStore, retried, where

__all__ = ["PgLedger", "pg_order", "pg_sql"]

_TAKE = (
    "UPDATE threads SET claimed_at = %s, claimed_by = %s, claim_owner = %s WHERE id = %s"
    " AND status = 'waiting_for_approval'"
)


def pg_sql(text: str) -> str:
    """SQL written with SQLite's `?` placeholders, for psycopg: each `?` outside a quoted
    literal or identifier becomes `%s`, and every `%` is doubled so it stays a `%`."""
    out: list[str] = []
    quote = ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        if ch == "%":
            out.append("%%")
        elif ch == "?" and not quote:
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


def _terms(text: str) -> list[str]:
    """A list of SQL expressions split at the commas outside parentheses."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return [*parts, text[start:].strip()]


def pg_order(order: str) -> str:
    """An `ORDER BY` list with SQLite's NULL placement spelled out (Postgres's own default is
    the reverse): NULLS FIRST ascending, NULLS LAST descending, unless a term says otherwise."""
    terms = []
    for term in _terms(order):
        upper = term.upper()
        if " NULLS " in upper:
            terms.append(term)
        elif upper.endswith(" DESC"):
            terms.append(f"{term} NULLS LAST")
        else:
            terms.append(f"{term} NULLS FIRST")
    return ", ".join(terms)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class PgLedger(PgStore):
    """`gtm.app.ledger.Ledger` on a Postgres database (`GTM_DATABASE_URL`)."""

    @retried(idempotent=True)
    def compact(self) -> None:
        """Rewrite the tables so erased values leave no bytes in their files (the WAL and any
        backups keep them until they rotate out)."""
        self._db.vacuum_full("threads", "decisions")

    @retried(idempotent=True)
    def _one(self, sql: str, args: Sequence[Any]) -> dict[str, Any] | None:
        with self._db.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(sql, args).fetchone()

    @retried(idempotent=True)
    def _threads(self, sql: str, args: Sequence[Any]) -> list[ThreadRow]:
        with self._db.connection() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(sql, args).fetchall()
        return [thread_row(r) for r in rows]

    @retried(idempotent=True)
    def ensure(
        self,
        campaign: str,
        account: Account,
        channel: Channel,
        *,
        variant: str | None = None,
        slot: int = 0,
    ) -> ThreadRow:
        """The row for this account in this campaign, created as `queued` if new (`Ledger.
        ensure`). As on SQLite, a call that finds the row still uses up a row id."""
        tid = thread_id_for(campaign, account.account_id, slot)
        now = self._clock()
        with self._db.connection() as conn:
            conn.execute(
                "INSERT INTO threads (campaign, account_id, thread_id, company, channel, status,"
                " variant, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, 'queued', %s, %s,"
                " %s) ON CONFLICT (thread_id) DO NOTHING",
                (campaign, account.account_id, tid, account.company, channel, variant, now, now),
            )
        row = self.get(tid)
        assert row is not None
        return row

    @retried(idempotent=True)
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
        now = self._clock()
        with self._db.connection() as conn:
            conn.execute(
                "UPDATE threads SET status = %s, tier = COALESCE(%s::integer, tier),"
                " skip_reason = %s, detail = %s, flagged = %s, updated_at = %s,"
                " claimed_at = NULL, claimed_by = NULL, claim_owner = NULL,"
                " contact = COALESCE(%s::text, contact), preview = COALESCE(%s::text, preview),"
                " pending_decision = NULL, pending_interrupt = NULL,"
                " waiting_since = CASE WHEN %s::text = 'waiting_for_approval'"
                "   THEN COALESCE(waiting_since, %s) ELSE NULL END"
                " WHERE thread_id = %s",
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

    @retried(idempotent=True)
    def set_sequence(self, thread_id: str, *, position: int, next_due: datetime | None) -> None:
        """Where the thread's sequence stands: its step and when the next one is due."""
        with self._db.connection() as conn:
            conn.execute(
                "UPDATE threads SET seq_pos = %s, next_due = %s WHERE thread_id = %s",
                (position, next_due, thread_id),
            )

    @retried(idempotent=True)
    def stop_sequence(self, ref: int | str, reason: str) -> ThreadRow | None:
        """`Ledger.stop_sequence`: the first reason stays. None: no such thread."""
        row = self.get(ref)
        if row is None:
            return None
        with self._db.connection() as conn:
            conn.execute(
                "UPDATE threads SET seq_stopped = COALESCE(seq_stopped, %s), next_due = NULL,"
                " updated_at = %s WHERE id = %s",
                (reason, self._clock(), row.id),
            )
        return self.get(row.id)

    @retried(idempotent=False)
    def claim(self, row_id: int, who: str) -> bool:
        """Take a waiting draft for a decision. False: someone else has it, or it is decided.

        Each step is one statement whose `WHERE` re-checks the claim: a second claimer blocks
        on the row until the first commits, then finds it taken."""
        now = self._clock()
        me = this_process()
        with self._db.connection() as conn:
            taken = conn.execute(
                _TAKE + " AND (claimed_at IS NULL OR claimed_at < %s)",
                (now, who, me, row_id, now - CLAIM_TIMEOUT),
            ).rowcount
            if taken == 1:
                return True
            # A live-looking claim whose process has died (killed mid-decision) is taken over
            # now rather than after the timeout; compare-and-swap so two takers cannot both win.
            held = conn.execute(
                "SELECT claimed_at, claim_owner FROM threads WHERE id = %s", (row_id,)
            ).fetchone()
            if held is None or held[0] is None or not owner_is_dead(held[1]):
                return False
            taken = conn.execute(
                _TAKE + " AND claimed_at = %s AND claim_owner = %s",
                (now, who, me, row_id, held[0], held[1]),
            ).rowcount
        return taken == 1

    def busy(self, thread_id: str) -> bool:
        """Someone holds a live claim on this thread: a decision is being applied right now."""
        r = self._one(
            "SELECT claim_owner FROM threads WHERE thread_id = %s AND claimed_at >= %s",
            (thread_id, self._clock() - CLAIM_TIMEOUT),
        )
        return r is not None and not owner_is_dead(r["claim_owner"])

    @retried(idempotent=True)
    def release(self, row_id: int) -> None:
        with self._db.connection() as conn:
            conn.execute(
                "UPDATE threads SET claimed_at = NULL, claimed_by = NULL, claim_owner = NULL"
                " WHERE id = %s",
                (row_id,),
            )

    @retried(idempotent=False)
    def record_decision(self, row_id: int, *, decision: Decision, interrupt_id: str) -> None:
        """`Ledger.record_decision`: the decision, its pause and its history entry, in one
        transaction."""
        with self._db.connection() as conn:
            conn.execute(
                "UPDATE threads SET decision = %s, decided_by = %s, decided_at = %s,"
                " pending_decision = %s, pending_interrupt = %s WHERE id = %s",
                (
                    decision.action,
                    decision.reviewer,
                    decision.at,
                    decision.model_dump_json(),
                    interrupt_id,
                    row_id,
                ),
            )
            conn.execute(
                "INSERT INTO decisions (thread_id, action, reviewer, at, note)"
                " SELECT thread_id, %s, %s, %s, %s FROM threads WHERE id = %s",
                (
                    decision.action,
                    decision.reviewer,
                    decision.at,
                    decision.reason or decision.instructions or "",
                    row_id,
                ),
            )

    @retried(idempotent=True)
    def history(self, thread_id: str) -> list[DecisionRecord]:
        """Every decision recorded on this thread, oldest first."""
        with self._db.connection() as conn:
            rows = (
                conn.cursor(row_factory=dict_row)
                .execute(
                    "SELECT action, reviewer, at, note FROM decisions WHERE thread_id = %s"
                    " ORDER BY seq",
                    (thread_id,),
                )
                .fetchall()
            )
        return [DecisionRecord.model_validate(r) for r in rows]

    @retried(idempotent=False)
    def forget_history(self, thread_id: str) -> int:
        """Drop a thread's decision history (its reasons may name the person being erased)."""
        with self._db.connection() as conn:
            return int(
                conn.execute("DELETE FROM decisions WHERE thread_id = %s", (thread_id,)).rowcount
            )

    @retried(idempotent=False)
    def redact_notes(self, thread_ids: Sequence[str], redact: Callable[[str], str]) -> int:
        """`Ledger.redact_notes`, in one transaction that locks the rows it rewrites (a
        decision recorded meanwhile waits, and is not overwritten by an older text)."""
        wanted, changed = list(dict.fromkeys(thread_ids)), 0
        with self._db.connection() as conn:
            notes = conn.execute(
                "SELECT seq, note FROM decisions WHERE note != '' AND thread_id = ANY(%s)"
                " ORDER BY seq FOR UPDATE",
                (wanted,),
            ).fetchall()
            for seq, note in notes:
                if (new := redact(note)) != note:
                    conn.execute("UPDATE decisions SET note = %s WHERE seq = %s", (new, seq))
                    changed += 1
            pending = conn.execute(
                "SELECT id, pending_decision FROM threads WHERE pending_decision != ''"
                " AND thread_id = ANY(%s) ORDER BY id FOR UPDATE",
                (wanted,),
            ).fetchall()
            for row_id, raw in pending:
                if (rewritten := redacted_pending(raw, redact)) is not None:
                    conn.execute(
                        "UPDATE threads SET pending_decision = %s WHERE id = %s",
                        (rewritten, row_id),
                    )
                    changed += 1
        return changed

    def pending(self, thread_id: str) -> tuple[Decision, str] | None:
        """A decision recorded but not yet applied, and the interrupt it answers."""
        r = self._one(
            "SELECT pending_decision, pending_interrupt FROM threads WHERE thread_id = %s",
            (thread_id,),
        )
        if not r or not r["pending_decision"]:
            return None
        return Decision.model_validate_json(r["pending_decision"]), str(r["pending_interrupt"])

    def get(self, ref: int | str) -> ThreadRow | None:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            if not 0 < int(ref) < 2**63:  # a bigint ends there: no such draft
                return None
            found = self._threads("SELECT * FROM threads WHERE id = %s", (int(ref),))
        else:
            found = self._threads("SELECT * FROM threads WHERE thread_id = %s", (ref,))
        return found[0] if found else None

    def rows(
        self, campaign: str | None = None, status: AccountStatus | None = None
    ) -> list[ThreadRow]:
        clause, args = where(campaign=campaign, status=status)
        return self._threads(f"SELECT * FROM threads{clause} ORDER BY id", args)

    def select(
        self,
        clause: str = "",
        args: Sequence[Any] = (),
        *,
        order: str = "id",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ThreadRow]:
        """`Ledger.select`: `clause` and `order` as written for SQLite (`?` placeholders)."""
        sql = f"SELECT * FROM threads{' WHERE ' + clause if clause else ''}"
        sql = pg_sql(sql) + f" ORDER BY {pg_sql(pg_order(order))}"
        params = list(args)
        if limit is not None:
            sql, params = sql + " LIMIT %s OFFSET %s", [*params, limit, offset]
        return self._threads(sql, params)

    @retried(idempotent=True)
    def aggregate(
        self, columns: str, clause: str = "", args: Sequence[Any] = (), *, group_by: str = ""
    ) -> list[tuple[Any, ...]]:
        """`Ledger.aggregate`, one tuple a row, times as ISO text as SQLite gives them."""
        sql = f"SELECT {columns} FROM threads{' WHERE ' + clause if clause else ''}"
        if group_by:
            sql += f" GROUP BY {group_by} ORDER BY {pg_order(group_by)}"
        with self._db.connection() as conn:
            rows = conn.execute(pg_sql(sql), list(args)).fetchall()
        return [tuple(_iso(v) for v in r) for r in rows]

    def recently_decided(self, limit: int = 20) -> list[ThreadRow]:
        """The latest decisions, newest first, including ones still being applied."""
        return self._threads(
            "SELECT * FROM threads WHERE decided_at IS NOT NULL ORDER BY decided_at DESC LIMIT %s",
            (limit,),
        )

    @retried(idempotent=True)
    def campaigns(self) -> list[str]:
        with self._db.connection() as conn:
            rows = conn.execute("SELECT DISTINCT campaign FROM threads ORDER BY 1").fetchall()
        return [r[0] for r in rows]


if TYPE_CHECKING:  # mypy checks here that both backends are a `LedgerStore`
    from gtm.app.ledger import Ledger

    _BACKENDS: tuple[type[LedgerStore], ...] = (Ledger, PgLedger)
