"""Escalations, red flags and model usage: one contract, SQLite and Postgres alike.

Each scenario runs on both backends (a file in the test's directory, or a fresh database of the
session's cluster, `tests.support.postgres`) and asserts the same answers: the existing store
test of `test_escalations` unchanged, every method of each store, the listings' order (byte
order for text, as SQLite compares), "once" under a race between workers (threads, each with
its own store and so its own connection, released together by a barrier), and exact usage
totals under concurrent adds. Then the schema (Postgres columns = SQLite columns), the public
methods (same signatures), and the three `open_*` functions picking the backend from
`GTM_DATABASE_URL` on the workspace's own pool.
"""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import psycopg
import pytest
from pydantic import SecretStr

import tests.test_escalations as escalations_tests
from gtm.app.escalations import open_store
from gtm.app.pg_red_flags import PgFlagStore
from gtm.app.red_flags import FlagStore, RedFlag, open_flag_store
from gtm.app.settings import Settings
from gtm.app.telemetry import usage_store
from gtm.app.workspace import Workspace
from tests.support.postgres import (  # noqa: F401
    PostgresServer,
    StoreBackend,
    backend_for,
    postgres_server,
)
from tests.support.race import race
from tests.test_graph import NOW, Clock
from tools.escalations import EscalationStore
from tools.pg import Database
from tools.pg_escalations import PgEscalationStore
from tools.pg_usage import PgUsageStore
from tools.usage import Usage, UsageStore

Now = Callable[[], datetime]
_DEFAULT: Now = lambda: datetime.now(UTC)  # noqa: E731
RACERS = 8


class Backend(StoreBackend):
    """Opens the three stores on one backend: files in `tmp` or one Postgres database. Two
    stores of a kind opened here share their data, as two workers would."""

    def within(self, open_: Callable[[], Any], work: Callable[[Any], Any]) -> Any:
        """`work(store)` on a store opened by `open_` and closed in this thread (a SQLite
        connection serves only the thread that opened it, as a worker's would)."""
        store = open_()
        self.opened.remove(store)
        try:
            return work(store)
        finally:
            store.close()

    def escalations(self, clock: Now = _DEFAULT) -> Any:
        if self.db is None:
            return self._keep(EscalationStore(self.tmp / "events.sqlite", clock=clock))
        return self._keep(PgEscalationStore(self.db, clock=clock))

    def flags(self, clock: Now = _DEFAULT) -> Any:
        if self.db is None:
            return self._keep(FlagStore(self.tmp / "funnel.sqlite", clock=clock))
        return self._keep(PgFlagStore(self.db, clock=clock))

    def usage(self) -> Any:
        if self.db is None:
            return self._keep(UsageStore(self.tmp / "usage.sqlite"))
        return self._keep(PgUsageStore(self.db))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend_for(Backend, request, tmp_path) as b:
        yield b


def _race(work: Callable[[int], Any], n: int = RACERS) -> list[Any]:
    return race(work, n)


# ---------------------------------------------------------------------------- escalations


