"""`gtm run` with GTM_DATABASE_URL: the send ledger, the suppression list, the events and the
checkpoints live in Postgres, not in the data directory's SQLite files; a database whose schema
is behind this version is refused in one line before anything is written.

Against the real temporary cluster (`tests.support.postgres`) and the scripted model server, with
the real CLI in child processes, as a user runs it.
"""

from __future__ import annotations

import inspect
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg.rows import dict_row

from gtm.app.settings import Settings, load_settings
from gtm.app.stores import ON_POSTGRES, STILL_ON_SQLITE, check_schema, open_stores
from gtm.app.tracing import erased_check
from gtm.app.workspace import open_workspace
from gtm.domain.models import Contact
from tests.support.cli import example_list, run_gtm, scripted_env
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts
from tests.support.postgres import PostgresServer, postgres_server  # noqa: F401
from tools.events import EventStore
from tools.outbox import Outbox
from tools.pg import DatabaseError
from tools.pg_events import PgEventStore
from tools.pg_outbox import PgOutbox
from tools.pg_profiles import PgProfileStore
from tools.pg_suppression import PgSuppressionList
from tools.profiles import ProfileStore
from tools.suppression import SuppressionList

KEY = "sk-pg-run-secret-do-not-log"


@pytest.fixture
def model() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(responder=write_from_facts) as srv:
        yield srv


@pytest.fixture
def server(postgres_server: PostgresServer) -> PostgresServer:  # noqa: F811
    return postgres_server


def _env(model: ScriptedOpenAIServer, url: str) -> dict[str, str]:
    return scripted_env(model.base_url, KEY, GTM_DATABASE_URL=url)


