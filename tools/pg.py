"""One way to reach the Postgres stores: a connection pool, checked once, and one-line errors.

`GTM_DATABASE_URL=postgresql://…` moves the durable stores from SQLite files to one Postgres
database. `Database` opens it: it connects once to say plainly what is wrong (unreachable host,
wrong password, no such database, a schema older than this code), then keeps a `psycopg_pool`
pool that every store of the process shares. A URL's password never appears in a message.

Each `Database.connection()` block is one transaction (committed when the block ends, rolled
back when it raises), so a store method that decides and writes does both or neither. A pooled
connection is checked before it is handed out, so one the server dropped (a restart, a failover,
an idle timeout) is replaced instead of failing the next call.

A database that goes away mid-run (`retried`, `Database.retry`): a store method whose
transaction fails on a lost connection is run again, whole, with backoff, for up to
`retry_window` seconds (`GTM_DATABASE_RETRY_S`, default 60); if the server is not back by then,
one `DatabaseError` line says so. What counts as "away" (`is_away`): a client-side
`OperationalError` (no SQLSTATE: the socket closed, the connection is closed, it could not
connect), SQLSTATE class 08 (connection exception), 57P01-57P03 (admin/crash shutdown, cannot
connect now) and the pool's `PoolTimeout`. Never retried: serialization failures and deadlocks
(class 40 is an `OperationalError` too, but means the transaction lost a race), integrity
errors, a cancelled statement, a closed pool.

Safety. A failure before COMMIT was sent leaves nothing behind (the server rolls back a
transaction whose connection is gone), so running it again is always safe. A failure AT COMMIT
is ambiguous: the server may have committed before the reply was lost. `connection()` commits
explicitly so that case is told apart (`CommitUnknown`), and a method is run again after it only
if a second run leaves the same rows and returns the same answer (`idempotent=True`): reads;
`UPDATE … SET` to fixed values (outbox marks, ledger `update`/`set_sequence`/`release`, the
first-reason-wins `stop_sequence`); `INSERT … ON CONFLICT DO NOTHING` whose answer is re-read
or not given (ledger `ensure`, suppression `add`/`add_person`, key ledger `put`); upserts
(campaign book); deletes whose count is not reported (outbox `release`). The others are
declared `idempotent=False` and give the one line at once instead of a blind second run,
because a second run would answer differently or write twice: outbox `reserve` (it would find
its own reservation and answer "reserved concurrently"; the next run finds that `pending` row
and hands it to a human, never sends twice), ledger `claim` (it would find its own claim and
answer "taken"), `record_decision` (a second history entry), event `ingest` (it would answer
"already stored"), `recover_stale_pending` (the rows it turned `unknown` would go unreported),
the counts returned by erasures and history deletes, the erasure audit row, escalation `add`
(it would answer "already there"), red flag `claim` (it would find its own claim) and usage
`add` (a model call counted twice). The account leases (`tools.pg_leases`) are all safe to run
again: their docstring says why.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from time import monotonic
from typing import Any, Concatenate, ParamSpec, Protocol, Self, TypeVar, cast
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout, TooManyRequests
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from tools.sqlite import conditions

__all__ = [
    "SCHEMA_HEAD",
    "CommitUnknown",
    "Database",
    "DatabaseError",
    "PgOnDemand",
    "PgStore",
    "check_url",
    "connect_once",
    "is_away",
    "gone",
    "open_database",
    "redact",
    "retried",
    "retry_async",
    "schema_revision",
    "scrub",
    "where",
]

SCHEMA_HEAD = "0006"
"""The newest migration in `tools/migrations/versions`: the schema this code reads and writes
(a test checks it against Alembic's own view of the directory)."""

_SCHEMES = ("postgresql", "postgres")
_T = TypeVar("_T")


class DatabaseError(RuntimeError):
    """The database cannot be used: one line that names the problem, never the password."""


class CommitUnknown(psycopg.OperationalError):
    """COMMIT failed on a lost connection: the transaction may or may not have been committed.
    The driver's error is its `__cause__`."""


_AWAY_STATES = frozenset({"57P01", "57P02", "57P03"})
"""admin_shutdown, crash_shutdown, cannot_connect_now: the server is stopping or starting."""

_DEADLINE: ContextVar[float | None] = ContextVar("gtm_pg_retry_deadline", default=None)
"""When the outermost retrying call gives up (monotonic); set while one runs."""


def is_away(exc: BaseException) -> bool:
    """Whether `exc` says the database is unreachable (worth running the transaction again once
    it is back) rather than that the transaction itself was refused."""
    if isinstance(exc, CommitUnknown | PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    if isinstance(exc, PoolClosed | TooManyRequests):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _AWAY_STATES


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

    def __init__(
        self, url: str, *, max_size: int = 8, timeout: float = 30.0, retry_window: float = 60.0
    ) -> None:
        self.where = redact(url)
        """The database, as it may be shown (no password)."""
        self.retry_window = retry_window
        """How long a store call waits for a database that went away (`retry`), in seconds."""
        self._timeout = timeout
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
        """A pooled connection for one transaction: committed at the end of the block. A lost
        connection at COMMIT raises `CommitUnknown`. Inside `retry`, waiting for a pooled
        connection ends with the retry window, and a lost server is left to `retry`. Outside
        one (a caller that cannot be run again), it waits up to the window for a connection,
        and a lost server is one `DatabaseError` line instead of a driver traceback."""
        deadline = _DEADLINE.get()
        if deadline is None:
            wait = self.retry_window
        else:
            wait = max(0.05, min(self._timeout, deadline - monotonic()))
        try:
            with self._pool.connection(timeout=wait) as conn:
                yield conn
                try:
                    conn.commit()
                except psycopg.OperationalError as exc:
                    if is_away(exc):
                        raise CommitUnknown(str(exc)) from exc
                    raise
        except psycopg.OperationalError as exc:
            if deadline is not None or not is_away(exc):
                raise
            raise self._lost(exc) from None

    def _lost(self, exc: psycopg.OperationalError) -> DatabaseError:
        """The line for a database that went away under a call that is not run again."""
        if isinstance(exc, PoolTimeout):
            return gone(self.where, self.retry_window)
        if isinstance(exc, CommitUnknown):
            return _unsure(self.where)
        return DatabaseError(
            f"the database {self.where} went away in the middle of a change, which was not "
            "saved; nothing decided before it is lost: run the command again once it is back"
        )

    def retry(self, call: Callable[[], _T], *, idempotent: bool) -> _T:
        """`call()` (one or more `connection()` transactions), run again whole while the
        database is away, for up to `retry_window` seconds; then one `DatabaseError` line.
        After an ambiguous commit it is run again only if `idempotent` (see the module's
        docstring); otherwise the line comes at once. A call inside another's retry runs once:
        the outer one retries."""
        if _DEADLINE.get() is not None:
            return call()
        token = _DEADLINE.set(monotonic() + self.retry_window)
        try:
            for attempt in Retrying(
                stop=stop_after_delay(self.retry_window),
                wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
                retry=retry_if_exception(
                    lambda e: is_away(e) and (idempotent or not isinstance(e, CommitUnknown))
                ),
                reraise=True,
            ):
                with attempt:
                    return call()
        except CommitUnknown:
            raise _unsure(self.where) from None
        except psycopg.OperationalError as exc:
            if not is_away(exc):
                raise
            raise gone(self.where, self.retry_window) from None
        finally:
            _DEADLINE.reset(token)
        raise AssertionError("tenacity neither returned nor raised")  # pragma: no cover

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


def _unsure(where: str) -> DatabaseError:
    """The line for a change lost at COMMIT that is not safe to make twice."""
    return DatabaseError(
        f"the database {where} went away while saving a change that must not be written "
        "twice, and it may or may not have been saved: run the command again once the "
        "database is back (`gtm status` shows anything that needs a human)"
    )


def gone(where: str, window: float) -> DatabaseError:
    """The one line for a database that stayed away for the whole retry window."""
    return DatabaseError(
        f"the database {where} went away and did not come back within {window:g} s; nothing "
        "decided is lost: run the command again once it is back"
    )


async def retry_async(call: Callable[[], Awaitable[_T]], *, where: str, window: float) -> _T:
    """`await call()`, run again while the database is away (`is_away`) for up to `window`
    seconds; then `gone`. Only for calls that are safe to run twice (every write an upsert or
    `ON CONFLICT DO NOTHING`): a failure at commit is retried like any other."""
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(window),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
            retry=retry_if_exception(is_away),
            reraise=True,
        ):
            with attempt:
                return await call()
    except psycopg.OperationalError as exc:
        if not is_away(exc):
            raise
        raise gone(where, window) from None
    raise AssertionError("tenacity neither returned nor raised")  # pragma: no cover


class _HasDatabase(Protocol):
    _db: Database


_S = TypeVar("_S")
_P = ParamSpec("_P")


def retried(
    *, idempotent: bool
) -> Callable[[Callable[Concatenate[_S, _P], _T]], Callable[Concatenate[_S, _P], _T]]:
    """A store method run through `Database.retry` of the object's `_db`: the whole method is
    its transaction(s). `idempotent`: safe to run again after an ambiguous commit. It may wrap a
    base class's rule as it stands (`reserve = retried(…)(OutboxStore.reserve)`), whose class
    knows no `_db`: the object it is called on, a Postgres store, has one."""

    def wrap(method: Callable[Concatenate[_S, _P], _T]) -> Callable[Concatenate[_S, _P], _T]:
        def call(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
            db = cast(_HasDatabase, self)._db
            return db.retry(lambda: method(self, *args, **kwargs), idempotent=idempotent)

        functools.update_wrapper(call, method)
        return call

    return wrap


def open_database(db: Database | str) -> tuple[Database, bool]:
    """A store's database: the shared one it was given, or its own opened from a URL (then
    the store closes it). Returns it and whether the store owns it."""
    if isinstance(db, Database):
        return db, False
    return Database(db), True


def where(**filters: Any) -> tuple[str, list[Any]]:
    """` WHERE a = %s AND b = %s` for the filters that are not None (or an empty clause): the
    Postgres twin of `tools.sqlite.where`."""
    return conditions("%s", filters)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PgStore:
    """What every Postgres store shares: the database it works in (the workspace's shared
    pool, or its own opened from a URL and closed with the store) and the clock it stamps rows
    with. `retried` methods find the database as `self._db`."""

    def __init__(self, db: Database | str, clock: Callable[[], datetime] = _utc_now) -> None:
        self._clock = clock
        self._db, self._owned = open_database(db)

    def close(self) -> None:
        if self._owned:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PgOnDemand:
    """A store that may never touch the database (a provider client built only to be checked,
    as `gtm doctor` does): the workspace's shared pool if given one, else a small pool of its
    own, opened on first use and closed with the store. `retried` methods find it as
    `self._db`."""

    def __init__(self, db: Database | str, *, retry_window: float = 60.0) -> None:
        self._shared = db if isinstance(db, Database) else None
        self._url = db if isinstance(db, str) else ""
        self._retry_window = retry_window
        self._own: Database | None = None

    @property
    def _db(self) -> Database:
        if self._shared is not None:
            return self._shared
        if self._own is None:
            self._own = Database(self._url, max_size=2, retry_window=self._retry_window)
        return self._own

    def close(self) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None
