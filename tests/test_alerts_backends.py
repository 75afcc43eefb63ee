"""The Slack alert queue, SQLite and Postgres alike: refused alerts are kept and posted later,
in order; two machines flushing one queue post each alert once; the queue outlives the process;
`gtm db migrate-from-sqlite` moves it; `open_alerts` picks the queue from `GTM_DATABASE_URL`.

Each scenario runs on both backends (`alerts.sqlite` in the test's directory, or a fresh database
of the session's cluster, `tests.support.postgres`) against a loopback incoming webhook as strict
as Slack's (`StrictSlack`): JSON bodies only, `no_text`, `invalid_payload`, 404 `no_service` for
an unknown or revoked webhook, 429 `rate_limited` with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import aclosing, closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from gtm.app.pg_import import migrate_from_sqlite
from gtm.app.providers import open_alerts
from gtm.app.settings import Settings
from tests.support.postgres import (  # noqa: F401
    PostgresServer,
    StoreBackend,
    backend_for,
    database_url,
    postgres_server,
)
from tests.support.providers import Answer, FakeSlack
from tests.support.race import race
from tests.test_migrate_from_sqlite import _settings
from tools.alerts import AlertQueue, SlackAlerts, SqliteAlertQueue
from tools.http import HttpClient
from tools.pg import Database
from tools.pg_alerts import PgAlertQueue

T0 = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)


class StrictSlack(FakeSlack):
    """`FakeSlack`, stricter: Slack's incoming webhook takes a POST of a JSON body (an
    `application/json` one here; Slack answers `invalid_payload` to what it cannot read) and
    answers its errors in plain text. `slow_s`: each post takes that long (outside the lock, so
    posts overlap), and `overlaps` counts a text posted while a post of the same text was still
    in flight (the double post that the row lock prevents)."""

    def __init__(self, slow_s: float = 0.0) -> None:
        super().__init__()
        self.slow_s = slow_s
        self.in_flight: list[str] = []
        self.overlaps = 0

    def error_body(self, status: int) -> Any:
        known = {400: "invalid_payload", 404: "no_service", 410: "channel_is_archived"}
        return {429: "rate_limited", **known}.get(status, "internal_error")

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        if method != "POST":
            return 405, {}, "invalid_method"
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return 400, {}, "invalid_payload"
        text = raw.decode("utf-8", "replace")
        with self.lock:
            self.overlaps += text in self.in_flight
            self.in_flight.append(text)
        try:
            time.sleep(self.slow_s)
            return super().handle(method, target, headers, raw)
        finally:
            with self.lock:
                self.in_flight.remove(text)


class Backend(StoreBackend):
    """The alert queue on one backend: `alerts.sqlite` in `tmp`, or the database `db`. Two
    queues opened here share their rows, as one machine's runs (SQLite) or all machines
    (Postgres) do."""

    def queue(self) -> AlertQueue:
        if self.db is None:
            return SqliteAlertQueue(self.tmp / "alerts.sqlite")
        return PgAlertQueue(self.db)

    def rows(self) -> list[tuple[Any, ...]]:
        """(seq, at, kind, text, attempts, last_error) of every queued alert, oldest first."""
        if self.db is None:
            with closing(sqlite3.connect(self.tmp / "alerts.sqlite")) as db:
                got = db.execute(
                    "SELECT seq, at, kind, text, attempts, last_error FROM pending ORDER BY seq"
                ).fetchall()
            return [(s, datetime.fromisoformat(a), *rest) for s, a, *rest in got]
        with self.db.connection() as conn:
            return conn.execute(
                "SELECT seq, at, kind, text, attempts, last_error FROM alert_queue ORDER BY seq"
            ).fetchall()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend_for(Backend, request, tmp_path) as b:
        yield b


@pytest.fixture
def slack() -> Iterator[StrictSlack]:
    with StrictSlack() as fake:
        yield fake


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        self.t += timedelta(minutes=1)
        return self.t


def _shown(kind: str, text: str) -> str:
    icon = {"escalation": ":rotating_light:", "red_flag": ":triangular_flag_on_post:"}
    return f"{icon.get(kind, ':x:')} *{kind}*: {text}"


def _posts(slack: StrictSlack) -> int:
    return len([r for r in slack.requests if r["path"] == slack.PATH])


async def test_a_refused_alert_is_kept_and_posted_first_on_the_next_flush(
    backend: Backend, slack: StrictSlack, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    async with aclosing(
        SlackAlerts.open(slack.webhook_url, queue=backend.queue(), clock=clock)
    ) as a:
        slack.fail_next = [(404, {}), (404, {})]  # the webhook answers no_service, twice
        await a.alert("escalation", "VP replied at Acme")
        assert slack.posted == [] and await a.flush() == 1  # refused twice now
        ((seq1, at1, kind1, text1, attempts1, error1),) = backend.rows()
        assert (at1, kind1, text1, attempts1) == (T0 + timedelta(minutes=1), "escalation",
                                                  "VP replied at Acme", 2)  # fmt: skip
        assert "no_service" in error1 and "secretXXXX" not in error1  # the path is the secret
        assert "Slack did not take 1 alert(s)" in caplog.text

        # Slack is back: the kept alert goes first, then the new one; both leave the queue.
        await a.alert("red_flag", "accept rate below 15%")
        assert slack.posted == [
            _shown("escalation", "VP replied at Acme"),
            _shown("red_flag", "accept rate below 15%"),
        ]
        assert backend.rows() == [] and await a.flush() == 0

        # Refused with two waiting: the flush stops at the first, the second is not even tried.
        slack.fail_next = [(410, {})]
        await a.alert("error", "one")
        slack.fail_next = [(410, {})]
        before = _posts(slack)
        await a.alert("error", "two")
        assert _posts(slack) == before + 1, "only the oldest was tried"
        rows = backend.rows()
        assert [(r[3], r[4]) for r in rows] == [("one", 2), ("two", 0)]
        assert rows[0][0] > seq1 and "channel_is_archived" in rows[0][5]

        # A 429 is Slack saying "not posted, wait": the client waits Retry-After and posts once.
        slack.fail_next = [(429, {"Retry-After": "1"})]
        assert await a.flush() == 0
        assert slack.posted[2:] == [_shown("error", "one"), _shown("error", "two")]
        assert backend.rows() == []

        # The strict webhook refuses what Slack refuses, and the check posts nothing.
        assert "nothing posted" in await a.check()
    assert len(slack.posted) == 4


async def test_a_message_slack_refuses_does_not_hold_back_the_alerts_behind_it(
    backend: Backend, slack: StrictSlack, caplog: pytest.LogCaptureFixture
) -> None:
    """A 400 is Slack refusing that one message, not the webhook: it is kept (with its error and
    attempts), tried again first on every flush, and the alerts queued after it still go out.
    A failure of the webhook itself still stops the flush at the first alert."""
    clock = Clock()
    async with aclosing(
        SlackAlerts.open(slack.webhook_url, queue=backend.queue(), clock=clock)
    ) as a:
        slack.fail_next = [(404, {})]
        await a.alert("error", "one")  # the webhook is down: kept
        slack.fail_next = [(404, {})]
        await a.alert("escalation", "VP replied at Acme")  # "one" again, then stop
        assert [(r[3], r[4]) for r in backend.rows()] == [("one", 2), ("VP replied at Acme", 0)]

        # Slack is back, and refuses "one" as a bad request: the escalation behind it goes out.
        slack.fail_next = [(400, {})]
        assert await a.flush() == 1
        assert slack.posted == [_shown("escalation", "VP replied at Acme")]
        ((_, _, kind, text, attempts, error),) = backend.rows()
        assert (kind, text, attempts) == ("error", "one", 3) and "invalid_payload" in error
        assert "Slack refused a queued error alert" in caplog.text

        # Each new alert tries the refused one first, once, and still goes out itself.
        slack.fail_next = [(400, {})]
        before = _posts(slack)
        assert await a.flush() == 1 and _posts(slack) == before + 1
        slack.fail_next = [(400, {})]
        await a.alert("red_flag", "accept rate below 15%")
        assert slack.posted[-1] == _shown("red_flag", "accept rate below 15%")
        assert [(r[3], r[4]) for r in backend.rows()] == [("one", 5)]

        # The webhook gone (410: channel archived) after a refused message: the flush stops
        # at the first alert the webhook did not take, and the one after it is not tried.
        slack.fail_next = [(400, {}), (410, {})]
        await a.alert("escalation", "two")
        slack.fail_next = [(400, {}), (410, {})]
        before = _posts(slack)
        await a.alert("escalation", "three")
        assert _posts(slack) == before + 2, "the refused one, then 'two'; 'three' not tried"
        assert [(r[3], r[4]) for r in backend.rows()] == [
            ("one", 7), ("two", 2), ("three", 0)
        ]  # fmt: skip

        # Once Slack takes it, the refused message leaves the queue like any other, first.
        assert await a.flush() == 0
        assert slack.posted[-3:] == [
            _shown("error", "one"), _shown("escalation", "two"), _shown("escalation", "three")
        ]  # fmt: skip
        assert backend.rows() == []


async def test_the_queue_outlives_the_process_that_filled_it(
    backend: Backend, slack: StrictSlack
) -> None:
    clock = Clock()
    async with aclosing(
        SlackAlerts.open(slack.webhook_url, queue=backend.queue(), clock=clock)
    ) as a:
        slack.fail_next = [(404, {})] * 3
        for n in range(3):
            await a.alert("escalation", f"alert {n}")
    assert [r[3] for r in backend.rows()] == ["alert 0", "alert 1", "alert 2"]
    assert slack.posted == []
    # Another process (on Postgres: another machine) opens the queue and posts them, in order.
    async with aclosing(SlackAlerts.open(slack.webhook_url, queue=backend.queue())) as b:
        assert await b.flush() == 0
    assert slack.posted == [_shown("escalation", f"alert {n}") for n in range(3)]
    assert backend.rows() == []


def test_two_machines_flushing_one_queue_post_each_alert_once(url: str) -> None:
    """Two workers, each with its own pool and event loop (two machines), flush one queue of
    eight alerts together against a webhook that takes 0.3 s per post: every alert is posted
    exactly once, never twice at the same time, and both machines did part of the work."""
    texts = [f"escalation {n}" for n in range(8)]
    with closing(PgAlertQueue(url)) as filler:
        for n, text in enumerate(texts):
            filler.put(T0 + timedelta(seconds=n), "escalation", text)
    with StrictSlack(slow_s=0.3) as slack:

        def machine(i: int) -> int:
            async def flush() -> int:
                client = HttpClient(  # as `SlackAlerts.open` makes it, naming the machine
                    "slack", slack.base_url, headers={"X-Machine": str(i)}, rate=(1, 1.0)
                )
                alerts = SlackAlerts(client, slack.PATH, queue=PgAlertQueue(url))
                async with aclosing(alerts):
                    return await alerts.flush()

            return asyncio.run(flush())

        assert race(machine, 2) == [0, 0]
        assert sorted(slack.posted) == sorted(_shown("escalation", t) for t in texts)
        assert len(slack.posted) == len(texts) and slack.overlaps == 0
        by = Counter(r["headers"]["x-machine"] for r in slack.requests)
        assert set(by) == {"0", "1"} and sum(by.values()) == len(texts), by
    with closing(PgAlertQueue(url)) as after:
        assert after.waiting() == 0


async def test_migrate_from_sqlite_moves_the_queued_alerts_in_order(
    postgres_server: PostgresServer,  # noqa: F811
    slack: StrictSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three alerts Slack refused wait in `alerts.sqlite` (a fourth, posted, left a gap in
    `seq`); after the move they wait in the database with their order, times and attempts,
    any machine posts them, and a new alert queues after every id SQLite ever gave."""
    data = tmp_path / "data"
    data.mkdir()
    lite = SqliteAlertQueue(data / "alerts.sqlite")
    async with aclosing(SlackAlerts.open(slack.webhook_url, queue=lite, clock=Clock())) as a:
        slack.fail_next = [(404, {})] * 3
        for n in range(3):
            await a.alert("escalation", f"kept {n}")
        with closing(sqlite3.connect(data / "alerts.sqlite")) as db:
            before = db.execute(
                "SELECT seq, at, kind, text, attempts, last_error FROM pending ORDER BY seq"
            ).fetchall()
        with closing(sqlite3.connect(data / "alerts.sqlite")) as db:  # a fourth, posted later
            db.execute(
                "INSERT INTO pending (at, kind, text) VALUES ('2026-11-18T10:00', 'error', 'x')"
            )
            db.commit()
            db.execute("DELETE FROM pending WHERE text = 'x'")
            db.commit()
    assert [r[3:5] for r in before] == [("kept 0", 3), ("kept 1", 0), ("kept 2", 0)]

    url = postgres_server.new_database()
    try:
        settings = _settings(monkeypatch, data, url)
        moved = await asyncio.to_thread(migrate_from_sqlite, settings)  # it runs its own loop
        assert {(m.store, m.table, m.rows) for m in moved if m.rows} == {
            ("Slack alert queue", "alert_queue", 3)
        }
        with psycopg.connect(url) as conn:
            after = conn.execute(
                "SELECT seq, at, kind, text, attempts, last_error FROM alert_queue ORDER BY seq"
            ).fetchall()
        assert after == [(s, datetime.fromisoformat(at), *rest) for s, at, *rest in before]
        with closing(PgAlertQueue(url)) as queue:
            queue.put(T0, "red_flag", "new")
        async with aclosing(SlackAlerts.open(slack.webhook_url, queue=PgAlertQueue(url))) as b:
            assert await b.flush() == 0
        assert slack.posted == [
            *(_shown("escalation", f"kept {n}") for n in range(3)),
            _shown("red_flag", "new"),
        ]
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT COUNT(*) FROM alert_queue").fetchone() == (0,)
            (next_seq,) = conn.execute(
                "INSERT INTO alert_queue (at, kind, text) VALUES (now(), 'error', 'y')"
                " RETURNING seq"
            ).fetchone() or (0,)
        assert next_seq == 6  # 1-3 moved, 4 given and deleted on SQLite, 5 the new one
    finally:
        postgres_server.drop(url)