def test_the_escalation_store_test_runs_unchanged(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`test_escalations`' own store test, its `EscalationStore` swapped for the backend's."""
    monkeypatch.setattr(
        escalations_tests, "EscalationStore", lambda _path, **kw: backend.escalations(**kw)
    )
    escalations_tests.test_the_store_keeps_one_row_per_event_signal_and_action(tmp_path)
    assert len(backend.opened) == 1, "the test went through the backend"


def _fields(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        event_key="e1", signal="meeting_request", action="create_task", person="ann@acme.ai",
        contact="Ann Lee, CTO", company="Acme", owner="o@us", evidence="a call on Tuesday?",
        due_at=NOW + timedelta(hours=48),
    )  # fmt: skip
    return {**base, **changes}


def test_every_escalation_method_answers_the_same(backend: Backend) -> None:
    clock = Clock(NOW)
    store = backend.escalations(clock)
    first, new = store.add(**_fields())
    assert new and first.id >= 1 and first.key == "e1\x1fmeeting_request\x1fcreate_task"
    assert first.created_at == NOW and first.due_at == NOW + timedelta(hours=48)
    assert (first.acted_at, first.done_at, first.done_by, first.outcome) == (None, None, None, "")
    late, _ = store.add(**_fields(event_key="e2", due_at=NOW + timedelta(hours=72)))
    none, _ = store.add(**_fields(event_key="e3", due_at=None, person="bob@acme.ai"))
    soon, _ = store.add(**_fields(event_key="e4", due_at=NOW + timedelta(hours=1)))
    other, _ = store.add(**_fields(signal="senior_reply", action="alert_owner_now"))
    assert [e.event_key for e in store.listing()] == ["e4", "e1", "e1", "e2", "e3"]
    assert [e.id for e in store.of_event("e1")] == [first.id, other.id]
    assert store.of_event("nothing") == [] and store.get(99_999) is None

    clock.t = NOW + timedelta(minutes=5)
    store.acted(first.id, "task T-1 due 2026-11-20")
    acted = store.get(first.id)
    assert acted is not None and acted.acted_at == clock.t and not acted.done
    store.acted(soon.id, "suppressed under 2 identifier(s)", done_by="automatic")
    closed = store.get(soon.id)
    assert closed is not None and (closed.done_at, closed.done_by) == (clock.t, "automatic")

    clock.t = NOW + timedelta(hours=1)
    done = store.mark_done(late.id, "rita")
    clock.t = NOW + timedelta(hours=2)
    again = store.mark_done(late.id, "sam")
    assert (
        done is not None
        and again == done
        and (done.done_by, done.done_at)
        == (
            "rita",
            NOW + timedelta(hours=1),
        )
    )
    assert store.mark_done(99_999, "rita") is None
    assert [e.event_key for e in store.listing()] == ["e1", "e1", "e3"]
    assert [e.event_key for e in store.listing(include_done=True)] == [
        "e4", "e1", "e1", "e2", "e3"
    ]  # fmt: skip

    store.mark_stage("e1", "rules")
    store.mark_stage("e1", "escalated", "meeting_request,interested")
    store.mark_stage("e1", "escalated", "changed")  # the first note stays
    store.mark_stage("e2", "escalated")
    assert store.stage_done("rules") == {"e1"}
    assert store.stage_notes("escalated") == {"e1": "meeting_request,interested", "e2": ""}

    assert store.erase_person(["ann@acme.ai", "ann@acme.ai", "nobody@x.io"]) == 4
    assert [e.id for e in store.listing(include_done=True)] == [none.id]
    assert store.erase_person(["ann@acme.ai"]) == 0


def test_two_workers_adding_one_escalation_store_it_once(backend: Backend) -> None:
    answers = _race(
        lambda i: backend.within(
            backend.escalations, lambda s: s.add(**_fields(evidence=f"worker {i}"))
        )
    )
    assert sum(new for _, new in answers) == 1
    assert len({esc for esc, _ in answers}) == 1, "every worker reads back the one row"
    _race(
        lambda i: backend.within(
            backend.escalations, lambda s: s.mark_stage("e1", "escalated", f"worker {i}")
        )
    )
    store = backend.escalations()
    assert len(store.listing(include_done=True)) == 1
    assert list(store.stage_notes("escalated")) == ["e1"]


# ------------------------------------------------------------------------------ red flags


def _flag(**changes: Any) -> RedFlag:
    base: dict[str, Any] = dict(
        flag="accept_rate_below", week=date(2026, 11, 9), campaign="launch", value=0.08,
        threshold=0.15, sample=40, message="campaign launch: the accept rate is 8.0%",
    )  # fmt: skip
    return RedFlag(**{**base, **changes})


def test_every_flag_method_answers_the_same(backend: Backend) -> None:
    clock = Clock(NOW)
    store = backend.flags(clock)
    store.record(_flag())
    store.record(_flag(value=0.01, message="a second evaluation"))  # kept once, unchanged
    claimed = store.claim(_flag())
    assert claimed is not None and claimed.id >= 1 and claimed.fired_at == NOW
    assert (claimed.value, claimed.sample, claimed.week) == (0.08, 40, date(2026, 11, 9))
    assert claimed.message == "campaign launch: the accept rate is 8.0%"
    assert store.claim(_flag()) is None, "claimed a moment ago by another run"
    clock.t = NOW + timedelta(minutes=11)
    assert store.claim(_flag()) is not None, "a claim older than ten minutes lapses"
    store.alerted(claimed.id, "alerted")
    clock.t = NOW + timedelta(hours=1)
    assert store.claim(_flag()) is None, "alerted: never again"
    assert store.claim(_flag(campaign="never recorded")) is None

    # Newest week first, then campaign and flag in byte order ("Z" before "a").
    store.record(_flag(week=date(2026, 11, 16), campaign="a-team"))
    store.record(_flag(week=date(2026, 11, 16), campaign="Zeta"))
    store.record(_flag(week=date(2026, 11, 16), campaign="Zeta", flag="email_response_rate_below"))
    listed = [(f.week.day, f.campaign, f.flag) for f in store.listing()]
    assert listed == [
        (16, "Zeta", "accept_rate_below"),
        (16, "Zeta", "email_response_rate_below"),
        (16, "a-team", "accept_rate_below"),
        (9, "launch", "accept_rate_below"),
    ]
    alerted = store.listing()[-1]
    assert (alerted.alerted_at, alerted.outcome) == (NOW + timedelta(minutes=11), "alerted")

    gone = store.dismiss(claimed.id, "rita")
    clock.t = NOW + timedelta(hours=2)
    again = store.dismiss(claimed.id, "sam")
    assert gone is not None and again == gone and gone.dismissed_at == NOW + timedelta(hours=1)
    assert store.dismiss(99_999, "rita") is None
    assert [f.campaign for f in store.listing()] == ["Zeta", "Zeta", "a-team"]
    assert len(store.listing(include_dismissed=True)) == 4


def test_two_workers_firing_one_flag_alert_once(backend: Backend) -> None:
    def fire(store: Any) -> Any:
        store.record(_flag(message="worker"))
        return store.claim(_flag())

    answers = _race(lambda i: backend.within(lambda: backend.flags(Clock(NOW)), fire))
    claims = [c for c in answers if c is not None]
    assert len(claims) == 1, claims
    assert len(backend.flags().listing(include_dismissed=True)) == 1


# ---------------------------------------------------------------------------------- usage


def test_usage_totals_answer_the_same(backend: Backend) -> None:
    store = backend.usage()
    assert store.for_campaign("c1") == []
    store.add("c1", "gpt-test", prompt_tokens=300_000, completion_tokens=40_000)
    store.add("c1", "gpt-test", prompt_tokens=700_000, completion_tokens=60_000)
    store.add("c1", "a-local", prompt_tokens=-5, completion_tokens=7)  # never below zero
    store.add("c1", "Zed", prompt_tokens=1, completion_tokens=1)
    store.add("other", "gpt-test", prompt_tokens=1, completion_tokens=1)
    assert store.for_campaign("c1") == [
        Usage("c1", "Zed", 1, 1, 1),
        Usage("c1", "a-local", 1, 0, 7),
        Usage("c1", "gpt-test", 2, 1_000_000, 100_000),
    ]
    big = 3_000_000_000  # past 32 bits: a long campaign's total
    store.add("other", "gpt-test", prompt_tokens=big, completion_tokens=0)
    assert store.for_campaign("other") == [Usage("other", "gpt-test", 2, big + 1, 1)]


def test_concurrent_adds_lose_no_call(backend: Backend) -> None:
    per_worker = 40

    def count(i: int) -> None:
        def add(store: Any) -> None:
            for n in range(per_worker):
                store.add("c", "m", prompt_tokens=i + 1, completion_tokens=n)

        backend.within(backend.usage, add)

    _race(count)
    (got,) = backend.usage().for_campaign("c")
    assert got.calls == RACERS * per_worker
    assert got.prompt_tokens == per_worker * sum(range(1, RACERS + 1))
    assert got.completion_tokens == RACERS * sum(range(per_worker))


# ------------------------------------------------------------------- schema and signatures


def test_the_postgres_tables_have_the_sqlite_columns(
    postgres_server: PostgresServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Migration 0004 made the SQLite stores' tables, column for column."""
    lite = Backend("sqlite", tmp_path)
    for open_ in (lite.escalations, lite.flags, lite.usage):
        open_().close()
    sqlite_columns: dict[str, set[str]] = {}
    for file, table in [
        ("events.sqlite", "escalations"),
        ("events.sqlite", "escalation_events"),
        ("funnel.sqlite", "red_flags"),
        ("usage.sqlite", "usage"),
    ]:
        with closing(sqlite3.connect(tmp_path / file)) as db:
            sqlite_columns[table] = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
    url = postgres_server.new_database()
    try:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = ANY(%s)",
                (list(sqlite_columns),),
            ).fetchall()
    finally:
        postgres_server.drop(url)
    pg: dict[str, set[str]] = {}
    for table, column in rows:
        pg.setdefault(table, set()).add(column)
    assert pg == sqlite_columns


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [(EscalationStore, PgEscalationStore), (FlagStore, PgFlagStore), (UsageStore, PgUsageStore)],
)
def test_each_postgres_store_answers_every_method_of_its_sqlite_class(
    sqlite: type, postgres: type
) -> None:
    """What lets `open_store`, `open_flag_store` and `usage_store` hand a Postgres store where
    the SQLite class is named. Only the constructor differs."""
    public = [n for n in dir(sqlite) if not n.startswith("_")]
    public += [n for n in ("__enter__", "__exit__") if n in vars(sqlite)]
    assert "close" in public
    for name in public:
        pg, lite = (inspect.signature(getattr(c, name)) for c in (postgres, sqlite))
        if name == "__enter__":  # each returns itself
            pg, lite = pg.replace(return_annotation=None), lite.replace(return_annotation=None)
        assert pg == lite, name


