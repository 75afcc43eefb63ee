"""`gtm db migrate-from-sqlite`: a data directory that ran on SQLite goes on, on Postgres.

A small campaign runs on SQLite (one draft approved and sent, one rejected, one account's
domain suppressed, the others waiting), is moved into a fresh, upgraded database, and then
runs with GTM_DATABASE_URL: the same drafts wait, a migrated draft resumes from its Postgres
checkpoint and is sent exactly once, the sent one stays decided, the suppressed person stays
unsent, and a second move is refused. The real CLI in child processes, the real temporary
cluster (`tests.support.postgres`) and the scripted model server, as in test_run_postgres.py.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from gtm.app.ledger import Ledger
from gtm.app.pg_import import CHECKPOINT_TABLES, TABLES, ImportRefused, migrate_from_sqlite
from gtm.app.red_flags import FlagStore, RedFlag
from gtm.app.settings import Settings, load_settings
from gtm.app.stores import ON_POSTGRES
from tests.support.cli import example_list, run_gtm, scripted_env
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts
from tests.support.postgres import PostgresServer, postgres_server  # noqa: F401
from tools.escalations import EscalationStore
from tools.pg_escalations import PgEscalationStore
from tools.pg_profiles import PgProfileStore
from tools.profiles import ProfileSnapshot, ProfileStore

KEY = "sk-migrate-secret-do-not-log"
PASSWORD = "pw-never-shown-7c1e"  # the cluster trusts loopback: any password is let in


@pytest.fixture
def model() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(responder=write_from_facts) as srv:
        yield srv


@pytest.fixture
def server(postgres_server: PostgresServer) -> PostgresServer:  # noqa: F811
    return postgres_server


def _env(model: ScriptedOpenAIServer, url: str | None) -> dict[str, str]:
    return scripted_env(model.base_url, KEY, **({"GTM_DATABASE_URL": url} if url else {}))


def _with_password(server: PostgresServer, url: str) -> str:
    return server.url(url.rsplit("/", 1)[1], password=PASSWORD)


def _csv(tmp_path: Path, rows: int) -> Path:
    return example_list(tmp_path, rows)


def _sqlite(path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _pg(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def _counts_sqlite(data: Path) -> dict[str, int]:
    got = dict.fromkeys((t.name for t in TABLES), 0)  # `acted` comes from two files
    for t in TABLES:
        if (data / t.file).exists() and _sqlite(
            data / t.file, f"SELECT 1 FROM sqlite_master WHERE name = '{t.sqlite_name}'"
        ):
            got[t.name] += _sqlite(data / t.file, f"SELECT COUNT(*) FROM {t.sqlite_name}")[0][0]
    cp = data / "checkpoints.sqlite"
    got["checkpoints"] = _sqlite(cp, "SELECT COUNT(*) FROM checkpoints")[0][0]
    got["checkpoint_writes"] = _sqlite(cp, "SELECT COUNT(*) FROM writes")[0][0]
    return got


def _counts_pg(url: str) -> dict[str, int]:
    names = list(dict.fromkeys(t.name for t in TABLES)) + ["checkpoints", "checkpoint_writes"]
    return {n: _pg(url, f"SELECT COUNT(*) FROM {n}")[0][0] for n in names}


def _twin_sends(data: Path) -> list[tuple[str, str]]:
    return [
        (k, p)
        for k, p in _sqlite(
            data / "linkedin.sqlite", "SELECT kind, profile_url FROM actions ORDER BY n"
        )
    ]


_T = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
_ESCALATION: dict[str, Any] = dict(
    event_key="ev-1", signal="meeting_request", action="create_task", person="ann@acme.ai",
    contact="Ann Lee, CTO", company="Acme", owner="o@us", evidence="a call on Tuesday?",
    due_at=None,
)  # fmt: skip
"""No deadline: the listing shows no time left, which would change while the test runs."""
_SIGHTING = ProfileSnapshot(
    key="v1", person="https://www.linkedin.com/in/ann-lee", seen_at=_T, source="duxsoup:visit",
    fields={"title": "CTO", "company": "Acme"},
)  # fmt: skip
_SHOWN = ("escalations list --all", "flags list --all", "status --campaign mig")
"""Commands whose output must be the same before and after the move (of `gtm status`, the
lines of token use: the rest shows times that move on while the test runs)."""


def _shown(what: str, out: Any) -> str:
    assert out.returncode == 0, (what, out.stdout + out.stderr)
    if what.startswith("status"):
        return "\n".join(ln for ln in out.stdout.splitlines() if ln.startswith("model "))
    return str(out.stdout)


def _escalate_and_flag(data: Path) -> None:
    """Keep, on SQLite, two escalations (one then erased, so its id is never given again),
    the stages an event passed, and a red flag alerted about, as the loop would."""
    clock = lambda: _T  # noqa: E731
    with EscalationStore(data / "events.sqlite", clock=clock) as store:
        kept, _ = store.add(**_ESCALATION)
        store.add(
            event_key="ev-2", signal="senior_reply", action="notify_owner", person="x@gone.io",
            contact="X", company="Gone", owner="o@us", evidence="hi", due_at=None,
        )  # fmt: skip
        store.acted(kept.id, "task T-1")
        store.mark_stage("ev-1", "escalated", "meeting_request")
        store.mark_stage("ev-2", "rules")
        assert store.erase_person(["x@gone.io"]) == 1
    with FlagStore(data / "funnel.sqlite", clock=clock) as flags:
        flag = RedFlag("accept_rate_below", date(2026, 11, 9), "mig", 0.05, 0.15, 40, "low")
        flags.record(flag)
        claimed = flags.claim(flag)
        assert claimed is not None
        flags.alerted(claimed.id, "alerted")


def _iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


@pytest.mark.timeout(600)
def test_a_sqlite_workspace_moves_to_postgres_and_goes_on_there(
    server: PostgresServer, model: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    url = server.new_database()
    secret_url = _with_password(server, url)
    data, csv = tmp_path / "data", _csv(tmp_path, 7)
    lite, pg = _env(model, None), _env(model, secret_url)

    def gtm(env: dict[str, str], *args: str) -> Any:
        return run_gtm(env, "--data-dir", str(data), *args)

    try:
        # ---- on SQLite: run, approve one (sent), reject one, suppress one account's domain.
        ran = gtm(lite, "run", str(csv), "--campaign", "mig")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        ledger = data / "ledger.sqlite"
        waiting = _sqlite(
            ledger,
            "SELECT id, account_id FROM threads WHERE status = 'waiting_for_approval' ORDER BY id",
        )
        assert len(waiting) >= 4, waiting
        (sent_id, _), (rejected_id, _), (suppressed_id, suppressed_domain) = waiting[:3]
        resumed_id, resumed_account = waiting[3]
        done = gtm(lite, "approve", str(sent_id))
        assert done.returncode == 0 and "sent" in done.stdout, done.stdout + done.stderr
        no = gtm(lite, "reject", str(rejected_id), "--reason", "not now")
        assert no.returncode == 0, no.stdout + no.stderr
        sup = gtm(lite, "suppress", "--domain", suppressed_domain, "--reason", "asked us")
        assert sup.returncode == 0, sup.stdout + sup.stderr
        sends_before = _twin_sends(data)
        assert [k for k, _ in sends_before] == ["visit", "connect"], sends_before
        _escalate_and_flag(data)  # what the loop would have kept: an escalation, a red flag
        with closing(ProfileStore(data / "profiles.sqlite")) as seen:  # and a Dux-Soup visit
            seen.record([_SIGHTING])
            profile_before = seen.get(_SIGHTING.person)
        assert profile_before is not None
        inbox_before = gtm(lite, "inbox", "--all")
        assert inbox_before.returncode == 0 and f"#{resumed_id} " in inbox_before.stdout
        shown_before = {what: _shown(what, gtm(lite, *what.split())) for what in _SHOWN}
        assert "model scripted:" in shown_before["status --campaign mig"]
        assert "Ann Lee" in shown_before["escalations list --all"]
        assert "2026-W46" in shown_before["flags list --all"]
        before = _counts_sqlite(data)
        assert before["outbox"] == 2 and before["decisions"] >= 2 and before["suppressions"] >= 1
        threads_before = _sqlite(
            ledger,
            "SELECT id, thread_id, status, created_at, updated_at, waiting_since"
            " FROM threads ORDER BY id",
        )
        top_decision = _sqlite(ledger, "SELECT MAX(seq) FROM decisions")[0][0]

        # ---- the move: every store's rows, with their ids and times.
        moved = gtm(pg, "db", "migrate-from-sqlite")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert _counts_pg(url) == before
        for t in TABLES:  # each store printed with its figure (a table from two files: twice)
            assert t.store in ON_POSTGRES
            lines = [ln for ln in moved.stdout.splitlines() if ln.split()[-3:-2] == [t.name]]
            assert lines and all(ln.startswith(t.store) for ln in lines), lines
            assert sum(int(ln.split()[-2]) for ln in lines) == before[t.name], lines
        with psycopg.connect(url, row_factory=dict_row) as conn:
            rows = conn.execute(
                "SELECT id, thread_id, status, created_at, updated_at, waiting_since"
                " FROM threads ORDER BY id"
            ).fetchall()
        assert [
            (
                r["id"],
                r["thread_id"],
                r["status"],
                r["created_at"],
                r["updated_at"],
                r["waiting_since"],
            )
            for r in rows
        ] == [(i, t, s, _iso(c), _iso(u), _iso(w)) for i, t, s, c, u, w in threads_before]

        status = gtm(pg, "db", "status")
        assert status.returncode == 0 and "up to date" in status.stdout, status.stdout

        # ---- on Postgres: the same escalations, red flags and token use, and the stages an
        # event passed (the inbox below lists the escalation on both backends).
        for what, then in shown_before.items():
            assert _shown(what, gtm(pg, *what.split())) == then, what
        with PgEscalationStore(url) as esc:
            assert esc.stage_notes("escalated") == {"ev-1": "meeting_request"}
            assert esc.stage_done("rules") == {"ev-2"}
            (kept,) = esc.listing(include_done=True)
            assert (kept.id, kept.outcome, kept.created_at) == (1, "task T-1", _T)
        (week,) = _pg(url, "SELECT week FROM red_flags")[0]
        assert week == date(2026, 11, 9)
        with closing(PgProfileStore(url)) as profiles:
            assert profiles.get(_SIGHTING.person) == profile_before

        # ---- on Postgres: the same drafts wait, listed the same way.
        inbox_after = gtm(pg, "inbox", "--all")
        assert inbox_after.returncode == 0, inbox_after.stderr
        assert inbox_after.stdout == inbox_before.stdout

        # A migrated waiting draft resumes from its Postgres checkpoint: sent exactly once.
        go = gtm(pg, "approve", str(resumed_id))
        assert go.returncode == 0 and "sent" in go.stdout, go.stdout + go.stderr
        outbox = _pg(url, "SELECT seq, account_id, step, state FROM outbox ORDER BY seq")
        assert [r[1:] for r in outbox[2:]] == [
            (resumed_account, "linkedin_visit", "sent"),
            (resumed_account, "linkedin_connect", "sent"),
        ], outbox
        assert [r[0] for r in outbox] == [1, 2, 3, 4]  # the identity went on past the moved rows
        assert len(_twin_sends(data)) == len(sends_before) + 2
        (new_top,) = _pg(url, "SELECT MAX(seq) FROM decisions")[0]
        assert new_top > top_decision

        # The draft sent on SQLite is still decided; the suppressed account is still not sent.
        again = gtm(pg, "approve", str(sent_id))
        assert again.returncode == 1 and "already decided" in again.stderr, again.stderr
        blocked = gtm(pg, "approve", str(suppressed_id))
        assert blocked.returncode == 0, blocked.stdout + blocked.stderr
        assert "skipped" in blocked.stdout and "do-not-contact list" in blocked.stdout
        (n,) = _pg(
            url,
            f"SELECT COUNT(*) FROM outbox WHERE account_id = '{suppressed_domain}'"
            " AND state = 'sent'",
        )[0]
        assert n == 0
        assert len(_twin_sends(data)) == len(sends_before) + 2
        listed = gtm(pg, "suppress", "--list")
        assert suppressed_domain in listed.stdout, listed.stdout

        # ---- a second move is refused in one line, and changes nothing.
        after = _counts_pg(url)
        twice = gtm(pg, "db", "migrate-from-sqlite")
        assert twice.returncode == 2, twice.stdout + twice.stderr
        assert twice.stderr.count("\n") == 1 and "already holds rows" in twice.stderr
        assert _counts_pg(url) == after

        # An escalation id erased on SQLite is not given again on Postgres.
        with PgEscalationStore(url) as esc:
            fresh, new = esc.add(**{**_ESCALATION, "event_key": "ev-3"})
            assert new and fresh.id == 3

        for out in (moved, status, inbox_after, go, again, blocked, twice):
            assert PASSWORD not in out.stdout + out.stderr and KEY not in out.stdout + out.stderr
    finally:
        server.drop(url)


def test_a_fresh_data_directory_moves_nothing_and_a_missing_one_is_refused(
    server: PostgresServer, model: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    url = server.new_database()
    env = _env(model, _with_password(server, url))
    try:
        (tmp_path / "fresh").mkdir()
        res = run_gtm(env, "--data-dir", str(tmp_path / "fresh"), "db", "migrate-from-sqlite")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "moved 0 rows" in res.stdout and PASSWORD not in res.stdout
        assert list((tmp_path / "fresh").iterdir()) == []  # no SQLite file made to read from
        assert all(v == 0 for v in _counts_pg(url).values())

        gone = run_gtm(env, "--data-dir", str(tmp_path / "nowhere"), "db", "migrate-from-sqlite")
        assert gone.returncode == 2 and "no data directory" in gone.stderr, gone.stderr
        assert not (tmp_path / "nowhere").exists()
    finally:
        server.drop(url)


def test_a_database_without_the_schema_is_refused_and_nothing_is_written(
    server: PostgresServer, model: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    url = server.new_database(migrated=False)
    data = tmp_path / "data"
    try:
        ran = run_gtm(_env(model, None), "--data-dir", str(data), "run", str(_csv(tmp_path, 1)))
        assert ran.returncode == 0, ran.stdout + ran.stderr
        res = run_gtm(
            _env(model, _with_password(server, url)),
            "--data-dir",
            str(data),
            "db",
            "migrate-from-sqlite",
        )
        assert res.returncode == 2, res.stdout + res.stderr
        assert res.stderr.count("\n") == 1 and "run `gtm db upgrade`" in res.stderr
        assert PASSWORD not in res.stderr
        assert _pg(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == []
    finally:
        server.drop(url)


def test_a_failure_mid_way_rolls_every_store_back(
    server: PostgresServer, model: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    """One transaction for all: a checkpoint file that cannot be read leaves the database as
    empty as it was, so the move can be run again once the file is fixed."""
    url = server.new_database()
    data = tmp_path / "data"
    try:
        ran = run_gtm(_env(model, None), "--data-dir", str(data), "run", str(_csv(tmp_path, 2)))
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert _counts_sqlite(data)["threads"] >= 1
        cp = data / "checkpoints.sqlite"
        good = cp.read_bytes()
        for extra in ("-wal", "-shm"):
            assert not cp.with_name(cp.name + extra).exists()
        cp.write_bytes(b"this is not a SQLite file" * 100)
        res = run_gtm(_env(model, url), "--data-dir", str(data), "db", "migrate-from-sqlite")
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stdout + res.stderr
        assert "nothing was moved" in res.stderr
        assert set(_counts_pg(url).values()) == {0}

        cp.write_bytes(good)
        res = run_gtm(_env(model, url), "--data-dir", str(data), "db", "migrate-from-sqlite")
        assert res.returncode == 0, res.stdout + res.stderr
        assert _counts_pg(url) == _counts_sqlite(data)
    finally:
        server.drop(url)


def test_the_checkpoint_tables_are_the_ones_langgraph_creates(server: PostgresServer) -> None:
    """`CHECKPOINT_TABLES` is what the emptiness check and the lock cover: each must exist
    after `gtm db upgrade`, or a checkpoint could slip past the refusal."""
    url = server.new_database()
    try:
        found = {
            r[0] for r in _pg(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert set(CHECKPOINT_TABLES) <= found
        assert {t.name for t in TABLES} <= found
    finally:
        server.drop(url)


def _settings(monkeypatch: pytest.MonkeyPatch, data: Path, url: str) -> Settings:
    for key in list(os.environ):
        if key.startswith("GTM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GTM_DATA_DIR", str(data))
    monkeypatch.setenv("GTM_DATABASE_URL", url)
    return load_settings()


def test_ids_never_come_back_and_times_without_a_zone_are_utc(
    server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's AUTOINCREMENT never hands out an erased row's id again; neither does Postgres
    after the move. Only ledger.sqlite exists here: the other stores move nothing."""
    url = server.new_database()
    data = tmp_path / "data"
    data.mkdir()
    Ledger(data / "ledger.sqlite").close()
    db = sqlite3.connect(data / "ledger.sqlite")
    for n in (1, 2, 3):
        db.execute(
            "INSERT INTO threads (campaign, account_id, thread_id, company, channel, status,"
            " created_at, updated_at) VALUES ('c', ?, ?, 'Co', 'email', 'queued',"
            " '2026-01-02 03:04:05', '2026-01-02T03:04:05+01:00')",
            (f"a{n}", f"c:a{n}"),
        )
    db.execute("DELETE FROM threads WHERE id = 3")
    db.commit()
    db.close()
    try:
        moved = migrate_from_sqlite(_settings(monkeypatch, data, url))
        assert {(m.table, m.rows) for m in moved if m.rows} == {("threads", 2)}
        rows = _pg(url, "SELECT id, created_at, updated_at FROM threads ORDER BY id")
        assert [r[0] for r in rows] == [1, 2]
        assert rows[0][1] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert rows[0][2] == datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)
        (new_id,) = _pg(
            url,
            "INSERT INTO threads (campaign, account_id, thread_id, company, channel, status,"
            " created_at, updated_at) VALUES ('c', 'a4', 'c:a4', 'Co', 'email', 'queued', now(),"
            " now()) RETURNING id",
        )[0]
        assert new_id == 4  # not 3: that one was erased on SQLite
    finally:
        server.drop(url)