async def test_open_alerts_queues_where_the_setting_says(
    backend: Backend, slack: StrictSlack, tmp_path: Path
) -> None:
    """Without GTM_DATABASE_URL the queue is `alerts.sqlite`; with it, the database's table on
    the workspace's pool (left open), and nothing is written in the data directory."""
    data = tmp_path / "data"
    data.mkdir()
    url = None if backend.db is None else SecretStr(_url_of(backend.db))
    s = Settings(data_dir=data, slack_webhook_url=SecretStr(slack.webhook_url), database_url=url)
    slack.fail_next = [(404, {})]
    async with aclosing(open_alerts(s, database=backend.db)) as alerts:
        await alerts.alert("escalation", "queued where the setting says")
    files = sorted(p.name for p in data.iterdir() if not p.name.endswith(("-wal", "-shm")))
    if backend.db is None:
        assert files == ["alerts.sqlite"]
        backend.tmp = data  # read the data directory's file
    else:
        assert files == [], "nothing in the data directory with the database set"
    assert [r[3] for r in backend.rows()] == ["queued where the setting says"]
    if backend.db is not None:  # without the workspace's pool it opens (and closes) its own
        async with aclosing(open_alerts(s)) as alone:
            assert await alone.flush() == 0
        assert slack.posted == [_shown("escalation", "queued where the setting says")]


