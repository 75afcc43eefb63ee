"""Account leases in Postgres: several workers share one campaign, one worker per account.

With `GTM_DATABASE_URL` set, `gtm run` processes on one machine or many may run the same
campaign at once. Each takes an account by leasing it here before it works it, renews its
leases while it works, and finishes the lease (`release(done=True)`) when the account is done.
A killed worker renews nothing: once its leases run out, the others take its accounts over.

What a lease guarantees is that two live workers do not work one account at once, which would
waste model calls and race on the account's checkpoint. It is not what keeps a send
exactly-once: the outbox does that, lease or no lease (a worker paused longer than its lease,
then woken, may still finish a step it had begun).

Every comparison uses the database's clock (`now()`), never a worker's, so machines whose
clocks disagree still agree on whose lease ran out. Taking a lease is one
`INSERT … ON CONFLICT DO UPDATE … WHERE` statement: Postgres locks the conflicting row and
evaluates the condition on its newest version, so of any number of workers racing for one free
account exactly one gets a row back.

A database that goes away mid-call (`tools.pg.retried`): every method is run again, whole, while
it is away, and each is safe to run again after an ambiguous COMMIT (committed, the answer
lost). `take` of a lease this worker already holds takes it again (same holder, same takeover
count, a new `taken_at` it remembers). `renew` sets fixed values. `release` matches the lease by
holder and by the `taken_at` of this worker's take: a second run finds its own release made
(worker cleared, same `taken_at`) and answers True again, with `done_at` left as the first run
set it; a lease another worker took over since has a new `taken_at`, so it is never released by
a stale holder.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Literal

from tools.pg import Database, retried

__all__ = ["DEFAULT_LEASE", "AccountLeases", "Outcome", "new_worker_id"]

DEFAULT_LEASE = timedelta(seconds=60)
"""How long a lease lasts without renewal. A worker renews at a third of it, so a live worker
keeps its accounts through two missed renewals; a killed one's are free a minute later at most."""

Outcome = Literal["taken", "held", "done"]
"""What asking for an account gave: it is ours now; another live worker holds it; or another
worker finished it since this worker started (so there is nothing left to do on it)."""

_TAKE = """
INSERT INTO account_leases AS l (campaign, account_id, worker, lease_until, taken_at, takes)
VALUES (%(campaign)s, %(account)s, %(worker)s, now() + %(lease)s, now(), 1)
ON CONFLICT (campaign, account_id) DO UPDATE
SET worker = excluded.worker, lease_until = excluded.lease_until, taken_at = now(),
    takes = l.takes + CASE WHEN l.worker = excluded.worker THEN 0 ELSE 1 END,
    taken_from = CASE WHEN l.worker = excluded.worker THEN l.taken_from ELSE l.worker END
WHERE (l.worker IS NULL OR l.lease_until < now() OR l.worker = excluded.worker)
  AND (%(again)s OR l.done_at IS NULL OR l.done_at < %(since)s OR l.worker = excluded.worker)
RETURNING l.taken_from, l.taken_at
"""

_WHY = """
SELECT worker IS NOT NULL AND lease_until >= now() AS held
FROM account_leases WHERE campaign = %(campaign)s AND account_id = %(account)s
"""

_RELEASE = """
UPDATE account_leases
SET worker = NULL, lease_until = NULL,
    done_at = CASE WHEN %(done)s AND worker IS NOT NULL THEN now() ELSE done_at END
WHERE campaign = %(campaign)s AND account_id = %(account)s
  AND (worker = %(worker)s OR (worker IS NULL AND %(taken_at)s::timestamptz IS NOT NULL))
  AND taken_at = coalesce(%(taken_at)s::timestamptz, taken_at)
"""


