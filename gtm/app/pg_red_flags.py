"""The fired red flags (`gtm.app.red_flags.FlagStore`) on Postgres.

Same methods, same answers, one row per (flag, ISO week, campaign): two workers evaluating one
week both `record` it and keep one row, and only one of them `claim`s it. The claim is one
`UPDATE … RETURNING` whose condition (not alerted, not claimed in the last `_RECLAIM`) the
server checks again on the row it locked, so a worker that waited for another's claim finds it
taken and sends no second alert. The row's reading is `red_flags`' own.

While the database is briefly away each method is run again whole (`tools.pg.retried`);
`claim` is not run again after an ambiguous commit (a second run would find its own claim and
answer None, so no alert would go): that case is one `DatabaseError` line, and the claim lapses
after `_RECLAIM` for a later run, as after a crash.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from gtm.app.red_flags import _RECLAIM, RedFlag, StoredFlag, _row
from tools.pg import PgStore, retried

__all__ = ["PgFlagStore"]


class PgFlagStore(PgStore):
    """`gtm.app.red_flags.FlagStore` on a Postgres database (`GTM_DATABASE_URL`)."""

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, args).fetchall()

    @retried(idempotent=True)
    def record(self, flag: RedFlag) -> None:
        """Keep `flag` unless this flag, week and campaign is kept already (then nothing)."""
        with self._db.connection() as conn:
            conn.execute(
                "INSERT INTO red_flags (flag, week, campaign, value, threshold, sample, message,"
                " fired_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (flag, week, campaign) DO NOTHING",
                (
                    flag.flag, flag.week, flag.campaign, flag.value, flag.threshold,
                    flag.sample, flag.message, self._clock(),
                ),
            )  # fmt: skip

    @retried(idempotent=False)
    def claim(self, flag: RedFlag) -> StoredFlag | None:
        """Take the right to alert about `flag`: None when it was alerted, or another run
        claimed it less than `_RECLAIM` ago."""
        now = self._clock()
        rows = self._rows(
            "UPDATE red_flags SET claimed_at = %s WHERE flag = %s AND week = %s AND campaign = %s"
            " AND alerted_at IS NULL AND (claimed_at IS NULL OR claimed_at < %s) RETURNING *",
            (now, flag.flag, flag.week, flag.campaign, now - _RECLAIM),
        )
        return _row(rows[0]) if rows else None

    @retried(idempotent=True)
    def alerted(self, flag_id: int, outcome: str) -> None:
        with self._db.connection() as conn:
            conn.execute(
                "UPDATE red_flags SET alerted_at = %s, outcome = %s WHERE id = %s",
                (self._clock(), outcome, flag_id),
            )

    @retried(idempotent=True)
    def listing(self, *, include_dismissed: bool = False) -> list[StoredFlag]:
        """Fired flags, newest week first."""
        clause = "" if include_dismissed else " WHERE dismissed_at IS NULL"
        rows = self._rows(f"SELECT * FROM red_flags{clause} ORDER BY week DESC, campaign, flag")
        return [_row(r) for r in rows]

    @retried(idempotent=True)
    def dismiss(self, flag_id: int, by: str) -> StoredFlag | None:
        rows = self._rows(
            "UPDATE red_flags SET dismissed_at = COALESCE(dismissed_at, %s),"
            " dismissed_by = COALESCE(dismissed_by, %s) WHERE id = %s RETURNING *",
            (self._clock(), by, flag_id),
        )
        return _row(rows[0]) if rows else None
