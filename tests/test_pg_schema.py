"""The Postgres schema: its migrations, `gtm db upgrade|status`, and one clear line for bad input.

Against the real test server (`tests.support.postgres`): a fresh database is migrated by the
CLI, the result matches the SQLite stores column for column, LangGraph's checkpointer works on
it without further set-up, and a wrong password, host, database or schema each give one line
that names the problem and never the password.
"""

from __future__ import annotations

import inspect
import sqlite3
from pathlib import Path
from typing import Any, TypedDict

import pytest
from typer.testing import CliRunner

from gtm.app.campaigns import CampaignBook
from gtm.app.ledger import Ledger
from gtm.app.settings import SettingsError, load_settings
from tests.support.postgres import PASSWORD_ROLE, PostgresServer, postgres_server  # noqa: F401
from tools.events import EventStore
from tools.outbox import Outbox
from tools.pg import SCHEMA_HEAD, Database, DatabaseError, redact
from tools.pg_events import PgEventStore
from tools.pg_keys import PgKeyLedger
from tools.pg_migrate import head, status
from tools.pg_outbox import PgOutbox
from tools.pg_profiles import PgProfileStore
from tools.pg_suppression import PgSuppressionList
from tools.profiles import ProfileStore
from tools.sqlite import KeyLedger
from tools.suppression import SuppressionList

SECRET = "S3cret-pw-9f2"
ADDED_FOR_ORDER = {"seq"}
"""Postgres has no rowid: tables that SQLite orders by it get an identity column instead."""


@pytest.fixture
def server(postgres_server: PostgresServer) -> PostgresServer:  # noqa: F811
    return postgres_server


def gtm(monkeypatch: pytest.MonkeyPatch, url: str | None, *args: str) -> Any:
    from gtm.cli import app

    if url is not None:
        monkeypatch.setenv("GTM_DATABASE_URL", url)
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert SECRET not in result.output
    return result


def test_the_code_expects_the_newest_migration() -> None:
    assert head() == SCHEMA_HEAD


def test_upgrade_then_status_through_the_cli(
    server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.new_database(migrated=False)
    before = gtm(monkeypatch, url, "db", "status")
    assert before.exit_code == 1, before.output
    assert f"revision none (head {SCHEMA_HEAD})" in before.output
    assert "behind this version: run `gtm db upgrade`" in before.output
    with pytest.raises(DatabaseError, match="has no gtm schema.*run `gtm db upgrade`"):
        PgOutbox(url)

    done = gtm(monkeypatch, url, "db", "upgrade")
    assert done.exit_code == 0, done.output
    assert f"revision {SCHEMA_HEAD} (head {SCHEMA_HEAD})" in done.output
    assert "up to date" in done.output
    again = gtm(monkeypatch, url, "db", "upgrade")  # nothing left to do, nothing breaks
    assert again.exit_code == 0, again.output
    after = gtm(monkeypatch, url, "db", "status")
    assert after.exit_code == 0 and "up to date" in after.output, after.output
    s = status(url)
    assert s.up_to_date and s.checkpoints == s.checkpoints_head > 0
    PgOutbox(url).close()


def test_a_database_at_another_revision_is_refused(server: PostgresServer) -> None:
    url = server.new_database()
    db = Database(url)
    with db.connection() as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0000'")
    db.close()
    with pytest.raises(DatabaseError) as caught:
        Database(url)
    assert str(caught.value) == (
        f"the database {redact(url)} has revision 0000, this version needs revision "
        f"{SCHEMA_HEAD}: run `gtm db upgrade`"
    )


def _sqlite_columns(tmp_path: Path) -> dict[str, set[str]]:
    """Every table the SQLite stores create, with its columns (the current schema)."""
    path = tmp_path / "all.sqlite"
    for opened in (
        Outbox(path),
        SuppressionList(path),
        EventStore(path),
        Ledger(path),
        CampaignBook(path),
        KeyLedger(path),
        ProfileStore(path),
    ):
        opened.close()
    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    found = {
        t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")}
        for t in tables
        if not t.startswith("sqlite_")
    }
    db.close()
    return found


def test_the_schema_has_every_sqlite_table_and_column(
    server: PostgresServer, tmp_path: Path
) -> None:
    """A column added to a SQLite store without a migration fails here."""
    url = server.new_database()
    db = Database(url)
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        ).fetchall()
    db.close()
    pg: dict[str, set[str]] = {}
    for table, column in rows:
        pg.setdefault(table, set()).add(column)
    sqlite = _sqlite_columns(tmp_path)
    assert set(sqlite) == {
        "outbox",
        "suppressions",
        "erasures",
        "events",
        "threads",
        "decisions",
        "campaigns",
        "acted",
        "profile_fields",
    }
    for table, columns in sqlite.items():
        assert columns <= pg[table], (table, columns - pg[table])
        assert pg[table] - columns <= ADDED_FOR_ORDER, (table, pg[table] - columns)
    assert "alembic_version" in pg and "checkpoints" in pg


