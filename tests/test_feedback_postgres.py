"""With GTM_DATABASE_URL, token use, escalations and red flags live in Postgres too.

A run on Postgres counts its model calls in the database (no `usage.sqlite`), `gtm status`
shows the totals read from there, `gtm report` evaluates its red flags and reads the
escalation stages there (no `funnel.sqlite`, no `events.sqlite`), and `gtm forget` erases the
person's escalations from the database. The real CLI in child processes, the real temporary
cluster (`tests.support.postgres`) and the scripted model server, as in test_run_postgres.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.cli import example_list, run_gtm, scripted_env
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts
from tests.support.postgres import PostgresServer, postgres_server  # noqa: F401
from tools.pg_escalations import PgEscalationStore

KEY = "sk-pg-feedback-secret-do-not-log"
SQLITE_STORES = ("usage.sqlite", "funnel.sqlite", "events.sqlite")
"""The files these stores (and the events, already on Postgres) would be on SQLite."""


@pytest.fixture
def model() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(responder=write_from_facts) as srv:
        yield srv


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def _escalation(store: PgEscalationStore, event_key: str, person: str) -> None:
    store.add(
        event_key=event_key, signal="meeting_request", action="create_task", person=person,
        contact=person, company="Co", owner="o@us", evidence="a call?", due_at=None,
    )  # fmt: skip


@pytest.mark.timeout(400)
def test_a_run_on_postgres_counts_tokens_there_and_status_reads_them(
    postgres_server: PostgresServer,  # noqa: F811
    model: ScriptedOpenAIServer,
    tmp_path: Path,
) -> None:
    url = postgres_server.new_database()
    env = scripted_env(model.base_url, KEY, GTM_DATABASE_URL=url)
    data, csv = tmp_path / "data", example_list(tmp_path, 2)

    def gtm(*args: str) -> Any:
        done = run_gtm(env, "--data-dir", str(data), *args)
        assert done.returncode == 0, (args, done.stdout + done.stderr)
        assert KEY not in done.stdout + done.stderr
        return done

    try:
        gtm("run", str(csv), "--campaign", "pg")
        assert model.requests, "the run called the model"
        rows = _query(
            url, "SELECT model, calls, prompt_tokens, completion_tokens FROM usage"
            " WHERE campaign = 'pg'",
        )  # fmt: skip
        assert len(rows) == 1, rows
        name, calls, prompt, completion = rows[0]
        # The scripted server reports 10 + 10 tokens for each call it answers.
        assert (name, calls) == ("scripted", len(model.requests))
        assert (prompt, completion) == (10 * calls, 10 * calls)

        status = gtm("status", "--campaign", "pg")
        line = f"model scripted: {calls} call(s), {prompt} prompt + {completion} completion tokens"
        assert line in " ".join(status.stdout.split()), status.stdout

        # Another worker's calls (a second machine) are in the same totals.
        with psycopg.connect(url) as conn:
            conn.execute(
                "UPDATE usage SET calls = calls + 5, prompt_tokens = prompt_tokens + 50"
                " WHERE campaign = 'pg'"
            )
        both = gtm("status", "--campaign", "pg")
        assert f"model scripted: {calls + 5} call(s), {prompt + 50} prompt" in " ".join(
            both.stdout.split()
        )

        # The report evaluates red flags and reads escalation stages: in the database too.
        gtm("report", "--out", str(tmp_path / "report"))
        gtm("flags", "list", "--all")
        gtm("escalations", "list", "--all")
        for name in SQLITE_STORES:
            assert not (data / name).exists(), name

        # `gtm forget` erases their escalations from the database, and no one else's.
        with PgEscalationStore(url) as store:
            _escalation(store, "ev-theo", "theo@quillcode.dev")
            _escalation(store, "ev-other", "someone@else.io")
        gone = gtm("forget", "theo@quillcode.dev", "--yes")
        assert "escalations 1," in " ".join(gone.stdout.split()), gone.stdout
        assert _query(url, "SELECT person FROM escalations") == [("someone@else.io",)]
    finally:
        postgres_server.drop(url)
