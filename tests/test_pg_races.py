"""The outbox's guarantees on Postgres hold between processes, not only inside one.

Each test races real processes (spawned, each with its own connection pool, as workers on
several machines would have) against one database on the test server: one key reserved by
four at once has one winner, a cap is never exceeded, and two campaigns reaching for one
person at the same instant reach them once. A last test mixes people, accounts and campaigns
at random to show the locks never deadlock and the cooldowns still hold.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.postgres import PostgresServer, database_url, postgres_server  # noqa: F401
from tools.outbox import Cooldowns, Limit
from tools.pg import Database
from tools.pg_keys import PgKeyLedger
from tools.pg_outbox import PgOutbox

WEEK = datetime(2026, 11, 16, tzinfo=UTC)
CAP = [Limit(25, WEEK, WEEK + timedelta(days=7), "connects per week")]
WINDOWS = Cooldowns(person=timedelta(days=30), account=timedelta(days=7))
ROUNDS = 30


def _run(target: Any, args_for: list[tuple[Any, ...]]) -> list[Any]:
    """Start one spawned process per argument tuple (each gets a result queue last), wait for
    all, and return what each put on the queue."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, queue)) for a in args_for]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    results = [queue.get(timeout=10) for _ in procs]
    queue.close()
    queue.join_thread()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return results


def _reserve_same_key(url: str, barrier: Any, queue: Any) -> None:
    box = PgOutbox(url)
    barrier.wait()
    got = box.reserve(
        key="same",
        campaign="c",
        account_id="a",
        contact_key="p",
        step="email",
        channel="email",
        sender="s",
    )
    queue.put(got.created)
    box.close()


def test_four_processes_reserving_one_key_get_one_winner(url: str) -> None:
    barrier = multiprocessing.get_context("spawn").Barrier(4, timeout=60)
    results = _run(_reserve_same_key, [(url, barrier)] * 4)
    assert sorted(results) == [False, False, False, True]
    box = PgOutbox(url)
    assert [e.key for e in box.entries()] == ["same"]
    box.close()


def _take_slots(url: str, worker: int, queue: Any) -> None:
    box = PgOutbox(url)
    won = 0
    for i in range(40):
        got = box.reserve(
            key=f"w{worker}-{i}",
            campaign="c",
            account_id=f"a{worker}-{i}",
            contact_key=f"p{worker}-{i}",
            step="linkedin_connect",
            channel="linkedin",
            sender="seat",
            limits=CAP,
        )
        won += got.created
        if not got.created:
            assert got.full == CAP[0] and got.used == 25, got
    queue.put(won)
    box.close()


def test_a_cap_holds_across_processes_racing_for_the_last_slots(url: str) -> None:
    """Four processes each try 40 connects as one seat under a cap of 25: exactly 25 win."""
    won = _run(_take_slots, [(url, w) for w in range(4)])
    assert sum(won) == 25, won
    box = PgOutbox(url)
    assert box.count("seat", "linkedin_connect", WEEK) == 25
    box.close()


def test_a_cap_holds_across_threads_sharing_one_pool(url: str) -> None:
    """Eight threads of one process, one pool: the same guarantee, from the database's locks."""
    db = Database(url, max_size=8)
    box = PgOutbox(db)
    won: list[int] = []

    def worker(w: int) -> None:
        for i in range(10):
            got = box.reserve(
                key=f"t{w}-{i}",
                campaign="c",
                account_id=f"a{w}-{i}",
                contact_key=f"p{w}-{i}",
                step="linkedin_connect",
                channel="linkedin",
                sender="seat",
                limits=CAP,
            )
            won.append(int(got.created))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) == 80 and sum(won) == 25
    assert box.count("seat", "linkedin_connect", WEEK) == 25
    db.close()


def _reserve_people(url: str, campaign: str, barrier: Any, queue: Any) -> None:
    box = PgOutbox(url)
    won = []
    for i in range(ROUNDS):
        barrier.wait()
        got = box.reserve(
            key=f"{campaign}-{i}",
            campaign=campaign,
            account_id=f"acct{i}.example",
            contact_key=f"person{i}@acct{i}.example",
            step="linkedin_visit",
            channel="linkedin",
            sender=f"seat-{campaign}",
            cooldown=WINDOWS,
        )
        if got.created:
            won.append(i)
        else:
            assert got.cooldown is not None and got.cooldown.entry.campaign != campaign
    queue.put((campaign, won))
    box.close()