async def test_checking_the_webhook_never_opens_the_database(slack: StrictSlack) -> None:
    """`gtm doctor` opens the alerts only to check the webhook: a database that cannot be
    reached is not touched by that (its own check is `gtm db status`)."""
    dead = SecretStr("postgresql://gtm@127.0.0.1:1/nowhere")
    s = Settings(slack_webhook_url=SecretStr(slack.webhook_url), database_url=dead)
    async with aclosing(open_alerts(s)) as alerts:
        assert "nothing posted" in await alerts.check()
    assert slack.posted == []


def _url_of(db: Database) -> str:
    with db.connection() as conn:
        info = conn.info
        return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"


def test_the_postgres_table_has_the_sqlite_columns(url: str, tmp_path: Path) -> None:
    """What lets `gtm db migrate-from-sqlite` copy the file row for row: every SQLite column,
    and the client's key (which moved rows get from the database)."""
    SqliteAlertQueue(tmp_path / "alerts.sqlite").close()
    with closing(sqlite3.connect(tmp_path / "alerts.sqlite")) as db:
        lite = {r[1] for r in db.execute("PRAGMA table_info(pending)")}
    with psycopg.connect(url) as conn:
        pg = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = 'alert_queue'"
            )
        }
    assert pg == lite | {"key"}, (pg, lite)


