"""A database that goes away mid-run (issue 17, "Bad input"): a store call waits for it and
succeeds once it is back, writing exactly once; one that stays away gives one `DatabaseError`
line, without the password, after the retry window; a failure at COMMIT is not run again
unless the method is safe to run twice.

Against a dedicated temporary cluster (`tests.support.postgres.start_cluster`), stopped and
started again by these tests: the session's shared `postgres_server` is never stopped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import PoolClosed, PoolTimeout

from gtm.app.settings import Settings
from gtm.app.stores import open_checkpointer
from tests.support.postgres import PASSWORD_ROLE, PostgresServer, find_bindir, start_cluster
from tools.pg import CommitUnknown, Database, DatabaseError, is_away
from tools.pg_events import PgEventStore
from tools.pg_outbox import PgOutbox

SECRET = "outage-pw-do-not-print"


@dataclass
class Cluster:
    """Our own cluster, which a test may stop and start again on the same data and port."""

    server: PostgresServer
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Fast shutdown (SIGINT): the server ends every session and stops listening."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)

    def start(self) -> None:
        st = self.server.root.stat()
        root = os.geteuid() == 0  # then run it as the cluster's owner, as start_cluster did
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"}
        with (self.server.root / "restart.log").open("ab") as log:
            self.proc = subprocess.Popen(
                list(self.proc.args),  # type: ignore[arg-type]
                cwd=self.server.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=st.st_uid if root else None,
                group=st.st_gid if root else None,
                extra_groups=[] if root else None,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                psycopg.connect(self.server.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise AssertionError("the restarted server did not accept connections in 30 s")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, postgres) found")
    server, proc = start_cluster(bindir)
    c = Cluster(server, proc)
    try:
        yield c
    finally:
        if c.proc.poll() is None:
            c.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def _password_url(c: Cluster) -> str:
    """A migrated database reached as a role that must give its password."""
    url = c.server.new_database()
    c.server.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN SUPERUSER PASSWORD '{SECRET}'")
    return c.server.url(url.rsplit("/", 1)[1], user=PASSWORD_ROLE, password=SECRET)


def _outbox_rows(c: Cluster, url: str) -> list[tuple[str, str]]:
    dbname = url.rsplit("/", 1)[1]
    with psycopg.connect(c.server.url(dbname)) as conn:
        return [(k, s) for k, s in conn.execute("SELECT key, state FROM outbox").fetchall()]


def _reserve(outbox: PgOutbox, key: str) -> Any:
    return outbox.reserve(
        key=key,
        campaign="c1",
        account_id="a1",
        contact_key="p1",
        step="linkedin_connect",
        channel="linkedin",
        sender="seat-1",
    )


def test_which_errors_mean_the_database_is_away() -> None:
    assert is_away(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert is_away(psycopg.errors.AdminShutdown("terminating connection"))
    assert is_away(psycopg.errors.CannotConnectNow("the database system is starting up"))
    assert is_away(psycopg.errors.ConnectionFailure("connection failure"))
    assert is_away(PoolTimeout("couldn't get a connection"))
    assert is_away(CommitUnknown("lost at commit"))
    # Class 40 is an OperationalError too, but it is a lost race, not a lost server.
    assert not is_away(psycopg.errors.SerializationFailure("could not serialize"))
    assert not is_away(psycopg.errors.DeadlockDetected("deadlock"))
    assert not is_away(psycopg.errors.QueryCanceled("canceling statement"))
    assert not is_away(psycopg.errors.UniqueViolation("duplicate key"))
    assert not is_away(PoolClosed("the pool is closed"))
    assert not is_away(ValueError("not a database error"))


def test_a_call_waits_for_the_server_and_writes_once(cluster: Cluster) -> None:
    url = _password_url(cluster)
    db = Database(url, retry_window=60)
    outbox = PgOutbox(db)
    try:
        assert outbox.get("warm") is None  # the pool holds a live connection now
        cluster.stop()
        result: dict[str, Any] = {}
        began = time.monotonic()

        def call() -> None:
            try:
                result["got"] = _reserve(outbox, "k1")
            except BaseException as exc:  # noqa: BLE001 - the main thread asserts on it
                result["error"] = exc

        worker = threading.Thread(target=call)
        worker.start()
        time.sleep(2.0)
        assert worker.is_alive(), f"the call did not wait for the server: {result}"
        cluster.start()
        worker.join(timeout=60)
        assert not worker.is_alive()
        assert "error" not in result, result
        assert result["got"].created
        assert time.monotonic() - began >= 2.0
        assert _outbox_rows(cluster, url) == [("k1", "pending")]
        # The dead pooled connection was replaced: the next call needs no retry.
        outbox.mark_sent("k1", "prov-1")
        assert _outbox_rows(cluster, url) == [("k1", "sent")]
    finally:
        db.close()


def test_a_server_that_stays_away_is_one_line_without_the_password(cluster: Cluster) -> None:
    url = _password_url(cluster)
    db = Database(url, retry_window=1.5)
    events = PgEventStore(db)
    try:
        assert events.empty()
        cluster.stop()
        began = time.monotonic()
        with pytest.raises(DatabaseError) as raised:
            events.seen("some-key")
        waited = time.monotonic() - began
        message = str(raised.value)
        assert 1.5 <= waited < 10, waited
        assert "\n" not in message
        assert "went away and did not come back within 1.5 s" in message
        assert "nothing decided is lost" in message
        assert SECRET not in message and SECRET not in repr(raised.value)
        assert raised.value.__cause__ is None and raised.value.__suppress_context__
    finally:
        db.close()


def _kill_own_backend(c: Cluster, conn: psycopg.Connection[Any]) -> None:
    """End this connection's server process from another session (as a failover does)."""
    pid = conn.info.backend_pid
    with psycopg.connect(c.server.url(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_connection_lost_before_commit_is_run_again_whole(cluster: Cluster) -> None:
    url = cluster.server.new_database()
    db = Database(url, retry_window=30)
    calls = 0

    def write() -> int:
        nonlocal calls
        calls += 1
        with db.connection() as conn:
            if calls == 1:
                _kill_own_backend(cluster, conn)
            conn.execute("INSERT INTO acted (key, provider_id) VALUES ('k', 'p')")
        return calls

    try:
        assert db.retry(write, idempotent=False) == 2
        assert _count(cluster, url, "acted") == 1
    finally:
        db.close()


def test_a_lost_commit_is_run_again_only_when_safe(cluster: Cluster) -> None:
    """The backend is ended after the statements, before COMMIT: the driver cannot tell
    whether it committed (`CommitUnknown`), so only an idempotent call is run again."""
    url = cluster.server.new_database()
    db = Database(url, retry_window=30)
    calls = 0

    def write(sql: str) -> None:
        nonlocal calls
        calls += 1
        with db.connection() as conn:
            conn.execute(sql)
            if calls == 1:
                _kill_own_backend(cluster, conn)

    try:
        with pytest.raises(DatabaseError) as raised:
            db.retry(lambda: write("INSERT INTO acted VALUES ('k1', 'p1')"), idempotent=False)
        assert calls == 1
        assert "may or may not have been saved" in str(raised.value)
        assert "\n" not in str(raised.value)
        assert _count(cluster, url, "acted") == 0  # here it had not committed
        calls = 0
        upsert = "INSERT INTO acted VALUES ('k2', 'p2') ON CONFLICT (key) DO NOTHING"
        db.retry(lambda: write(upsert), idempotent=True)
        assert calls == 2
        assert _count(cluster, url, "acted") == 1
    finally:
        db.close()


def _count(c: Cluster, url: str, table: str) -> int:
    with psycopg.connect(c.server.url(url.rsplit("/", 1)[1])) as conn:
        row = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_the_checkpointer_waits_for_the_server_and_replaces_its_connections(
    cluster: Cluster, tmp_path: Path
) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    url = _password_url(cluster)
    settings = Settings(data_dir=tmp_path, database_url=url, database_retry_s=60)
    config: Any = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}

    async def scenario() -> None:
        async with open_checkpointer(settings) as saver:
            assert await saver.aget_tuple(config) is None
            cluster.stop()
            checkpoint = empty_checkpoint()
            put = asyncio.ensure_future(
                saver.aput(config, checkpoint, {"source": "input", "step": 0}, {})
            )
            await asyncio.sleep(2.0)
            assert not put.done(), "the write did not wait for the server"
            await asyncio.to_thread(cluster.start)
            await asyncio.wait_for(put, timeout=60)
            got = await saver.aget_tuple(config)
            assert got is not None and got.checkpoint["id"] == checkpoint["id"]
        assert _count(cluster, url, "checkpoints") == 1

    asyncio.run(scenario())


def test_the_checkpointer_gives_one_line_when_the_server_stays_away(
    cluster: Cluster, tmp_path: Path
) -> None:
    url = _password_url(cluster)
    settings = Settings(data_dir=tmp_path, database_url=url, database_retry_s=1.5)
    config: Any = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}

    async def scenario() -> str:
        async with open_checkpointer(settings) as saver:
            assert await saver.aget_tuple(config) is None
            cluster.stop()
            with pytest.raises(DatabaseError) as raised:
                await saver.aget_tuple(config)
            return str(raised.value)

    began = datetime.now(UTC)
    message = asyncio.run(scenario())
    assert (datetime.now(UTC) - began).total_seconds() < 30
    assert "went away and did not come back within 1.5 s" in message
    assert "\n" not in message and SECRET not in message


