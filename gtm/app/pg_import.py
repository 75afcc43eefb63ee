"""`gtm db migrate-from-sqlite`: move a data directory's stores from SQLite files to Postgres.

Every store that `GTM_DATABASE_URL` moves to Postgres (`gtm.app.stores.ON_POSTGRES`) is copied,
row for row, from its SQLite file into the database, which must already be at this version's
schema (`gtm db upgrade`) and must hold none of these stores' rows. The local provider twins,
which stay SQLite files even with the URL (`STILL_ON_SQLITE`), are left where they are: they
need no move. Slack alerts still waiting in `alerts.sqlite` move into `alert_queue`, in order.

What is kept, so the workspace goes on where it stood:
- ids other rows and people refer to: `threads.id` (the number `gtm approve` takes),
  `decisions.seq`, `erasures.n`, `escalations.id` (`gtm escalations done` takes it),
  `red_flags.id`, `alert_queue.seq` (the order queued alerts are posted in); and the
  insertion order SQLite keeps in `rowid`, which the
  outbox, the suppressions and the events become as their `seq`. Each identity sequence then
  starts past the highest id SQLite ever gave (its `sqlite_sequence`, not only the rows left),
  so a new row never takes an id an erased one had.
- times: the SQLite files keep ISO strings, Postgres `timestamptz`; each is parsed (UTC when
  a string carries no offset, as every store writes UTC). A red flag's week is a `date`.
- LangGraph's checkpoints, each with its pending writes (a draft's interrupt waiting for
  approval is one), read through `AsyncSqliteSaver` and written through `AsyncPostgresSaver`
  with the same `checkpoint_serde()`, so a migrated draft resumes on Postgres.

All of it is ONE transaction: a failure anywhere (a broken file, the database going away)
leaves the database as it was, empty, so the command can simply be run again. The tables are
locked for it, so a `gtm` process already pointed at the database cannot write in between.
A database that already holds rows of these stores is refused (`ImportRefused`) before anything
is read or written: merging two workspaces could give two threads one id or forget a send.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from gtm.app.settings import Settings

__all__ = ["CHECKPOINT_TABLES", "TABLES", "ImportRefused", "Moved", "Table", "migrate_from_sqlite"]

_BATCH = 500


class ImportRefused(RuntimeError):
    """The move was refused or undone: one line saying why. The database holds none of it."""


@dataclass(frozen=True)
class Table:
    """One SQLite table and the Postgres table it moves to (same columns; same name unless
    `source` names the SQLite one)."""

    file: str
    name: str
    store: str
    """The store it belongs to, as `ON_POSTGRES` names it."""
    identity: str | None = None
    """The Postgres identity column, if any."""
    from_rowid: bool = False
    """The identity takes SQLite's `rowid` (the SQLite table has no such column)."""
    source: str | None = None
    """The SQLite table's name, when it is not `name`."""

    @property
    def sqlite_name(self) -> str:
        return self.source or self.name


TABLES: tuple[Table, ...] = (
    Table("ledger.sqlite", "threads", "thread ledger and decisions", "id"),
    Table("ledger.sqlite", "decisions", "thread ledger and decisions", "seq"),
    Table("ledger.sqlite", "campaigns", "campaigns"),
    Table("outbox.sqlite", "outbox", "send ledger (outbox)", "seq", from_rowid=True),
    Table("suppressions.sqlite", "suppressions", "suppression list", "seq", from_rowid=True),
    Table("suppressions.sqlite", "erasures", "suppression list", "n"),
    Table("events.sqlite", "events", "events", "seq", from_rowid=True),
    Table("profiles.sqlite", "profile_fields", "LinkedIn profile facts"),
    Table("events.sqlite", "escalations", "escalations", "id"),
    Table("events.sqlite", "escalation_events", "escalations"),
    Table("funnel.sqlite", "red_flags", "red flags", "id"),
    Table("usage.sqlite", "usage", "model usage"),
    Table("duxsoup.sqlite", "acted", "Dux-Soup and SMTP send keys"),
    Table("smtp.sqlite", "acted", "Dux-Soup and SMTP send keys"),
    Table("alerts.sqlite", "alert_queue", "Slack alert queue", "seq", source="pending"),
)
"""Every gtm table `GTM_DATABASE_URL` moves, parents before the rows that name them."""
CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


@dataclass(frozen=True)
class Moved:
    """How many rows of one table (or checkpoints) went into the database."""

    store: str
    table: str
    rows: int