def new_worker_id() -> str:
    """Who a worker is, as the lease table and a waiting worker's message show it: host, pid
    and a random tail (a pid alone repeats across machines and restarts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class AccountLeases:
    """One worker's leases on the accounts of the campaigns it runs."""

    def __init__(
        self,
        db: Database | str,
        *,
        worker: str | None = None,
        lease_for: timedelta = DEFAULT_LEASE,
        retry_window: float = 60.0,
    ) -> None:
        if lease_for <= timedelta(0):
            raise ValueError("a lease must last a positive time")
        # Two connections: the worker's, and its renewals' (they run on a thread of their own).
        # `retry_window`: how long a call waits for a connection to a database that went away.
        self._db, self._owned = (
            (db, False)
            if isinstance(db, Database)
            else (Database(db, max_size=2, retry_window=retry_window), True)
        )
        self.worker = worker or new_worker_id()
        self.lease_for = lease_for
        self.since: datetime = self._db.retry(self._now, idempotent=True)
        """When this worker started, on the database's clock: an account another worker
        finished after it is not taken again; one finished before it is (a rerun re-checks)."""
        self.taken = 0
        """Leases this worker took."""
        self.taken_over = 0
        """Of them, leases taken over from a worker whose lease ran out (killed, or stuck)."""
        self._taken_at: dict[tuple[str, str], datetime] = {}
        """When this worker took each lease it holds (the database's clock): what `release`
        matches, so a lease taken over since is told apart from one this worker released."""

    def _now(self) -> datetime:
        with self._db.connection() as conn:
            row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._owned:
            self._db.close()

    def take(self, campaign: str, account_id: str, *, again: bool = False) -> Outcome:
        """Lease `account_id` for this worker if it is free: never taken, released, or its
        lease ran out; and not finished by another worker since this one started, unless
        `again` (a pass run over and over, such as `gtm serve`'s end-of-run pass each tick)."""
        got = self._take(campaign, account_id, again)
        if isinstance(got, str):
            return got
        taken_from, taken_at = got
        self._taken_at[(campaign, account_id)] = taken_at
        self.taken += 1
        self.taken_over += taken_from is not None
        return "taken"

    @retried(idempotent=True)  # taking its own lease again answers as the first take did
    def _take(
        self, campaign: str, account_id: str, again: bool
    ) -> tuple[str | None, datetime] | Literal["held", "done"]:
        args = {
            "campaign": campaign,
            "account": account_id,
            "worker": self.worker,
            "lease": self.lease_for,
            "since": self.since,
            "again": again,
        }
        with self._db.connection() as conn:
            row = conn.execute(_TAKE, args).fetchone()
            if row is not None:
                return row[0], row[1]
            why = conn.execute(_WHY, args).fetchone()
        return "held" if why is not None and why[0] else "done"

    @retried(idempotent=True)
    def renew(self, campaign: str, account_ids: Collection[str]) -> set[str]:
        """Extend this worker's leases on `account_ids`; the ones it still holds. One missing
        was taken over by another worker after this one's lease ran out (it was too slow)."""
        if not account_ids:
            return set()
        with self._db.connection() as conn:
            rows = conn.execute(
                "UPDATE account_leases SET lease_until = now() + %s"
                " WHERE campaign = %s AND account_id = ANY(%s) AND worker = %s"
                " RETURNING account_id",
                (self.lease_for, campaign, list(account_ids), self.worker),
            ).fetchall()
        return {r[0] for r in rows}

    def release(self, campaign: str, account_id: str, *, done: bool) -> bool:
        """Give the account back: `done` when it was worked to where it stops (then the other
        workers of this run skip it), otherwise free for the next worker. False if this
        worker no longer held it (another took it over after its lease ran out): then nothing
        is changed, and the account is not marked finished."""
        taken_at = self._taken_at.pop((campaign, account_id), None)
        return self._release(campaign, account_id, done, taken_at)

    @retried(idempotent=True)  # a second run finds its own release by `taken_at`: True again
    def _release(
        self, campaign: str, account_id: str, done: bool, taken_at: datetime | None
    ) -> bool:
        args = {
            "campaign": campaign,
            "account": account_id,
            "worker": self.worker,
            "done": done,
            "taken_at": taken_at,
        }
        with self._db.connection() as conn:
            return conn.execute(_RELEASE, args).rowcount == 1

    @retried(idempotent=True)
    def holders(self, campaign: str, account_ids: Collection[str]) -> dict[str, str]:
        """Who holds a live lease on any of `account_ids`, by account (for a waiting worker)."""
        if not account_ids:
            return {}
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT account_id, worker FROM account_leases"
                " WHERE campaign = %s AND account_id = ANY(%s) AND worker IS NOT NULL"
                " AND lease_until >= now()",
                (campaign, list(account_ids)),
            ).fetchall()
        return {r[0]: r[1] for r in rows}