# ------------------------------------------------------------------- picking the backend


def _workspace(settings: Settings, database: Database | None) -> Workspace:
    """What the three `open_*` functions read of a workspace: settings, clock, pool."""
    deps = SimpleNamespace(clock=lambda: NOW)
    return cast(Workspace, SimpleNamespace(settings=settings, deps=deps, database=database))


def test_the_stores_open_where_the_setting_says(backend: Backend, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    url = None if backend.db is None else SecretStr(_url_of(backend))
    ws = _workspace(Settings(data_dir=data, database_url=url), backend.db)
    with open_store(ws) as esc:
        esc.add(**_fields())
    with open_flag_store(ws) as flags:
        flags.record(_flag())
    usage = usage_store(ws.settings, ws.database)
    try:
        usage.add("c", "m", prompt_tokens=1, completion_tokens=2)
    finally:
        usage.close()
    files = sorted(p.name for p in data.iterdir())
    if backend.db is None:
        assert files == ["events.sqlite", "funnel.sqlite", "usage.sqlite"], files
        return
    assert files == [], "nothing in the data directory with the database set"
    # The stores ran on the workspace's pool and did not close it: it still answers.
    with backend.db.connection() as conn:
        counts = [
            conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()
            for t in ("escalations", "red_flags", "usage")
        ]
    assert counts == [(1,), (1,), (1,)]
    # Without the workspace's pool (a workspace made elsewhere) each opens and closes its own.
    alone = _workspace(ws.settings, None)
    with open_store(alone) as esc:
        assert [e.event_key for e in esc.listing()] == ["e1"]
    with open_flag_store(alone) as flags:
        assert [f.campaign for f in flags.listing()] == ["launch"]


def _url_of(backend: Backend) -> str:
    """The URL of the backend's database (the pool knows it, without a password here)."""
    assert backend.db is not None
    with backend.db.connection() as conn:
        info = conn.info
        return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"