def test_a_sqlite_column_the_database_lacks_is_refused_before_anything_is_kept(
    server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.new_database()
    data = tmp_path / "data"
    data.mkdir()
    Ledger(data / "ledger.sqlite").close()
    db = sqlite3.connect(data / "ledger.sqlite")
    db.execute(
        "INSERT INTO threads (campaign, account_id, thread_id, company, channel, status,"
        " created_at, updated_at) VALUES ('c', 'a', 'c:a', 'Co', 'email', 'queued', 'x', 'x')"
    )
    db.execute("ALTER TABLE decisions ADD COLUMN from_the_future TEXT")
    db.commit()
    settings = _settings(monkeypatch, data, url)
    try:
        with pytest.raises(ImportRefused, match=r"^ledger.sqlite's threads: 'x' is not a time$"):
            migrate_from_sqlite(settings)
        db.execute("UPDATE threads SET created_at = '2026-01-01', updated_at = '2026-01-01'")
        db.commit()
        with pytest.raises(ImportRefused, match=r"decisions has columns .*from_the_future"):
            migrate_from_sqlite(settings)
        assert _pg(url, "SELECT COUNT(*) FROM threads") == [(0,)]  # threads went first
        db.execute("ALTER TABLE decisions DROP COLUMN from_the_future")
        db.commit()
        assert {(m.table, m.rows) for m in migrate_from_sqlite(settings) if m.rows} == {
            ("threads", 1)
        }
    finally:
        db.close()
        server.drop(url)
