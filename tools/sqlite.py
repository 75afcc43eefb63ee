"""One way to open the local SQLite stores, safe for several processes on one file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random

__all__ = [
    "add_columns",
    "connect",
    "where",
    "compact",
    "erase_rows",
    "retry_while_locked",
    "KeyLedger",
    "KeyStore",
    "key_ledger",
]


def connect(path: Path | str, schema: str = "", *, any_thread: bool = False) -> sqlite3.Connection:
    """Autocommit connection with WAL, a 30 s busy timeout and named rows; creates `schema`.
    `any_thread`: usable from any thread (the caller serialises its calls)."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=not any_thread)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout=30000")
    _prepare(db, wal=str(path) != ":memory:", schema=schema)
    return db


retry_while_locked = retry(
    retry=retry_if_exception(lambda e: "database is locked" in str(e)),
    wait=wait_random(0.05, 0.5),
    stop=stop_after_attempt(20),
    reraise=True,
)
"""For setting up a new SQLite file: switching it to WAL needs it to itself, and SQLite says
"database is locked" at once instead of waiting on the busy timeout, so two processes opening a
fresh data directory together try again (sync or async functions alike)."""


def erase_rows(db: sqlite3.Connection, table: str, column: str, values: Iterable[str]) -> int:
    """Delete the rows whose `column` is one of `values` (an erasure request) and compact the
    file if any went, so no deleted bytes remain; returns how many went."""
    n = sum(
        db.execute(f"DELETE FROM {table} WHERE {column} = ?", (v,)).rowcount for v in set(values)
    )
    if n:
        compact(db)
    return n


@retry_while_locked
def _prepare(db: sqlite3.Connection, *, wal: bool, schema: str) -> None:
    """WAL and the schema, retried while another process sets the same file up."""
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    if schema:
        db.executescript(schema)


def add_columns(db: sqlite3.Connection, table: str, columns: Mapping[str, str]) -> None:
    """Add each of `columns` (name → type and default) that `table` lacks: the schema of a file
    written by an older version, brought up to date in place. Two processes opening the same
    old file may both try; the second one's "duplicate column" is the work already done."""
    have = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
    for name, decl in columns.items():
        if name in have:
            continue
        try:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        except sqlite3.OperationalError as exc:
            if "duplicate column name" not in str(exc):
                raise


def compact(db: sqlite3.Connection) -> None:
    """Rewrite the file without free pages and empty the WAL: deleted rows leave no bytes behind
    (an erasure request must not survive in free space)."""
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def where(**filters: Any) -> tuple[str, list[Any]]:
    """` WHERE a = ? AND b = ?` for the filters that are not None (or an empty clause)."""
    return conditions("?", filters)


def conditions(mark: str, filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """`where`'s clause with `mark` as the parameter placeholder (`%s` for Postgres:
    `tools.pg.where`), and its arguments."""
    used = {k: v for k, v in filters.items() if v is not None}
    if not used:
        return "", []
    return " WHERE " + " AND ".join(f"{k} = {mark}" for k in used), list(used.values())


class KeyLedger:
    """Which idempotency keys a provider client has already acted on, and the provider's id.

    For providers without idempotency keys (Dux-Soup, SMTP): a second guard behind the outbox,
    so a client asked twice for one key acts once.
    """

    def __init__(self, path: Path | str) -> None:
        self._db = connect(
            path,
            "CREATE TABLE IF NOT EXISTS acted (key TEXT PRIMARY KEY, provider_id TEXT NOT NULL,"
            " at TEXT NOT NULL DEFAULT (datetime('now')));",
        )

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT provider_id FROM acted WHERE key = ?", (key,)).fetchone()
        return str(row["provider_id"]) if row else None

    def put(self, key: str, provider_id: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO acted (key, provider_id) VALUES (?, ?)", (key, provider_id)
        )

    def close(self) -> None:
        self._db.close()


class KeyStore(Protocol):
    """What a provider client needs of a key ledger: `KeyLedger` (a file of this machine) or
    `tools.pg_keys.PgKeyLedger` (the database every worker shares)."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, provider_id: str) -> None: ...

    def close(self) -> None: ...


def key_ledger(where: Path | str | KeyStore) -> KeyStore:
    """The ledger a client was given: a file path opens a `KeyLedger` there; a ledger object
    (a shared one) is used as it is. The client closes it either way."""
    return KeyLedger(where) if isinstance(where, Path | str) else where
