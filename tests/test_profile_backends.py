"""The LinkedIn profile facts: one contract, SQLite and Postgres alike.

Each scenario runs on both backends (`profiles.sqlite` in the test's directory, or a fresh
database of the session's cluster, `tests.support.postgres`) and asserts the same answers: the
existing store tests of `test_profile_visits` and `test_profile_staleness` unchanged (their
`ProfileStore` swapped for the backend's), two workers storing sightings of one person at once
(threads, each with its own store and so its own connection, released together by a barrier)
leaving the rows one after the other would, and an erasure leaving no row. Then `gtm forget`
and `gtm db migrate-from-sqlite` on Postgres, and the Postgres class's methods.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

import tests.test_profile_staleness as staleness_tests
import tests.test_profile_visits as visits_tests
from gtm.app.pg_import import migrate_from_sqlite
from gtm.app.privacy import forget
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from tests.support.postgres import (  # noqa: F401
    PostgresServer,
    StoreBackend,
    backend_for,
    database_for,
    postgres_server,
)
from tests.support.race import race
from tests.test_graph import NOW
from tools.pg import Database, DatabaseError
from tools.pg_profiles import PgProfileStore
from tools.profiles import ProfileSnapshot, ProfileStore

Now = Callable[[], datetime]
DANA = "https://www.linkedin.com/in/dana-ruiz"
OMAR = "https://www.linkedin.com/in/omar-haddad"
ROUNDS = 6


class Backend(StoreBackend):
    """Opens profile stores on one backend: one file in `tmp` or one Postgres database. Two
    stores opened here share their data, as two workers would."""

    def profiles(self, clock: Now = lambda: NOW) -> Any:
        if self.db is None:
            store: Any = ProfileStore(self.tmp / "profiles.sqlite", clock=clock)
        else:
            store = PgProfileStore(self.db, clock=clock)
        self.opened.append(store)
        return store

    def rows(self) -> list[tuple[str, str, str, datetime, str, str]]:
        """Every stored row (person, field, value, seen_at, source, key), sorted."""
        query = "SELECT person, field, value, seen_at, source, key FROM profile_fields"
        if self.db is None:
            with closing(sqlite3.connect(self.tmp / "profiles.sqlite")) as db:
                got = [(*r[:3], datetime.fromisoformat(r[3]), *r[4:]) for r in db.execute(query)]
        else:
            with self.db.connection() as conn:
                got = [tuple(r) for r in conn.execute(query).fetchall()]
        return sorted(got)

    def wipe(self) -> None:
        if self.db is None:
            with closing(sqlite3.connect(self.tmp / "profiles.sqlite")) as db:
                db.execute("DELETE FROM profile_fields")
                db.commit()
        else:
            with self.db.connection() as conn:
                conn.execute("DELETE FROM profile_fields")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend_for(Backend, request, tmp_path) as b:
        yield b


def _swap(monkeypatch: pytest.MonkeyPatch, module: Any, b: Backend) -> None:
    """Point a test module's `ProfileStore` at the backend, ignoring the path it gives."""
    monkeypatch.setattr(module, "ProfileStore", lambda _path, **kw: b.profiles(**kw))


def _snap(key: str, person: str, at: datetime, **fields: str) -> ProfileSnapshot:
    return ProfileSnapshot(
        key=key, person=person, seen_at=at, source="duxsoup:visit", fields=fields
    )


# ---------------------------------------------------------------- the existing tests