def _csv(tmp_path: Path, rows: int) -> Path:
    return example_list(tmp_path, rows)


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def _threads(url: str) -> list[dict[str, Any]]:
    """The thread ledger's rows, read from Postgres (where the run keeps them)."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM threads ORDER BY id").fetchall()


def _mentions(url: str, needle: str) -> int:
    """Checkpoint rows of any of the three tables whose stored bytes hold `needle`."""
    sql = (
        "SELECT (SELECT COUNT(*) FROM checkpoints"
        "  WHERE strpos(lower(checkpoint::text || metadata::text), lower(%(n)s)) > 0)"
        " + (SELECT COUNT(*) FROM checkpoint_blobs"
        "  WHERE position(convert_to(%(n)s, 'UTF8') in blob) > 0)"
        " + (SELECT COUNT(*) FROM checkpoint_writes"
        "  WHERE position(convert_to(%(n)s, 'UTF8') in blob) > 0)"
    )
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, {"n": needle}).fetchone()
    assert row is not None
    return int(row[0])


def _twin_sends(data: Path) -> list[tuple[str, str]]:
    """What the local LinkedIn twin actually performed: (kind, profile) per action."""
    db = sqlite3.connect(data / "linkedin.sqlite")
    try:
        return db.execute("SELECT kind, profile_url FROM actions ORDER BY n").fetchall()
    finally:
        db.close()


@pytest.mark.timeout(400)
def test_a_run_on_postgres_sends_once_and_keeps_its_checkpoints_there(
    server: PostgresServer, model: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    url = server.new_database()
    env, data, csv = _env(model, url), tmp_path / "data", _csv(tmp_path, 2)
    try:
        done = run_gtm(env, "--data-dir", str(data), "run", str(csv), "--campaign", "pg")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"Postgres holds the {', '.join(ON_POSTGRES)}" in done.stderr, done.stderr
        assert f"still hold the {', '.join(STILL_ON_SQLITE)}" in done.stderr
        waiting = [r for r in _threads(url) if r["status"] == "waiting_for_approval"]
        assert waiting, [(r["status"], r["detail"]) for r in _threads(url)]

        # The checkpoints are in Postgres, one thread per ledger row; no checkpoints file.
        (n_threads,) = _query(url, "SELECT COUNT(DISTINCT thread_id) FROM checkpoints")[0]
        assert n_threads == len(_threads(url))
        assert not (data / "checkpoints.sqlite").exists()

        first = waiting[0]
        sent = run_gtm(env, "--data-dir", str(data), "approve", str(first["id"]))
        assert sent.returncode == 0 and "sent" in sent.stdout, sent.stdout + sent.stderr
        rows = _query(url, "SELECT account_id, step, state FROM outbox ORDER BY seq")
        assert rows == [
            (first["account_id"], "linkedin_visit", "sent"),
            (first["account_id"], "linkedin_connect", "sent"),
        ], rows
        assert [kind for kind, _ in _twin_sends(data)] == ["visit", "connect"]
        for name in ("outbox.sqlite", "suppressions.sqlite", "checkpoints.sqlite", "ledger.sqlite"):
            assert not (data / name).exists(), name

        # Deciding again, and running the campaign again, send nothing twice.
        calls = len(model.requests)
        twice = run_gtm(env, "--data-dir", str(data), "approve", str(first["id"]))
        assert twice.returncode == 1 and "already decided" in twice.stderr, twice.stderr
        again = run_gtm(env, "--data-dir", str(data), "run", str(csv), "--campaign", "pg")
        assert again.returncode == 0 and "already done or waiting" in again.stdout, again.stdout
        assert len(model.requests) == calls
        assert _query(url, "SELECT account_id, step, state FROM outbox ORDER BY seq") == rows
        assert len(_twin_sends(data)) == 2
        (left,) = _query(
            url, "SELECT COUNT(*) FROM checkpoint_writes WHERE channel = '__interrupt__'"
        )[0]
        assert left >= 1  # the other drafts still wait, their interrupts kept in Postgres

        for out in (done, sent, twice, again):
            assert KEY not in out.stdout + out.stderr

        # An erasure reaches the checkpoints in Postgres: every table, every copy.
        person = ("theo@quillcode.dev", "linkedin.com/in/theo-marchetti", "Theo Marchetti")
        assert _mentions(url, person[0]) > 0  # so the check below can fail
        gone = run_gtm(env, "--data-dir", str(data), "forget", person[0], "--yes")
        assert gone.returncode == 0, gone.stdout + gone.stderr
        for needle in person:
            assert _mentions(url, needle) == 0, needle
        (hashed,) = _query(url, "SELECT COUNT(*) FROM suppressions WHERE kind = 'erased'")[0]
        assert hashed >= 1 and _query(url, "SELECT COUNT(*) FROM erasures")[0] == (1,)
    finally:
        server.drop(url)


def test_a_database_behind_this_version_is_refused_in_one_line_and_nothing_is_written(
    server: PostgresServer, model: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    url = server.new_database(migrated=False)
    env, data = _env(model, url), tmp_path / "data"
    try:
        res = run_gtm(env, "--data-dir", str(data), "run", str(_csv(tmp_path, 1)))
        assert res.returncode == 2, res.stdout + res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "no gtm schema" in lines[0], res.stderr
        assert "run `gtm db upgrade`" in lines[0]
        assert not data.exists()  # no data directory, no campaign recorded, no thread
        assert model.requests == []
        tables = _query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert tables == []

        # A command that opens the workspace without the run's early check says it in one line.
        inbox = run_gtm(env, "--data-dir", str(data), "inbox")
        assert inbox.returncode == 2, inbox.stdout + inbox.stderr
        assert inbox.stderr.count("\n") == 1 and "run `gtm db upgrade`" in inbox.stderr
        assert "Traceback" not in inbox.stderr and not data.exists()
    finally:
        server.drop(url)


def test_checkpoint_migrations_behind_are_refused_too(server: PostgresServer) -> None:
    url = server.new_database()
    try:
        check_schema(url)  # up to date: no complaint
        (top,) = _query(url, "SELECT MAX(v) FROM checkpoint_migrations")[0]
        server.execute(f"DELETE FROM checkpoint_migrations WHERE v = {top}", url.rsplit("/", 1)[1])
        with pytest.raises(DatabaseError, match=rf"has {top} of {top + 1} checkpoint migrations"):
            check_schema(url)
    finally:
        server.drop(url)


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str | None) -> Settings:
    monkeypatch.setenv("GTM_DATA_DIR", str(tmp_path / "data"))
    if url is None:
        monkeypatch.delenv("GTM_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("GTM_DATABASE_URL", url)
    return load_settings()


def _sessions_end(url: str) -> bool:
    """No session but the asking one is left on the database (a closed connection's server
    process may take a moment to leave pg_stat_activity)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sql = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
        if _query(url, sql)[0][0] == 1:
            return True
        time.sleep(0.1)
    return False


