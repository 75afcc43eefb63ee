"""Account leases (`tools.pg_leases`) against the real temporary Postgres cluster: one worker per
account however many race for it, renewals that keep it, and a takeover once a lease runs out.
The worker loop on top (`gtm.app.workers.Lanes`) is checked here too, in-process."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from gtm.app.workers import END_OF_RUN, Lanes
from gtm.domain.models import Account
from tests.support.postgres import database_url, postgres_server  # noqa: F401
from tools.pg_leases import AccountLeases

SHORT = timedelta(seconds=1)


def _rows(url: str) -> dict[str, tuple[str | None, int]]:
    with psycopg.connect(url) as conn:
        got = conn.execute("SELECT account_id, worker, takes FROM account_leases").fetchall()
    return {a: (w, t) for a, w, t in got}


def test_a_free_account_is_leased_to_one_worker_and_the_other_is_told_it_is_held(
    url: str,
) -> None:
    a, b = AccountLeases(url, worker="a"), AccountLeases(url, worker="b")
    try:
        assert a.take("c", "acme.com") == "taken"
        assert b.take("c", "acme.com") == "held"
        assert a.take("c", "acme.com") == "taken"  # its own lease: taken again, renewed
        assert b.take("other", "acme.com") == "taken"  # leases are per campaign
        assert a.renew("c", {"acme.com", "never.com"}) == {"acme.com"}
        assert b.renew("c", {"acme.com"}) == set()  # not b's
        assert not b.release("c", "acme.com", done=True)  # b cannot give back a's lease
        assert a.release("c", "acme.com", done=False)
        assert b.take("c", "acme.com") == "taken"  # given back unfinished: free for b
        assert b.release("c", "acme.com", done=True)
        assert a.take("c", "acme.com") == "done"  # b finished it after a started
        assert b.holders("c", ["acme.com"]) == {}
        later = AccountLeases(url, worker="later")  # a worker started after: re-checks it
        try:
            assert later.take("c", "acme.com") == "taken" and later.taken_over == 0
        finally:
            later.close()
        assert (a.taken, a.taken_over, b.taken, b.taken_over) == (2, 0, 2, 0)
        assert _rows(url)["acme.com"] == ("later", 3)  # a, then b, then later
    finally:
        a.close()
        b.close()


def test_a_lease_that_runs_out_is_taken_over_and_its_old_holder_cannot_renew_it(
    url: str,
) -> None:
    dead, alive = AccountLeases(url, worker="dead", lease_for=SHORT), AccountLeases(url)
    try:
        assert dead.take("c", "acme.com") == "taken"
        assert alive.take("c", "acme.com") == "held"
        assert alive.holders("c", ["acme.com", "x.com"]) == {"acme.com": "dead"}
        time.sleep(1.3)  # the database's clock passes the lease
        assert alive.holders("c", ["acme.com"]) == {}
        assert alive.take("c", "acme.com") == "taken" and alive.taken_over == 1
        assert dead.renew("c", {"acme.com"}) == set()  # it learns it lost the account
        assert not dead.release("c", "acme.com", done=True)  # and cannot mark it finished
        assert _rows(url)["acme.com"] == (alive.worker, 2)
    finally:
        dead.close()
        alive.close()


def test_renewing_keeps_a_lease_past_its_length(url: str) -> None:
    holder, other = AccountLeases(url, lease_for=SHORT), AccountLeases(url)
    try:
        assert holder.take("c", "acme.com") == "taken"
        for _ in range(4):
            time.sleep(0.4)
            assert holder.renew("c", ["acme.com"]) == {"acme.com"}
        assert other.take("c", "acme.com") == "held"  # 1.6 s on a 1 s lease, still held
    finally:
        holder.close()
        other.close()


ACCOUNTS = [f"a{i:03d}.com" for i in range(60)]


def _race(url: str, name: str, start: Any, out: Any) -> None:
    """One worker: connects, waits at the barrier for all the others, then asks for every
    account once, in an order of its own (so the workers meet on the same rows midway)."""
    leases = AccountLeases(url, worker=name)
    order = random.Random(name).sample(ACCOUNTS, len(ACCOUNTS))
    try:
        start.wait(timeout=120)
        out.put([a for a in order if leases.take("race", a) == "taken"])
    finally:
        leases.close()


def test_workers_racing_in_processes_and_threads_each_get_an_account_exactly_once(
    url: str,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start = ctx.Barrier(8)  # every process and thread connected before any asks
    procs = [ctx.Process(target=_race, args=(url, f"p{i}", start, out)) for i in range(4)]
    threads = [threading.Thread(target=_race, args=(url, f"t{i}", start, out)) for i in range(4)]
    for proc in procs:
        proc.start()
    for thread in threads:
        thread.start()
    got = [out.get(timeout=180) for _ in range(8)]
    for proc in procs:
        proc.join(timeout=30)
    for thread in threads:
        thread.join(timeout=30)
    counts = Counter(a for share in got for a in share)
    assert sorted(counts) == ACCOUNTS and set(counts.values()) == {1}, counts.most_common(3)
    assert sum(1 for share in got if share) >= 2  # a real race: more than one worker won some
    rows = _rows(url)
    assert len(rows) == len(ACCOUNTS) and {t for _, t in rows.values()} == {1}


def _account(domain: str) -> Account:
    return Account(account_id=domain, company=domain.split(".")[0].title(), domain=domain)


async def test_lanes_split_a_campaign_wait_for_a_held_account_and_take_over_a_dead_one(
    url: str,
) -> None:
    accounts = [_account(f"w{i}.com") for i in range(12)]
    dead = AccountLeases(url, worker="dead", lease_for=SHORT)
    assert dead.take("c", "w5.com") == "taken"  # a killed worker's lease, never renewed
    worked: list[tuple[str, str]] = []
    tails: list[str] = []

    async def worker(name: str) -> None:
        leases = AccountLeases(url, worker=name, lease_for=timedelta(seconds=1.5))

        async def work(account: Account) -> None:
            worked.append((name, account.account_id))
            await asyncio.sleep(0.2)  # longer than the poll: the others must wait for it

        async def tail() -> None:
            tails.append(name)

        try:
            await Lanes(leases, "c").run(accounts, work, lanes=2, tail=tail)
        finally:
            leases.close()

    await asyncio.gather(worker("x"), worker("y"), worker("z"))
    dead.close()
    counts = Counter(a for _, a in worked)
    assert sorted(counts) == sorted(a.account_id for a in accounts)
    assert set(counts.values()) == {1}, counts  # each worked once, the dead one's included
    assert len({n for n, _ in worked}) == 3
    assert len(tails) == 1  # the end-of-run pass ran once, under its own lease
    rows = _rows(url)
    assert rows["w5.com"][1] == 2 and rows[END_OF_RUN][0] is None
    assert all(w is None for w, _ in rows.values())  # every lease given back


async def test_a_lane_that_fails_stops_the_others_and_every_account_is_given_back(
    url: str,
) -> None:
    leases = AccountLeases(url, worker="failing")
    slow_started = asyncio.Event()

    async def work(account: Account) -> None:
        if account.account_id == "slow.com":
            slow_started.set()
            await asyncio.sleep(60)  # cancelled when the other lane fails
        await slow_started.wait()
        raise RuntimeError("boom")

    accounts = [_account("slow.com"), _account("acme.com")]
    started = time.monotonic()
    with pytest.raises(RuntimeError):
        await Lanes(leases, "c").run(accounts, work, lanes=2)
    assert time.monotonic() - started < 30
    other = AccountLeases(url, worker="other")
    try:  # both free for another worker, neither marked finished
        assert other.take("c", "acme.com") == "taken"
        assert other.take("c", "slow.com") == "taken"
    finally:
        other.close()
        leases.close()