async def test_an_erasure_rewrites_the_alerts_still_waiting(
    backend: Backend, slack: StrictSlack
) -> None:
    """`gtm forget` must not leave a queued alert to post the person's name later: the queue's
    texts are rewritten with the erasure's redaction, the alert itself kept (the account still
    needs the follow-up), and what Slack gets once it is back names nobody."""
    async with aclosing(
        SlackAlerts.open(slack.webhook_url, queue=backend.queue(), clock=Clock())
    ) as a:
        slack.fail_next = [(404, {})] * 2
        await a.alert("escalation", "Dana Ruiz (dana@quill.dev) at Quill replied: call me")
        await a.alert("red_flag", "accept rate below 15%")
        assert [r[3] for r in backend.rows()][0].startswith("Dana Ruiz")

        def redact(text: str) -> str:
            return text.replace("Dana Ruiz", "[erased]").replace("dana@quill.dev", "[erased]")

        assert a.redact_waiting(redact) == 1
        assert a.redact_waiting(redact) == 0  # again: nothing left to change
        assert [r[3] for r in backend.rows()] == [
            "[erased] ([erased]) at Quill replied: call me",
            "accept rate below 15%",
        ]
        assert await a.flush() == 0
    assert slack.posted == [
        _shown("escalation", "[erased] ([erased]) at Quill replied: call me"),
        _shown("red_flag", "accept rate below 15%"),
    ]