class Count(TypedDict):
    n: int


def test_langgraphs_checkpointer_runs_on_the_upgraded_database(server: PostgresServer) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.graph import END, START, StateGraph

    def bump(state: Count) -> Count:
        return {"n": state["n"] + 1}

    builder = StateGraph(Count)
    builder.add_node("bump", bump)
    builder.add_edge(START, "bump")
    builder.add_edge("bump", END)
    url = server.new_database()
    cfg: Any = {"configurable": {"thread_id": "t1"}}
    with PostgresSaver.from_conn_string(url) as saver:  # no setup(): `gtm db upgrade` did it
        graph = builder.compile(checkpointer=saver)
        assert graph.invoke({"n": 1}, cfg) == {"n": 2}
    with PostgresSaver.from_conn_string(url) as saver:
        assert builder.compile(checkpointer=saver).get_state(cfg).values == {"n": 2}


# ------------------------------------------------------------------------------ bad input


def _one_line(message: str) -> str:
    assert "\n" not in message.strip() and SECRET not in message, message
    return message


def test_a_wrong_password_is_one_line_without_the_password(
    server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.new_database()
    name = url.rsplit("/", 1)[1]
    server.execute(f"DROP ROLE IF EXISTS {PASSWORD_ROLE}")
    server.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD 'right-{SECRET}'")
    good = server.url(name, user=PASSWORD_ROLE, password=f"right-{SECRET}")
    with pytest.raises(DatabaseError, match="cannot read the schema revision of .*permission"):
        Database(good)
    refused = gtm(monkeypatch, good, "db", "upgrade")
    assert refused.exit_code == 1, refused.output
    assert "cannot apply the migrations to" in _one_line(refused.output)
    server.execute(f"GRANT SELECT ON alembic_version TO {PASSWORD_ROLE}", dbname=name)
    Database(good).close()  # the right one works
    wrong = server.url(name, user=PASSWORD_ROLE, password=SECRET)
    with pytest.raises(DatabaseError) as caught:
        Database(wrong)
    msg = _one_line(str(caught.value))
    assert msg.startswith(f"cannot connect to postgresql://{PASSWORD_ROLE}@127.0.0.1:")
    assert "password authentication failed" in msg
    shown = gtm(monkeypatch, wrong, "db", "upgrade")
    assert shown.exit_code == 1 and "password authentication failed" in shown.output
    assert len(shown.output.strip().splitlines()) == 1, shown.output
    server.drop(url)  # with the grant, which would keep the next test from dropping the role


def test_no_server_no_database_or_a_bad_url_is_one_line(
    server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.postgres import _free_port

    nobody = f"postgresql://gtm:{SECRET}@127.0.0.1:{_free_port()}/gtm"
    with pytest.raises(DatabaseError, match=r"^cannot connect to postgresql://gtm@127\.0\.0\.1"):
        Database(nobody)
    with pytest.raises(DatabaseError, match='database "nope" does not exist'):
        Database(server.url("nope"))
    with pytest.raises(DatabaseError, match="names no database"):
        Database(f"postgresql://gtm:{SECRET}@127.0.0.1:5432")
    with pytest.raises(DatabaseError, match="not a valid URL"):
        Database(f"postgresql://gtm:{SECRET}@127.0.0.1:port/gtm")
    for problem in (nobody, server.url("nope")):
        shown = gtm(monkeypatch, problem, "db", "status")
        assert shown.exit_code == 1 and shown.output.startswith("error: cannot connect to")
        _one_line(shown.output)


def test_the_setting_is_a_secret_and_must_be_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().database_url is None  # SQLite stays the default
    unset = gtm(monkeypatch, None, "db", "upgrade")
    assert unset.exit_code == 2 and "GTM_DATABASE_URL is not set" in unset.output
    monkeypatch.setenv("GTM_DATABASE_URL", f"mysql://gtm:{SECRET}@db/gtm")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "database_url: " in str(caught.value) and SECRET not in str(caught.value)
    monkeypatch.setenv("GTM_DATABASE_URL", f"postgresql://gtm:{SECRET}@db/gtm")
    shown = load_settings()
    assert SECRET not in repr(shown) and SECRET not in str(shown.model_dump())


@pytest.mark.parametrize(
    ("sqlite_class", "pg_class"),
    [
        (Outbox, PgOutbox),
        (SuppressionList, PgSuppressionList),
        (EventStore, PgEventStore),
        (KeyLedger, PgKeyLedger),
        (ProfileStore, PgProfileStore),
    ],
    ids=["outbox", "suppression", "events", "keys", "profiles"],
)
def test_each_postgres_store_has_the_sqlite_stores_methods(
    sqlite_class: type, pg_class: type
) -> None:
    """Same public methods, same signatures: code written against one runs on the other.
    Only the constructor differs (a file path there, a database here)."""

    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    assert public(pg_class) == public(sqlite_class)
