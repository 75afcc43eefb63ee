"""The ledger on Postgres alone: claims raced by real threads and processes, and migration 0002.

Each race runs against one database on the test server (`tests.support.postgres`): processes
with their own pools (as workers on several machines would have) and threads sharing one pool
claim the same drafts at the same instant, and each draft has exactly one winner, a dead
owner's draft included. Migration 0002 keeps a ledger written at 0001, goes down and up again,
and its indexes serve the review queue's order without a sort.
"""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from gtm.app.pg_campaigns import PgCampaignBook
from gtm.app.pg_ledger import PgLedger, pg_order
from gtm.domain.models import Account
from gtm.domain.playbook import load_playbook
from tests.support.postgres import PostgresServer, database_url, postgres_server  # noqa: F401
from tools.pg import Database

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)


def dead_owner() -> str:
    """A claim owner on this host whose process has certainly exited."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return f"{socket.gethostname()}:{gone.pid}"


def account(i: int | str) -> Account:
    """A made-up account, numbered."""
    return Account(account_id=f"a{i}.io", company=f"Company {i}", domain=f"a{i}.io")


# ------------------------------------------------------------------------- races on Postgres

ROWS = 25


def _waiting_drafts(url: str, n: int) -> list[int]:
    led = PgLedger(url)
    try:
        ids = []
        for i in range(n):
            row = led.ensure("race", account(i), "email")
            led.update(row.thread_id, status="waiting_for_approval")
            ids.append(row.id)
        return ids
    finally:
        led.close()


def _claim_all(url: str, who: str, ids: list[int], barrier: Any, queue: Any) -> None:
    led = PgLedger(url)
    try:
        barrier.wait()
        queue.put((who, [row_id for row_id in ids if led.claim(row_id, who)]))
    finally:
        led.close()


def test_processes_claiming_the_same_drafts_get_one_winner_each(url: str) -> None:
    """Three processes, each with its own pool (three machines), claim the same 25 drafts at
    the same instant: every draft is taken exactly once."""
    ids = _waiting_drafts(url, ROWS)
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(3, timeout=60), ctx.Queue()
    procs = [
        ctx.Process(target=_claim_all, args=(url, f"r{i}", ids, barrier, queue)) for i in range(3)
    ]
    for p in procs:
        p.start()
    won = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    taken = sorted(i for got in won.values() for i in got)
    assert taken == ids, won
    led = PgLedger(url)
    try:
        for who, got in won.items():  # the row says who won it
            with led._db.connection() as conn:
                holders = conn.execute(
                    "SELECT DISTINCT claimed_by FROM threads WHERE id = ANY(%s)", (got,)
                ).fetchall()
            assert holders == ([(who,)] if got else [])
    finally:
        led.close()


def _race(led: PgLedger, row_id: int, n: int) -> list[str]:
    """`n` threads claim one draft at once through one pool; the names of the winners."""
    barrier, won, lock = threading.Barrier(n, timeout=30), list[str](), threading.Lock()

    def claim(who: str) -> None:
        barrier.wait()
        if led.claim(row_id, who):
            with lock:
                won.append(who)

    threads = [threading.Thread(target=claim, args=(f"t{i}",)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return won


def test_threads_racing_for_a_draft_and_for_a_dead_owners_draft_get_one_winner(
    url: str,
) -> None:
    db = Database(url, max_size=8)
    led = PgLedger(db)
    try:
        for row_id in _waiting_drafts(url, 10):
            assert len(_race(led, row_id, 8)) == 1
            with db.connection() as conn:  # its claimer's process is killed mid-decision
                conn.execute(
                    "UPDATE threads SET claim_owner = %s WHERE id = %s", (dead_owner(), row_id)
                )
            assert len(_race(led, row_id, 8)) == 1, "the takeover is a compare-and-swap"
    finally:
        led.close()
        db.close()


# ---------------------------------------------------------------------------- migration 0002


def _alembic(url: str, action: str, revision: str) -> None:
    """Run one Alembic command on the database, as `tools.pg_migrate` does."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    from tools.pg_migrate import MIGRATIONS

    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = connection
            getattr(command, action)(cfg, revision)
    finally:
        engine.dispose()


def test_a_ledger_written_at_0001_reads_the_same_after_0002_and_back(
    postgres_server: PostgresServer,  # noqa: F811
) -> None:
    """Threads written before 0002 keep every value through the upgrade (and a downgrade and
    upgrade again); 0002 adds the campaign book and sorts text byte by byte."""
    from tools.pg_migrate import upgrade

    url = postgres_server.new_database(migrated=False)
    try:
        _alembic(url, "upgrade", "0001")
        import psycopg

        with psycopg.connect(url) as conn:
            for i, campaign in enumerate(("beta", "Zeta", "alpha")):
                conn.execute(
                    "INSERT INTO threads (campaign, account_id, thread_id, company, channel,"
                    " status, created_at, updated_at, waiting_since) VALUES (%s, %s, %s, %s,"
                    " 'email', 'waiting_for_approval', %s, %s, %s)",
                    (campaign, f"a{i}", f"{campaign}:a{i}", f"C{i}", NOW, NOW, NOW),
                )
        upgrade(url)
        led = PgLedger(url)
        before = led.rows()
        assert [r.campaign for r in before] == ["beta", "Zeta", "alpha"]
        assert led.campaigns() == ["Zeta", "alpha", "beta"]
        assert all(r.waiting_since == NOW for r in before)
        book = PgCampaignBook(url)
        book.resolve("beta", load_playbook(), explicit=False, adopt=False)
        with psycopg.connect(url) as conn:
            collations = dict(
                conn.execute(
                    "SELECT column_name, collation_name FROM information_schema.columns"
                    " WHERE table_name = 'threads' AND data_type = 'text'"
                ).fetchall()
            )
        assert collations["campaign"] == collations["status"] == "C", collations
        assert collations["pending_decision"] is None  # JSON keeps the database's default
        book.close()
        led.close()

        _alembic(url, "downgrade", "0001")
        _alembic(url, "upgrade", "head")
        led = PgLedger(url)
        assert led.rows() == before and PgCampaignBook(url).get("beta") is None
        led.close()
    finally:
        postgres_server.drop(url)


QUEUE_KEYS = (
    "campaign, (CASE WHEN COALESCE(tier, 0) = 0 THEN 99 ELSE tier END),"
    " COALESCE(waiting_since, updated_at), id"
)
OLDEST_KEYS = "COALESCE(waiting_since, updated_at), id"
"""The review queue's and `gtm inbox`'s orders, as `gtm.app.waiting` writes them."""


def test_a_queue_page_is_read_off_the_index_not_sorted(url: str) -> None:
    """The NULL placement `pg_order` asks for is the one the 0002 indexes hold, so a page of the
    review queue (and of `gtm inbox`) is read in index order with no sort."""
    _waiting_drafts(url, 30)
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("ANALYZE threads")
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_sort = off")
        conn.execute("SET enable_bitmapscan = off")
        for keys, index in ((QUEUE_KEYS, "threads_queue"), (OLDEST_KEYS, "threads_oldest")):
            sql = (
                "EXPLAIN SELECT * FROM threads WHERE status = 'waiting_for_approval'"
                f" ORDER BY {pg_order(keys)} LIMIT 10"
            )
            plan = "\n".join(r[0] for r in conn.execute(sql).fetchall())
            assert index in plan and "Sort" not in plan, plan