@pytest.mark.timeout(400)
def test_a_run_whose_database_goes_away_stops_in_one_line_and_resumes_once_it_is_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The model server stops the database in the middle of `gtm run` (during the second
    model call). The run waits out the retry window, then stops with one line; once the server
    is back the same command carries on, and approving sends each step exactly once."""
    from tests.support.cli import example_list, run_gtm, scripted_env
    from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts

    url = _password_url(cluster)
    calls = 0

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 2:
            cluster.stop()
        return write_from_facts(body)

    csv = example_list(tmp_path, 3)
    data = tmp_path / "data"
    with ScriptedOpenAIServer(responder=respond) as model:
        env = scripted_env(
            model.base_url, "sk-outage", GTM_DATABASE_URL=url, GTM_DATABASE_RETRY_S="3"
        )
        run = ("--data-dir", str(data), "run", str(csv), "--campaign", "outage")
        broken = run_gtm(env, *run)
        assert cluster.proc.poll() is not None, (calls, broken.stdout, broken.stderr)
        assert broken.returncode != 0, broken.stdout + broken.stderr
        said = [line for line in broken.stderr.splitlines() if line.startswith("error:")]
        assert len(said) == 1 and "went away" in said[0], broken.stderr
        assert "run the command again once it is back" in said[0]
        assert SECRET not in broken.stdout + broken.stderr
        assert "Traceback" not in broken.stderr, broken.stderr  # a failed renewal: one line

        cluster.start()
        again = run_gtm(env, *run)
        assert again.returncode == 0, again.stdout + again.stderr
        admin = cluster.server.url(url.rsplit("/", 1)[1])
        with psycopg.connect(admin) as conn:
            statuses = conn.execute("SELECT status FROM threads ORDER BY id").fetchall()
            waiting = conn.execute(
                "SELECT id, account_id FROM threads WHERE status = 'waiting_for_approval'"
                " ORDER BY id"
            ).fetchall()
        assert len(waiting) == len(statuses) == 2, (statuses, again.stdout)
        sent = run_gtm(env, "--data-dir", str(data), "approve", str(waiting[0][0]))
        assert sent.returncode == 0 and "sent" in sent.stdout, sent.stdout + sent.stderr
        third = run_gtm(env, *run)
        assert third.returncode == 0, third.stdout + third.stderr
    with psycopg.connect(admin) as conn:
        rows = conn.execute("SELECT account_id, step, state FROM outbox ORDER BY seq").fetchall()
    assert rows == [
        (waiting[0][1], "linkedin_visit", "sent"),
        (waiting[0][1], "linkedin_connect", "sent"),
    ]
    import sqlite3

    twin = sqlite3.connect(data / "linkedin.sqlite")
    try:
        assert [k for (k,) in twin.execute("SELECT kind FROM actions ORDER BY n")] == [
            "visit",
            "connect",
        ]
    finally:
        twin.close()