def migrate_from_sqlite(settings: Settings) -> list[Moved]:
    """Copy the data directory's SQLite stores into `settings.database_url`; what moved.

    Raises `ImportRefused` (nothing done: no data directory, a database already holding these
    stores, a SQLite column the database lacks) or `tools.pg.DatabaseError` (unreachable, not
    upgraded, or a failure mid-way, which rolled everything back)."""
    if settings.database_url is None:
        raise ImportRefused("GTM_DATABASE_URL is not set: there is no database to move to")
    if not settings.data_dir.is_dir():
        raise ImportRefused(f"there is no data directory at {settings.data_dir}")
    from gtm.app.stores import check_schema

    url = settings.database_url.get_secret_value()
    check_schema(url)
    return asyncio.run(_migrate(url, settings))


async def _migrate(url: str, settings: Settings) -> list[Moved]:
    import psycopg
    from psycopg.rows import dict_row

    from tools.pg import DatabaseError, redact, scrub

    try:
        conn = await psycopg.AsyncConnection.connect(
            url, autocommit=True, prepare_threshold=0, row_factory=dict_row, connect_timeout=10
        )
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to {redact(url)}: {scrub(str(exc), url)}") from None
    try:
        async with conn:
            await conn.execute("SET TIME ZONE 'UTC'")
            async with conn.transaction():
                await _lock_and_check_empty(conn, redact(url))
                _bring_files_up_to_date(settings)
                moved = [await _copy_table(conn, t, settings.path(t.file)) for t in TABLES]
                moved += await _copy_checkpoints(conn, settings.path("checkpoints.sqlite"))
    except psycopg.Error as exc:
        raise DatabaseError(
            f"the move to {redact(url)} failed and was rolled back: {scrub(str(exc), url)}"
        ) from None
    except sqlite3.Error as exc:
        raise ImportRefused(
            f"a SQLite file in {settings.data_dir} cannot be read ({exc}): nothing was moved"
        ) from None
    return moved


async def _lock_and_check_empty(conn: Any, where: str) -> None:
    """Lock every target table against writers until the commit, then refuse unless all are
    empty (in the same transaction, so no row can appear between the look and the copy)."""
    from psycopg import sql

    names = list(dict.fromkeys(t.name for t in TABLES)) + list(CHECKPOINT_TABLES)
    await conn.execute("SET LOCAL lock_timeout = '10s'")
    await conn.execute(
        sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
            sql.SQL(", ").join(sql.Identifier(n) for n in names)
        )
    )
    held = []
    for name in names:
        cur = await conn.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {}) AS held").format(sql.Identifier(name))
        )
        row = await cur.fetchone()
        if row and row["held"]:
            held.append(name)
    if held:
        raise ImportRefused(
            f"the database {where} already holds rows ({', '.join(held)}): migrate-from-sqlite "
            "only fills an empty one (create a new database and run `gtm db upgrade` on it)"
        )


def _bring_files_up_to_date(settings: Settings) -> None:
    """Open each existing SQLite file through its store once, as every gtm command does, so a
    file written by an older version has this version's columns and canonical values before
    it is read. A missing file is left missing (a fresh data directory has none)."""
    from gtm.app.campaigns import CampaignBook
    from gtm.app.ledger import Ledger
    from tools.events import EventStore
    from tools.outbox import Outbox
    from tools.profiles import ProfileStore
    from tools.suppression import SuppressionList

    opens: dict[str, Sequence[Any]] = {
        "ledger.sqlite": (Ledger, CampaignBook),
        "outbox.sqlite": (Outbox,),
        "suppressions.sqlite": (SuppressionList,),
        "events.sqlite": (EventStore,),
        "profiles.sqlite": (ProfileStore,),
    }
    for file, stores in opens.items():
        path = settings.path(file)
        if path.exists():
            for store in stores:
                store(path).close()


async def _pg_columns(conn: Any, table: str) -> dict[str, str]:
    cur = await conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s",
        (table,),
    )
    return {r["column_name"]: r["data_type"] for r in await cur.fetchall()}


