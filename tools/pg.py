"""One way to reach the Postgres stores: a connection pool, checked once, and one-line errors.

`GTM_DATABASE_URL=postgresql://…` moves the durable stores from SQLite files to one Postgres
database. `Database` opens it: it connects once to say plainly what is wrong (unreachable host,
wrong password, no such database, a schema older than this code), then keeps a `psycopg_pool`
pool that every store of the process shares. A URL's password never appears in a message.

Each `Database.connection()` block is one transaction (committed when the block ends, rolled
back when it raises), so a store method that decides and writes does both or neither. A pooled
connection is checked before it is handed out, so one the server dropped (a restart, a failover,
an idle timeout) is replaced instead of failing the next call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

__all__ = [
    "SCHEMA_HEAD",
    "Database",
    "DatabaseError",
    "check_url",
    "connect_once",
    "open_database",
    "redact",
    "schema_revision",
    "scrub",
]

SCHEMA_HEAD = "0003"
"""The newest migration in `tools/migrations/versions`: the schema this code reads and writes
(a test checks it against Alembic's own view of the directory)."""

_SCHEMES = ("postgresql", "postgres")


class DatabaseError(RuntimeError):
    """The database cannot be used: one line that names the problem, never the password."""


def _passwords(url: str) -> set[str]:
    """The URL's password as written and as decoded (either may be quoted back)."""
    try:
        pw = urlsplit(url).password
    except ValueError:
        return set()
    return {pw, unquote(pw)} if pw else set()


def redact(url: str) -> str:
    """The URL as it may be shown: scheme, user, host, port and database, no password and no
    query (which may carry one too)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unreadable database URL)"
    user = f"{unquote(parts.username)}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def scrub(text: str, url: str) -> str:
    """The first line of a driver's message, with the URL's password cut out should it be
    echoed (a malformed URL may be quoted back)."""
    line = " ".join(text.strip().split("\n", 1)[0].split())
    for secret in _passwords(url):
        line = line.replace(secret, "***")
    return line


def check_url(url: str) -> None:
    """Raise `DatabaseError` unless `url` is a postgresql:// URL naming a database."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it validates it
    except ValueError as exc:
        raise DatabaseError(
            f"GTM_DATABASE_URL is not a valid URL ({scrub(str(exc), url)})"
        ) from None
    if parts.scheme not in _SCHEMES:
        raise DatabaseError(
            "GTM_DATABASE_URL must start with postgresql:// (for example "
            "postgresql://gtm@db.example:5432/gtm)"
        )
    if not parts.path.strip("/"):
        raise DatabaseError(f"GTM_DATABASE_URL names no database: {redact(url)} needs /DBNAME")


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Times come back in UTC, as the SQLite stores' ISO strings are written."""
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()


def schema_revision(conn: psycopg.Connection[Any]) -> str | None:
    """The Alembic revision the database is at; None when it was never migrated."""
    exists = conn.execute("SELECT to_regclass('alembic_version')").fetchone()
    if exists is None or exists[0] is None:
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else None


def connect_once(url: str, *, timeout: int = 10) -> psycopg.Connection[Any]:
    """One connection, or `DatabaseError` saying why not (host, authentication, database)."""
    check_url(url)
    try:
        return psycopg.connect(url, connect_timeout=timeout, autocommit=True)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to {redact(url)}: {scrub(str(exc), url)}") from None


class Database:
    """A pool of connections to one Postgres database whose schema is at `SCHEMA_HEAD`."""

    def __init__(self, url: str, *, max_size: int = 8, timeout: float = 30.0) -> None:
        self.where = redact(url)
        """The database, as it may be shown (no password)."""
        with connect_once(url) as conn:
            try:
                found = schema_revision(conn)
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"cannot read the schema revision of {self.where}: {scrub(str(exc), url)}"
                ) from None
        if found != SCHEMA_HEAD:
            have = f"revision {found}" if found else "no gtm schema"
            raise DatabaseError(
                f"the database {self.where} has {have}, this version needs revision "
                f"{SCHEMA_HEAD}: run `gtm db upgrade`"
            )
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            timeout=timeout,
            configure=_configure,
            check=ConnectionPool.check_connection,
            open=False,
            name="gtm",
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
        except PoolTimeout:
            self._pool.close()
            raise DatabaseError(
                f"cannot connect to {self.where}: no connection within {timeout:g} s"
            ) from None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection for one transaction: committed at the end of the block."""
        with self._pool.connection() as conn:
            yield conn

    def vacuum_full(self, *tables: str) -> None:
        """Rewrite `tables` so deleted and overwritten rows leave no bytes in their files (an
        erasure). The WAL and any backups still hold them until they rotate out."""
        with self._pool.connection() as conn:
            conn.autocommit = True
            try:
                for table in tables:
                    conn.execute(sql.SQL("VACUUM (FULL) {}").format(sql.Identifier(table)))
            finally:
                conn.autocommit = False

    def close(self) -> None:
        self._pool.close()


def open_database(db: Database | str) -> tuple[Database, bool]:
    """A store's database: the shared one it was given, or its own opened from a URL (then
    the store closes it). Returns it and whether the store owns it."""
    if isinstance(db, Database):
        return db, False
    return Database(db), True
