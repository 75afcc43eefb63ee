"""The queue of Slack alerts not yet posted (`tools.alerts.AlertQueue`) on Postgres.

With `GTM_DATABASE_URL` set, `SlackAlerts` queues here rather than in `alerts.sqlite` of its
machine (`gtm.app.providers.open_alerts`), so an alert Slack refused is retried by the next
flush on any machine, even when the worker that raised it is gone.

Several machines flush one queue. A flush claims the oldest alert no other flush holds
(`SELECT … FOR UPDATE SKIP LOCKED`), posts it while its transaction holds the row lock, and
deletes it in that transaction, or records Slack's refusal (attempts, last error) and keeps it;
the commit releases the lock. Another flush skips a held row and takes the next, so no alert is
posted by two flushes at once; two machines may post neighbouring alerts in either order.

At least once, never lost: the post cannot be undone, so a flush is never run again by itself.
If the database goes away, or its COMMIT is lost, after Slack took an alert, the delete may not
have been saved: that call ends with one `DatabaseError` line, and the alert, still queued, is
posted again by a later flush (a duplicate alert, as with the SQLite file after a crash between
the post and the delete). `put` is run again while the database is briefly away, even after an
ambiguous commit: its row carries a key made by the client, inserted `ON CONFLICT DO NOTHING`,
so a second run never queues the alert twice. Reads are run again too (`tools.pg.retried`).

Given a URL, the queue opens its own small pool on first use (not when it is built: `gtm
doctor` builds the Slack client only to check the webhook).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import cast

from tools.alerts import AlertKind, Claim
from tools.pg import PgOnDemand, retried

__all__ = ["PgAlertQueue"]

_CLAIM = (
    "SELECT seq, kind, text FROM alert_queue WHERE seq > %s ORDER BY seq LIMIT 1"
    " FOR UPDATE SKIP LOCKED"
)


class PgAlertQueue(PgOnDemand):
    """`tools.alerts.AlertQueue` on a Postgres database (`GTM_DATABASE_URL`)."""

    def put(self, at: datetime, kind: AlertKind, text: str) -> None:
        """Queue one alert under a fresh key (so running the insert again cannot add it twice)."""
        self._insert(uuid.uuid4().hex, at, kind, text)

    @retried(idempotent=True)
    def _insert(self, key: str, at: datetime, kind: AlertKind, text: str) -> None:
        with self._db.connection() as conn:
            conn.execute(
                "INSERT INTO alert_queue (key, at, kind, text) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (key) DO NOTHING",
                (key, at, kind, text),
            )

    @contextmanager
    def claim(self, after: int = 0) -> Iterator[Claim | None]:
        """The oldest alert after `after` no other flush holds, its row locked until the block
        ends; then deleted, or its refusal recorded, in the same transaction (see the module
        docstring for a database lost meanwhile: not run again)."""
        with self._db.connection() as conn:
            row = conn.execute(_CLAIM, (after,)).fetchone()
            if row is None:
                yield None
                return
            claim = Claim(int(row[0]), cast(AlertKind, row[1]), str(row[2]))
            yield claim
            if claim.posted:
                conn.execute("DELETE FROM alert_queue WHERE seq = %s", (claim.seq,))
            elif claim.error is not None:
                conn.execute(
                    "UPDATE alert_queue SET attempts = attempts + 1, last_error = %s"
                    " WHERE seq = %s",
                    (claim.error, claim.seq),
                )

    @retried(idempotent=True)
    def redact(self, redact: Callable[[str], str]) -> int:
        """Every queued text rewritten in one transaction. `FOR UPDATE` (not SKIP LOCKED):
        a row a flush holds is being posted now; this waits until it is posted (gone) or kept,
        then rewrites it. Running it again rewrites nothing more."""
        with self._db.connection() as conn:
            rows = conn.execute("SELECT seq, text FROM alert_queue FOR UPDATE").fetchall()
            changed = [(new, seq) for seq, text in rows if (new := redact(text)) != text]
            if changed:
                conn.cursor().executemany(
                    "UPDATE alert_queue SET text = %s WHERE seq = %s", changed
                )
        return len(changed)

    @retried(idempotent=True)
    def waiting(self) -> int:
        with self._db.connection() as conn:
            row = conn.execute("SELECT COUNT(*) FROM alert_queue").fetchone()
        return int(row[0]) if row else 0