def _when(value: Any) -> Any:
    """An ISO string from a SQLite store as an aware datetime (UTC when it names no zone)."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{str(value)[:40]!r} is not a time") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def _copy_table(conn: Any, table: Table, path: Path) -> Moved:
    """Insert every row of `table` from `path` with its id, then move the identity past it."""
    if not path.exists():
        return Moved(table.store, table.name, 0)
    from psycopg import sql

    pg = await _pg_columns(conn, table.name)
    with closing(sqlite3.connect(path, timeout=30)) as db:  # only read: SELECTs below
        db.row_factory = sqlite3.Row
        if not db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table.sqlite_name,)
        ).fetchone():
            return Moved(table.store, table.name, 0)
        cur = db.execute(f'SELECT rowid AS "__rowid", * FROM "{table.sqlite_name}" ORDER BY rowid')
        have = [d[0] for d in cur.description][1:]
        if table.from_rowid and table.identity:
            have = [c for c in have if c != table.identity]
        lacking = [c for c in have if c not in pg]
        if lacking:
            raise ImportRefused(
                f"{path.name}'s {table.name} has columns the database lacks "
                f"({', '.join(lacking)}): is this gtm older than the one that wrote it?"
            )
        columns = [*have, table.identity] if table.from_rowid and table.identity else have
        times = {i for i, c in enumerate(columns) if pg[c].startswith("timestamp")}
        days = {i for i, c in enumerate(columns) if pg[c] == "date"}
        insert = sql.SQL("INSERT INTO {} ({}) {}VALUES ({})").format(
            sql.Identifier(table.name),
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.SQL("OVERRIDING SYSTEM VALUE " if table.identity else ""),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        )
        n = 0
        async with conn.cursor() as pcur:
            while batch := cur.fetchmany(_BATCH):
                try:
                    rows = [_row(r, table, times, days) for r in batch]
                except ValueError as exc:
                    raise ImportRefused(f"{path.name}'s {table.name}: {exc}") from None
                await pcur.executemany(insert, rows)
                n += len(rows)
        top = _sqlite_sequence(db, table.sqlite_name)
    if table.identity:
        await _restart_identity(conn, table, top)
    return Moved(table.store, table.name, n)


def _row(r: sqlite3.Row, table: Table, times: set[int], days: set[int]) -> list[Any]:
    values = list(r)[1:]
    if table.from_rowid and table.identity:
        names = r.keys()[1:]
        values = [v for k, v in zip(names, values, strict=True) if k != table.identity]
        values.append(r["__rowid"])
    return [_when(v) if i in times else _day(v) if i in days else v for i, v in enumerate(values)]


def _day(value: Any) -> Any:
    """An ISO date string from a SQLite store as a date."""
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{str(value)[:40]!r} is not a date") from None


def _sqlite_sequence(db: sqlite3.Connection, table: str) -> int:
    """The highest id an AUTOINCREMENT table ever handed out (0: none, or no such table)."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
        return 0
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return int(row[0]) if row else 0


async def _restart_identity(conn: Any, table: Table, floor: int) -> None:
    """The next id Postgres gives is past every id SQLite gave (and past the rows copied)."""
    from psycopg import sql

    assert table.identity is not None
    col = sql.Identifier(table.identity)
    cur = await conn.execute(
        sql.SQL("SELECT COALESCE(MAX({}), 0) AS top FROM {}").format(
            col, sql.Identifier(table.name)
        )
    )
    row = await cur.fetchone()
    top = max(int(row["top"]) if row else 0, floor)
    # setval(seq, n, false): the next value is n itself; with nothing ever given, 1.
    await conn.execute(
        "SELECT setval(pg_get_serial_sequence(%s, %s), %s, false)",
        (table.name, table.identity, top + 1),
    )


async def _copy_checkpoints(conn: Any, path: Path) -> list[Moved]:
    """Every checkpoint of every thread and namespace, with its pending writes, re-put through
    `AsyncPostgresSaver` on the transaction's connection."""
    store = "checkpoints"
    if not path.exists():
        return [Moved(store, "checkpoints", 0), Moved(store, "checkpoint_writes", 0)]
    import aiosqlite
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from agents.graph import checkpoint_serde

    target = AsyncPostgresSaver(conn, serde=checkpoint_serde())
    n_checkpoints = n_writes = 0
    async with aiosqlite.connect(path, timeout=30) as db:
        source = AsyncSqliteSaver(db, serde=checkpoint_serde())
        async for t in source.alist(None):
            conf = t.config["configurable"]
            parent = (t.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            put_conf: dict[str, Any] = {
                "thread_id": conf["thread_id"],
                "checkpoint_ns": conf.get("checkpoint_ns", ""),
            }
            if parent:
                put_conf["checkpoint_id"] = parent
            versions = dict(t.checkpoint["channel_versions"])
            saved = await target.aput(
                {"configurable": put_conf}, t.checkpoint, t.metadata, versions
            )
            n_checkpoints += 1
            for task_id, writes in _by_task(t.pending_writes or ()):
                await target.aput_writes(saved, writes, task_id)
                n_writes += len(writes)
    return [Moved(store, "checkpoints", n_checkpoints), Moved(store, "checkpoint_writes", n_writes)]


def _by_task(pending: Iterable[tuple[str, str, Any]]) -> list[tuple[str, list[tuple[str, Any]]]]:
    """Pending writes grouped by the task that made them, in their stored order."""
    grouped: dict[str, list[tuple[str, Any]]] = {}
    for task_id, channel, value in pending:
        grouped.setdefault(task_id, []).append((channel, value))
    return list(grouped.items())