def test_two_processes_reaching_one_person_from_two_campaigns_get_one_winner(url: str) -> None:
    """Each round both processes reserve the same person at a barrier: one wins, one cools."""
    barrier = multiprocessing.get_context("spawn").Barrier(2, timeout=60)
    won = dict(_run(_reserve_people, [(url, c, barrier) for c in ("spring", "summer")]))
    assert sorted(won["spring"] + won["summer"]) == list(range(ROUNDS)), won
    box = PgOutbox(url)
    assert len(box.entries()) == ROUNDS
    box.close()


def _mixed(url: str, campaign: str, seed: int, queue: Any) -> None:
    rng = random.Random(seed)
    box = PgOutbox(url)
    made = 0
    for i in range(40):
        person = rng.randrange(8)
        got = box.reserve(
            key=f"{campaign}-{i}",
            campaign=campaign,
            account_id=f"acct{rng.randrange(4)}",
            contact_key=f"person{person}",
            step=rng.choice(["linkedin_visit", "linkedin_connect"]),
            channel="linkedin",
            sender=f"seat{rng.randrange(2)}",
            cooldown=WINDOWS,
            limits=CAP,
        )
        made += got.created
    queue.put(made)
    box.close()


def test_random_mixes_never_deadlock_and_keep_every_cooldown(url: str) -> None:
    """Three campaigns, eight people at four accounts, two seats: locks taken in one order
    never wait in a circle, and no person or account hears from two campaigns."""
    made = _run(_mixed, [(url, c, s) for s, c in enumerate(("spring", "summer", "autumn"))])
    box = PgOutbox(url)
    entries = box.entries()
    box.close()
    assert sum(made) == len(entries) > 0
    by_person: dict[str, set[str]] = defaultdict(set)
    by_account: dict[str, set[str]] = defaultdict(set)
    for e in entries:
        by_person[e.contact_key].add(e.campaign)
        by_account[e.account_id].add(e.campaign)
    assert all(len(c) == 1 for c in by_person.values()), by_person
    assert all(len(c) == 1 for c in by_account.values()), by_account


def test_connections_the_server_dropped_are_replaced(
    url: str,
    postgres_server: PostgresServer,  # noqa: F811
) -> None:
    """A restart or failover ends every connection: the pool hands out fresh ones and nothing
    reserved before is lost."""
    db = Database(url, max_size=3)
    box = PgOutbox(db)
    kw: dict[str, Any] = {
        "campaign": "c",
        "account_id": "a",
        "contact_key": "p",
        "step": "email",
        "channel": "email",
        "sender": "s",
    }
    assert box.reserve(key="before", **kw).created
    name = url.rsplit("/", 1)[1]
    postgres_server.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{name}' AND pid != pg_backend_pid()"
    )
    assert not box.reserve(key="before", **kw).created
    assert box.reserve(key="after", **kw).created
    assert [e.key for e in box.entries()] == ["before", "after"]
    db.close()


def _record_key(url: str, worker: int, barrier: Any, queue: Any) -> None:
    keys = PgKeyLedger(url)
    barrier.wait()
    keys.put("k1", f"provider-{worker}")
    queue.put(keys.get("k1"))
    keys.close()


def test_the_key_ledger_keeps_the_first_answer_across_processes(url: str) -> None:
    """Four processes record one key with different provider ids: all read back one of them,
    the same one, and nothing else is kept."""
    barrier = multiprocessing.get_context("spawn").Barrier(4, timeout=60)
    seen = _run(_record_key, [(url, w, barrier) for w in range(4)])
    assert len(set(seen)) == 1 and seen[0] in {f"provider-{w}" for w in range(4)}, seen
    keys = PgKeyLedger(url)
    assert keys.get("k1") == seen[0] and keys.get("k2") is None
    keys.put("k1", "later")
    assert keys.get("k1") == seen[0]
    keys.close()
