"""`gtm doctor` with GTM_DATABASE_URL: the database's migrations checked as `gtm db status`
checks them, against the real test server; never the password."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gtm.app.doctor import Finding, diagnose
from gtm.app.settings import load_settings
from tests.support.cli import run_gtm
from tests.support.postgres import PASSWORD_ROLE, PostgresServer, postgres_server  # noqa: F401
from tools.pg import SCHEMA_HEAD

SECRET = "S3cret-doc-77"


@pytest.fixture
def server(postgres_server: PostgresServer) -> PostgresServer:  # noqa: F811
    return postgres_server


async def _database(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Finding:
    monkeypatch.setenv("GTM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GTM_DATABASE_URL", url)
    (found,) = [f for f in await diagnose(load_settings()) if f.component == "database: postgres"]
    assert SECRET not in f"{found.detail} {found.fix}"
    return found


async def test_doctor_says_whether_the_database_is_migrated(
    server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = server.new_database(migrated=False)
    behind = await _database(fresh, tmp_path, monkeypatch)
    assert not behind.ok and behind.fix == "run `gtm db upgrade`"
    assert f"revision none (head {SCHEMA_HEAD})" in behind.detail
    assert behind.detail.endswith("behind")

    ready = await _database(server.new_database(), tmp_path, monkeypatch)
    assert ready.ok, ready.detail
    assert f"revision {SCHEMA_HEAD} (head {SCHEMA_HEAD})" in ready.detail
    assert "up to date" in ready.detail
    assert "Postgres holds the thread ledger" in ready.detail  # and says what it does not hold
    assert "LinkedIn profile facts" in ready.detail.split("; SQLite files")[0]
    assert "still hold the local provider twins" in ready.detail


async def test_doctor_names_a_wrong_password_in_one_line_without_it(
    server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = server.new_database().rsplit("/", 1)[1]
    server.execute(f"DROP ROLE IF EXISTS {PASSWORD_ROLE}")
    server.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD 'right-{SECRET}'")
    wrong = server.url(name, user=PASSWORD_ROLE, password=SECRET)
    found = await _database(wrong, tmp_path, monkeypatch)
    assert not found.ok and found.fix == "correct GTM_DATABASE_URL"
    assert "password authentication failed" in found.detail and "\n" not in found.detail


async def test_without_the_setting_doctor_says_nothing_of_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GTM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GTM_DATABASE_URL", raising=False)
    found = await diagnose(load_settings())
    assert "config" in [f.component for f in found]
    assert not [f for f in found if f.component.startswith("database")]


def test_a_run_with_an_unreachable_database_stops_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    env.update(GTM_DATA_DIR=str(tmp_path), GTM_DATABASE_URL=f"postgresql://gtm:{SECRET}@db/gtm")
    done = run_gtm(env, "run", str(tmp_path / "missing.csv"), timeout=120)
    assert done.returncode == 2  # before the list is read: no run on SQLite in its place
    assert done.stderr.count("\n") == 1, done.stderr
    assert "cannot connect to postgresql://gtm@db/gtm" in done.stderr, done.stderr
    assert SECRET not in done.stdout + done.stderr
