"""Account leases (`tools.pg_leases`) when the database goes away at COMMIT, and a worker whose
lease was taken over while it still worked (issue 17, workers; "a database that goes away
mid-run").

Every `AccountLeases` call is run again while the database is away, including after an
ambiguous COMMIT, so each must answer the same the second time. Two ways the COMMIT is lost:
the connection's server process is ended after the statements and before COMMIT, as
tests/test_pg_outage.py does (the change was not made; the driver cannot tell), and a COMMIT
that was made and whose answer is then lost (the case a rerun must recognise as its own),
made by a pool that raises `CommitUnknown` after a real commit. Against the session's
temporary Postgres cluster, which is never stopped: only our own backend is ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from gtm.app.workers import Lanes
from gtm.domain.models import Account
from tests.support.postgres import database_url, postgres_server  # noqa: F401
from tools.pg import CommitUnknown, Database
from tools.pg_leases import AccountLeases

SHORT = timedelta(seconds=1)


class LosingDatabase(Database):
    """A pool whose next transaction(s) lose their COMMIT: `kill` ends the connection's server
    process before COMMIT (nothing committed); `lose_answer` commits, then raises
    `CommitUnknown` as a connection lost right after the server committed would."""

    def __init__(self, url: str) -> None:
        super().__init__(url, max_size=2, retry_window=20)
        self.admin_url = url
        self.kill = 0
        self.lose_answer = 0
        self.commits = 0
        self.when_lost: list[Any] = []
        """What `on_lost` saw, each time an answer was lost after a commit."""
        self.on_lost: Any = None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if self.lose_answer:
            self.lose_answer -= 1
            with super().connection() as conn:
                yield conn
            self.commits += 1
            if self.on_lost is not None:
                self.when_lost.append(self.on_lost())
            raise CommitUnknown("server closed the connection unexpectedly (answer lost)")
        with super().connection() as conn:
            yield conn
            if self.kill:
                self.kill -= 1
                with psycopg.connect(self.admin_url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        self.commits += 1


def _row(url: str, account: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT worker, takes, taken_from, done_at FROM account_leases"
            " WHERE campaign = 'c' AND account_id = %s",
            (account,),
        ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize("how", ["kill", "lose_answer"])
def test_every_lease_call_answers_the_same_after_a_lost_commit(url: str, how: str) -> None:
    db = LosingDatabase(url)
    me = AccountLeases(db, worker="me")
    other = AccountLeases(url, worker="other")
    try:
        setattr(db, how, 1)
        assert me.take("c", "acme.com") == "taken"  # not "held" by itself
        assert (me.taken, me.taken_over) == (1, 0)
        assert _row(url, "acme.com")[:3] == ("me", 1, None)
        assert other.take("c", "acme.com") == "held"

        setattr(db, how, 1)
        assert me.renew("c", ["acme.com"]) == {"acme.com"}

        setattr(db, how, 1)
        assert me.holders("c", ["acme.com"]) == {"acme.com": "me"}

        setattr(db, how, 1)
        assert me.release("c", "acme.com", done=True)  # True again: its own release found
        worker, takes, _, done_at = _row(url, "acme.com")
        assert worker is None and takes == 1 and done_at is not None
        assert other.take("c", "acme.com") == "done"  # finished, so the others skip it
        assert getattr(db, how) == 0  # the loss happened each time
    finally:
        me.close()
        other.close()
        db.close()


def test_a_release_run_again_keeps_the_first_finish_time(url: str) -> None:
    db = LosingDatabase(url)
    me = AccountLeases(db, worker="me")
    try:
        assert me.take("c", "acme.com") == "taken"
        db.on_lost = lambda: _row(url, "acme.com")[3]  # done_at as the first run committed it
        db.lose_answer = 1
        assert me.release("c", "acme.com", done=True)
        (first,) = db.when_lost
        assert first is not None and db.commits == 4  # start, take, release, its rerun
        assert _row(url, "acme.com")[3] == first  # the rerun (a retry later) kept it
    finally:
        me.close()
        db.close()


def test_a_stale_holder_cannot_release_or_finish_a_lease_taken_over(url: str) -> None:
    """The lease ran out, another worker took it over: the old holder's release (also when
    run again after a lost commit) changes nothing and says False."""
    db = LosingDatabase(url)
    slow = AccountLeases(db, worker="slow", lease_for=SHORT)
    fast = AccountLeases(url, worker="fast")
    try:
        assert slow.take("c", "acme.com") == "taken"
        time.sleep(1.3)
        assert fast.take("c", "acme.com") == "taken" and fast.taken_over == 1
        db.lose_answer = 1
        assert not slow.release("c", "acme.com", done=True)
        assert _row(url, "acme.com") == ("fast", 2, "slow", None)
        assert fast.release("c", "acme.com", done=True)
    finally:
        slow.close()
        fast.close()
        db.close()


async def test_a_worker_whose_lease_was_taken_over_mid_work_marks_nothing_and_says_so_once(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker is blocked past its lease (a paused machine), another worker takes the
    account over; when the first gets back its renewal learns it, it finishes its step, and
    the account is left to the other worker, not marked finished: one warning line."""
    slow = AccountLeases(url, worker="slow", lease_for=SHORT)
    fast = AccountLeases(url, worker="fast")
    lanes = Lanes(slow, "c")
    taken_over: list[str] = []

    async def work(account: Account) -> None:
        time.sleep(1.3)  # blocked: no renewal runs on this event loop
        taken_over.append(fast.take("c", account.account_id))
        await asyncio.sleep(0.8)  # back: the renewal (every third of a second) notices

    try:
        with caplog.at_level(logging.WARNING, logger="gtm.workers"):
            acme = Account(account_id="acme.com", company="Acme", domain="acme.com")
            await lanes.run([acme], work, lanes=1)
        assert taken_over == ["taken"]
        assert lanes.lost == {"acme.com"}
        assert _row(url, "acme.com") == ("fast", 2, "slow", None)  # not finished, fast's
        said = [r.getMessage() for r in caplog.records if "acme.com" in r.getMessage()]
        assert len(said) == 1 and "not mark" in said[0], said
        assert fast.release("c", "acme.com", done=True)
    finally:
        slow.close()
        fast.close()


async def test_a_worker_that_finishes_before_its_renewal_notices_still_marks_nothing(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    slow = AccountLeases(url, worker="slow", lease_for=SHORT)
    fast = AccountLeases(url, worker="fast")
    lanes = Lanes(slow, "c")

    async def work(account: Account) -> None:
        time.sleep(1.3)
        assert fast.take("c", account.account_id) == "taken"

    try:
        with caplog.at_level(logging.WARNING, logger="gtm.workers"):
            acme = Account(account_id="acme.com", company="Acme", domain="acme.com")
            await lanes.run([acme], work, lanes=1)
        assert _row(url, "acme.com") == ("fast", 2, "slow", None)
        said = [r.getMessage() for r in caplog.records if "acme.com" in r.getMessage()]
        assert len(said) == 1 and "not marked finished" in said[0], said
    finally:
        slow.close()
        fast.close()