def test_the_profile_store_tests_run_unchanged(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`test_profile_visits`' store tests: newest per field, the first of a tie, the caps
    and the canonical URL, the facts; and an erasure (on SQLite also checked in the file)."""
    _swap(monkeypatch, visits_tests, backend)
    visits_tests.test_the_store_keeps_the_newest_of_each_field_and_erases_without_trace(tmp_path)
    visits_tests.test_facts_name_the_contact_the_tool_and_the_day(tmp_path)
    assert len(backend.opened) == 2, "the tests went through the backend"


@pytest.mark.parametrize(("days_ago", "stale"), [(0, False), (365, False), (366, True)])
def test_the_staleness_tests_run_unchanged(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, days_ago: int, stale: bool
) -> None:
    _swap(monkeypatch, staleness_tests, backend)
    staleness_tests.test_a_sighting_older_than_the_limit_is_stale_and_the_boundary_day_is_not(
        days_ago, stale
    )
    staleness_tests.test_no_limit_or_no_today_marks_nothing()
    assert len(backend.opened) == 3, "the tests went through the backend"


# ------------------------------------------------------------------- the same answers


def test_every_method_answers_the_same(backend: Backend) -> None:
    store = backend.profiles()
    t0 = datetime(2026, 10, 2, 9, tzinfo=UTC)
    batch = (
        _snap(f"k{i}", person, t0 + timedelta(minutes=i), title=f"title {i}")
        for i, person in enumerate([OMAR, DANA, OMAR, DANA])
    )
    assert store.record(batch) == 4  # a generator: read once, stored whole
    assert store.record([_snap("none", DANA, t0, email="dana@quillcode.dev")]) == 0
    assert store.record([]) == 0
    # In one batch, two sightings of one field at one instant: the first stays.
    t9 = t0 + timedelta(hours=9)
    tie = [_snap("a", DANA, t9, title="first"), _snap("b", DANA, t9, title="second")]
    assert store.record(tie) == 1
    got = store.get("https://www.linkedin.com/in/Dana-Ruiz/?trk=x")
    assert got is not None and got.person == DANA
    assert list(got.fields) == ["title"]
    assert (got.fields["title"].value, got.fields["title"].seen_at) == ("first", t9)
    assert got.fields["title"].seen_at.utcoffset() == timedelta(0)
    assert [r[1:] for r in backend.rows() if r[0] == OMAR] == [
        ("title", "title 2", t0 + timedelta(minutes=2), "duxsoup:visit", "k2")
    ]
    assert store.get("not a profile") is None and store.get(OMAR + "-x") is None
    assert store.erase_person(["nobody"]) == 0


def _serial(b: Backend, batches: Sequence[Sequence[ProfileSnapshot]]) -> list[Any]:
    store = b.profiles()
    b.wipe()
    for batch in batches:
        store.record(batch)
    rows = b.rows()
    b.wipe()
    return rows


def _within(b: Backend, batch: Sequence[ProfileSnapshot]) -> int:
    """Store `batch` through a store of its own, opened and closed in this thread (a SQLite
    connection serves only the thread that opened it, as a worker's would)."""
    store = b.profiles()
    b.opened.remove(store)
    try:
        return int(store.record(batch))
    finally:
        store.close()


def test_two_workers_storing_one_person_leave_the_rows_of_one_after_the_other(
    backend: Backend,
) -> None:
    """Newer and older sightings of the same people, in opposite orders (on Postgres, each
    batch is one transaction locking rows of both people): the rows are those of either
    serial order (they agree), every round, and no worker fails on a deadlock."""
    t0 = datetime(2026, 10, 2, 9, tzinfo=UTC)
    a = [
        _snap("a1", DANA, t0 + timedelta(hours=2), title="CTO", company="Quillcode"),
        _snap("a2", OMAR, t0, title="Head of Eng", location="Porto"),
    ]
    b = [
        _snap("b1", OMAR, t0 + timedelta(hours=1), title="VP Eng"),
        _snap("b2", DANA, t0 + timedelta(hours=1), title="VP Eng", summary="Builds compilers"),
    ]
    expected = _serial(backend, [a, b])
    assert expected == _serial(backend, [b, a])
    assert [r[1:3] for r in expected if r[0] == DANA] == [
        ("company", "Quillcode"),
        ("summary", "Builds compilers"),
        ("title", "CTO"),
    ]
    for _ in range(ROUNDS):
        answers = race(lambda i: _within(backend, [a, b][i]), 2)
        assert backend.rows() == expected
        assert answers == [2, 2]  # each batch brings something new, whichever goes first
        backend.wipe()


def test_two_workers_with_sightings_of_one_instant_keep_one_whole(backend: Backend) -> None:
    """Of two sightings at one instant the first stored stays, whole: never a title from one
    and a company from the other, and exactly one worker changed anything."""
    at = datetime(2026, 10, 2, 9, tzinfo=UTC)
    batches = [
        [_snap(f"w{i}", DANA, at, title=f"title {i}", company=f"company {i}")] for i in range(2)
    ]
    outcomes = [_serial(backend, batches), _serial(backend, batches[::-1])]
    assert outcomes[0] != outcomes[1]
    for _ in range(ROUNDS):
        answers = race(lambda i: _within(backend, batches[i]), 2)
        assert backend.rows() in outcomes
        assert sorted(answers) == [0, 1]
        backend.wipe()


def test_an_erasure_leaves_no_row(backend: Backend) -> None:
    store = backend.profiles()
    at = datetime(2026, 10, 2, 9, tzinfo=UTC)
    store.record(
        [
            _snap("d", DANA, at, title="CTO", summary="Builds compilers"),
            _snap("o", OMAR, at, title="Head of Eng"),
        ]
    )
    before = _filenode(backend)
    assert store.erase_person(["https://de.linkedin.com/in/Dana-Ruiz/", DANA]) == 2
    assert store.get(DANA) is None
    assert [r[0] for r in backend.rows()] == [OMAR]
    if backend.db is None:
        blob = b"".join(p.read_bytes() for p in backend.tmp.glob("profiles.sqlite*"))
        assert b"dana-ruiz" not in blob and b"Builds compilers" not in blob and b"Head of" in blob
    else:
        assert _filenode(backend) != before, "the table was rewritten (VACUUM FULL)"
    assert store.erase_person([DANA]) == 0


def _filenode(b: Backend) -> int | None:
    """The file Postgres keeps the table in: a rewrite gives it a new one (None: SQLite)."""
    if b.db is None:
        return None
    with b.db.connection() as conn:
        row = conn.execute("SELECT pg_relation_filenode('profile_fields')").fetchone()
    assert row is not None
    return int(row[0])


# ------------------------------------------------------------- Postgres, end to end


def _url_of(db: Database) -> str:
    with db.connection() as conn:
        info = conn.info
        return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"


@pytest.fixture
def pg(request: pytest.FixtureRequest) -> Iterator[Database]:
    with database_for(request, "postgres") as db:
        assert db is not None
        yield db


async def test_the_workspace_keeps_them_in_postgres_and_forget_erases_them(
    pg: Database, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=SecretStr(_url_of(pg)))
    at = datetime(2026, 10, 2, 9, tzinfo=UTC)
    async with open_workspace(settings, with_model=False) as ws:
        assert isinstance(ws.profiles, PgProfileStore)
        assert ws.profiles.record([_snap("d", DANA, at, title="CTO", location="Lisbon")]) == 1
        ws.profiles.record([_snap("o", OMAR, at, title="Head of Eng")])
        erased = await forget(ws, "linkedin.com/in/dana-ruiz", requested_by="test")
        assert erased.erased["LinkedIn profile fields"] == 2
        assert ws.profiles.get(DANA) is None and ws.profiles.get(OMAR) is not None
    assert not list(settings.data_dir.glob("profiles.sqlite*"))
    with pg.connection() as conn:
        rows = conn.execute("SELECT person, value FROM profile_fields").fetchall()
    assert rows == [(OMAR, "Head of Eng")]


def test_migrate_from_sqlite_moves_them_with_their_times(
    pg: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    at = datetime(2026, 10, 2, 9, 30, 0, 123456, tzinfo=UTC)
    with contextlib.closing(ProfileStore(data / "profiles.sqlite", clock=lambda: NOW)) as lite:
        lite.record([_snap("d", DANA, at, title="CTO", summary="Builds compilers")])
        before = lite.get(DANA)
    for key in [k for k in os.environ if k.startswith("GTM_")]:
        monkeypatch.delenv(key)
    moved = migrate_from_sqlite(Settings(data_dir=data, database_url=SecretStr(_url_of(pg))))
    assert {(m.store, m.table, m.rows) for m in moved if m.rows} == {
        ("LinkedIn profile facts", "profile_fields", 2)
    }
    store = PgProfileStore(pg, clock=lambda: NOW)
    try:
        assert store.get(DANA) == before
        # The rule goes on where it stood: the same instant changes nothing, a newer one does.
        assert store.record([_snap("again", DANA, at, title="Intern")]) == 0
        assert store.record([_snap("new", DANA, at + timedelta(microseconds=1), title="CEO")])
    finally:
        store.close()
    with pg.connection() as conn:
        stored = conn.execute("SELECT DISTINCT stored_at FROM profile_fields").fetchall()
    assert stored == [(NOW,)]


def _flaky(
    monkeypatch: pytest.MonkeyPatch, db: Database, server: PostgresServer, when: str
) -> list[int]:
    """The first transaction of `db` loses its server process `when` "before" its statements
    or "after" them (then at COMMIT, which cannot tell whether it committed); as a failover
    does. Returns the list the number of each transaction is appended to."""
    real, began = db.connection, list[int]()

    def kill(conn: Any) -> None:
        with psycopg.connect(server.url(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (conn.info.backend_pid,))

    @contextlib.contextmanager
    def connection() -> Iterator[Any]:
        began.append(len(began) + 1)
        with real() as conn:
            if began[-1] == 1 and when == "before":
                kill(conn)
            yield conn
            if began[-1] == 1 and when == "after":
                kill(conn)

    monkeypatch.setattr(db, "connection", connection)
    return began


def test_a_lost_connection_is_run_again_whole_and_a_lost_commit_is_one_line(
    pg: Database,
    postgres_server: PostgresServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = PgProfileStore(pg, clock=lambda: NOW)
    at = datetime(2026, 10, 2, 9, tzinfo=UTC)
    sightings = [_snap("d", DANA, at, title="CTO"), _snap("o", OMAR, at, title="Head of Eng")]
    # Lost before COMMIT: nothing was kept, so the whole batch is stored again (a generator
    # too: the store read it once) and counted as if once.
    began = _flaky(monkeypatch, pg, postgres_server, "before")
    assert store.record(s for s in sightings) == 2
    assert began == [1, 2]
    monkeypatch.undo()
    # Lost at COMMIT: a second run would count 0, so it is one line, not run twice.
    began = _flaky(monkeypatch, pg, postgres_server, "after")
    with pytest.raises(DatabaseError, match="may or may not have been saved") as raised:
        store.record([_snap("d2", DANA, at + timedelta(days=1), title="CEO")])
    assert began == [1] and "\n" not in str(raised.value)
    monkeypatch.undo()
    # A read is run again after either.
    began = _flaky(monkeypatch, pg, postgres_server, "after")
    got = store.get(DANA)
    assert began == [1, 2] and got is not None and got.fields["title"].value in ("CTO", "CEO")


def test_the_postgres_store_answers_every_method_of_the_sqlite_class() -> None:
    """What lets `gtm.app.stores` hand a `PgProfileStore` where `ProfileStore` is named."""
    public = [n for n in dir(ProfileStore) if not n.startswith("_")]
    assert {"record", "get", "erase_person", "close"} <= set(public)
    for name in public:
        pg, lite = (inspect.signature(getattr(c, name)) for c in (PgProfileStore, ProfileStore))
        assert pg == lite, name