async def test_the_workspace_opens_the_postgres_stores_on_one_pool_and_closes_it(
    server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.new_database()
    settings = _settings(tmp_path, monkeypatch, url)
    try:
        async with open_workspace(settings, with_model=False, memory_on_demand=True) as rt:
            deps = rt.deps
            assert isinstance(deps.outbox, PgOutbox)
            assert isinstance(deps.suppressions, PgSuppressionList)
            assert isinstance(deps.events, PgEventStore) and rt.events is deps.events
            assert isinstance(rt.profiles, PgProfileStore)
            assert isinstance(rt.graph.checkpointer, AsyncPostgresSaver)
            deps.suppressions.add("email", "Opted.Out@Example.com", "asked")
        (row,) = _query(url, "SELECT kind, value FROM suppressions")
        assert row == ("email", "opted.out@example.com")
        assert not (tmp_path / "data" / "suppressions.sqlite").exists()
        assert not (tmp_path / "data" / "profiles.sqlite").exists()
        assert _sessions_end(url)  # the workspace's pools are closed
    finally:
        server.drop(url)


async def test_without_the_url_every_store_stays_a_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, monkeypatch, None)
    with open_stores(settings, lambda: datetime.now(UTC)) as stores:
        assert type(stores.outbox) is Outbox and type(stores.suppressions) is SuppressionList
        assert type(stores.events) is EventStore and stores.database is None
    async with open_workspace(settings, with_model=False, memory_on_demand=True) as rt:
        assert isinstance(rt.graph.checkpointer, AsyncSqliteSaver)
    files = {p.name for p in (tmp_path / "data").iterdir()}
    assert {"outbox.sqlite", "suppressions.sqlite", "checkpoints.sqlite"} <= files


def test_traces_ask_the_database_who_was_erased(
    server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LangSmith redaction reads the suppression list the workspace writes to: with the
    URL set, an erasure recorded in Postgres keeps the person out of traces."""
    url = server.new_database()  # not dropped: the check's pool stays open until exit
    dana = Contact(
        name="Dana Ruiz",
        title="VP Engineering",
        linkedin_url="https://www.linkedin.com/in/dana-ruiz",
        email="dana@quillcode.dev",
    )
    omar = Contact(name="Omar Haddad", title="CTO", email="omar@quillcode.dev")
    store = PgSuppressionList(url)
    try:
        assert dana.email and dana.linkedin_url
        store.erase(
            [("email", dana.email), ("linkedin", dana.linkedin_url), ("person_key", dana.key)],
            reason="erasure request",
        )
    finally:
        store.close()
    on_postgres = erased_check(_settings(tmp_path, monkeypatch, url))
    assert on_postgres(dana) and not on_postgres(omar)
    assert not erased_check(_settings(tmp_path, monkeypatch, None))(dana)  # the file knows not


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [
        (Outbox, PgOutbox),
        (SuppressionList, PgSuppressionList),
        (EventStore, PgEventStore),
        (ProfileStore, PgProfileStore),
    ],
)
def test_each_postgres_store_answers_every_method_of_its_sqlite_class(
    sqlite: type, postgres: type
) -> None:
    """What makes `gtm.app.stores` hand a Postgres store where the SQLite class is named."""
    public = [n for n in dir(sqlite) if not n.startswith("_")]
    assert public
    for name in public:
        assert inspect.signature(getattr(postgres, name)) == inspect.signature(
            getattr(sqlite, name)
        ), name
