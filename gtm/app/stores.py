"""Where a workspace's durable stores live: SQLite files in the data directory, or Postgres.

`open_stores` opens the stores a run writes to; `open_checkpointer` opens LangGraph's
checkpointer. Without `GTM_DATABASE_URL` both are the SQLite files they always were. With it,
the stores that have a Postgres version today (the thread ledger and its decisions, the
campaigns, the send ledger, the suppression list, the events, the LinkedIn profile facts; and,
opened on demand on the same pool through `Workspace.database`, the escalations, red flags,
model usage, the Dux-Soup and SMTP send keys and the Slack alert queue) share one
`tools.pg.Database` pool, and the checkpoints go to the same database through
`langgraph-checkpoint-postgres`; only the local provider twins stay SQLite files
(`STILL_ON_SQLITE` names them, so `gtm run` and `gtm doctor` say it).
A database whose schema is behind this version is refused
with one line (`tools.pg.DatabaseError`) before anything is written anywhere: `gtm db upgrade`
brings it up to date; a run never migrates on its own.

A database that goes away mid-run (a restart, a failover) is waited for: each store call and
each checkpoint read or write runs again while the server is unreachable, for up to
`GTM_DATABASE_RETRY_S` seconds (`tools.pg.Database.retry`, `tools.pg.retry_async`), then the
command stops with one `DatabaseError` line. Both pools check a connection before handing it
out, so those the server dropped are replaced.

The Postgres classes answer the SQLite classes' methods one for one (the contract suite in
tests/test_pg_stores.py runs the SQLite stores' tests against both), so the rest of the
application keeps addressing them by the SQLite classes' names.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agents.graph import checkpoint_serde
from gtm.app.campaigns import CampaignBook
from gtm.app.ledger import Ledger
from gtm.app.settings import Settings
from tools.events import EventStore
from tools.outbox import Outbox
from tools.profiles import ProfileStore
from tools.sqlite import retry_while_locked
from tools.suppression import SuppressionList

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from tools.pg import Database

__all__ = [
    "ON_POSTGRES",
    "STILL_ON_SQLITE",
    "Stores",
    "check_schema",
    "campaign_book",
    "ledger",
    "open_checkpointer",
    "open_stores",
    "where_stores_live",
]

ON_POSTGRES = (
    "thread ledger and decisions",
    "campaigns",
    "send ledger (outbox)",
    "suppression list",
    "events",
    "LinkedIn profile facts",
    "escalations",
    "red flags",
    "model usage",
    "Dux-Soup and SMTP send keys",
    "Slack alert queue",
    "checkpoints",
)
"""What `GTM_DATABASE_URL` moves to Postgres today."""
STILL_ON_SQLITE = ("local provider twins",)
"""What stays in SQLite files in the data directory even with `GTM_DATABASE_URL` set, by
design: the twins (the local CRM and LinkedIn outbox that stand in for real providers, opened
in `gtm.app.providers`). The Slack alerts waiting to be posted are in the database's
`alert_queue` (`tools.pg_alerts`), so any machine posts what another could not."""


@dataclass(frozen=True)
class Stores:
    """The durable stores one workspace uses, whichever backend holds each."""

    outbox: Outbox
    suppressions: SuppressionList
    events: EventStore
    profiles: ProfileStore
    ledger: Ledger
    campaigns: CampaignBook
    database: Database | None = None
    """The shared Postgres pool when `GTM_DATABASE_URL` is set; None: SQLite files only."""


def where_stores_live(settings: Settings) -> str:
    """One sentence for people: which stores are in Postgres and which in SQLite files."""
    if settings.database_url is None:
        return f"Every store is a SQLite file in {settings.data_dir}"
    return (
        f"Postgres holds the {', '.join(ON_POSTGRES)}; SQLite files in {settings.data_dir} "
        f"still hold the {', '.join(STILL_ON_SQLITE)}"
    )


def check_schema(url: str) -> None:
    """Raise `tools.pg.DatabaseError` (one line, no password) unless the database is reachable
    and both its stores' and its checkpoints' migrations are this version's."""
    from tools.pg import DatabaseError
    from tools.pg_migrate import status

    got = status(url)
    if got.current != got.head:
        have = f"revision {got.current}" if got.current else "no gtm schema"
        raise DatabaseError(
            f"the database {got.where} has {have}, this version needs revision {got.head}: "
            "run `gtm db upgrade`"
        )
    if got.checkpoints != got.checkpoints_head:
        raise DatabaseError(
            f"the database {got.where} has {got.checkpoints} of {got.checkpoints_head} "
            "checkpoint migrations: run `gtm db upgrade`"
        )


def _sqlite_stores(settings: Settings, clock: Callable[[], datetime]) -> Stores:
    return Stores(
        outbox=Outbox(settings.path("outbox.sqlite"), clock=clock),
        suppressions=SuppressionList(settings.path("suppressions.sqlite"), clock=clock),
        ledger=Ledger(settings.path("ledger.sqlite"), clock=clock),
        campaigns=CampaignBook(settings.path("ledger.sqlite"), clock=clock),
        events=EventStore(settings.path("events.sqlite"), clock=clock),
        profiles=ProfileStore(settings.path("profiles.sqlite"), clock=clock),
    )


def _postgres_stores(db: Database, settings: Settings, clock: Callable[[], datetime]) -> Stores:
    from gtm.app.pg_campaigns import PgCampaignBook
    from gtm.app.pg_ledger import PgLedger
    from tools.pg_events import PgEventStore
    from tools.pg_outbox import PgOutbox
    from tools.pg_profiles import PgProfileStore
    from tools.pg_suppression import PgSuppressionList

    # The casts: each Postgres class answers its SQLite class's methods one for one
    # (tests/test_run_postgres.py compares their signatures; test_pg_stores.py their answers).
    return Stores(
        outbox=cast(Outbox, PgOutbox(db, clock=clock)),
        suppressions=cast(SuppressionList, PgSuppressionList(db, clock=clock)),
        events=cast(EventStore, PgEventStore(db, clock=clock)),
        ledger=cast(Ledger, PgLedger(db, clock=clock)),
        campaigns=cast(CampaignBook, PgCampaignBook(db, clock=clock)),
        profiles=cast(ProfileStore, PgProfileStore(db, clock=clock)),
        database=db,
    )


def ledger(settings: Settings) -> Ledger:
    """The thread ledger alone, for a command that reads it outside a workspace (the caller
    closes it): `ledger.sqlite`, or the `GTM_DATABASE_URL` database on a pool of its own."""
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return Ledger(settings.path("ledger.sqlite"))
    from gtm.app.pg_ledger import PgLedger

    return cast(Ledger, PgLedger(settings.database_url.get_secret_value()))


def campaign_book(settings: Settings) -> CampaignBook:
    """The campaign book alone, as `ledger` gives the thread ledger (the caller closes it)."""
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return CampaignBook(settings.path("ledger.sqlite"))
    from gtm.app.pg_campaigns import PgCampaignBook

    return cast(CampaignBook, PgCampaignBook(settings.database_url.get_secret_value()))


def _close(stores: Stores) -> None:
    """Close every store, then the pool they share (the stores do not own it)."""
    try:
        for s in (
            stores.outbox,
            stores.suppressions,
            stores.ledger,
            stores.campaigns,
            stores.events,
            stores.profiles,
        ):
            s.close()
    finally:
        if stores.database is not None:
            stores.database.close()


@contextlib.contextmanager
def open_stores(settings: Settings, clock: Callable[[], datetime]) -> Iterator[Stores]:
    """The workspace's durable stores, closed when the block ends. With `GTM_DATABASE_URL`,
    the database is checked first (`check_schema`): a refusal raises `tools.pg.DatabaseError`
    before the data directory or any file in it is created."""
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        stores = _sqlite_stores(settings, clock)
    else:
        from tools.pg import Database

        url = settings.database_url.get_secret_value()
        _quiet_pool_warnings()
        check_schema(url)
        db = Database(url, retry_window=settings.database_retry_s)
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            stores = _postgres_stores(db, settings, clock)
        except BaseException:
            db.close()
            raise
    try:
        yield stores
    finally:
        _close(stores)


def _quiet_pool_warnings() -> None:
    """While the server is away, `psycopg_pool` logs a warning of several lines for every
    reconnection attempt; a command would print dozens before its one line. The retry says it
    (`tools.pg.Database.retry`), so only the pool's errors are shown."""
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


@retry_while_locked
async def _set_up(saver: AsyncSqliteSaver) -> None:
    """Create the checkpoint tables. Switching a new file to WAL needs it to itself, and SQLite
    answers "database is locked" at once rather than waiting, so two processes opening a fresh
    data directory together would fail: the loser tries again."""
    await saver.setup()


@contextlib.asynccontextmanager
async def open_checkpointer(settings: Settings) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """LangGraph's checkpointer for this workspace, with `checkpoint_serde()` either way:
    `checkpoints.sqlite` in the data directory, or the `GTM_DATABASE_URL` database through an
    async connection pool. The Postgres tables are not created here: `gtm db upgrade` made them
    and `open_stores` checked them."""
    if settings.database_url is None:
        async with aiosqlite.connect(settings.path("checkpoints.sqlite"), timeout=30) as conn:
            await conn.execute("PRAGMA busy_timeout=30000")
            saver = AsyncSqliteSaver(conn, serde=checkpoint_serde())
            await _set_up(saver)
            yield saver
        return
    url, window = settings.database_url.get_secret_value(), settings.database_retry_s
    _quiet_pool_warnings()
    async with _postgres_pool(url, timeout=min(30.0, window)) as pool:
        yield _waiting_saver(pool, url, window)


def _waiting_saver(pool: Any, url: str, window: float) -> BaseCheckpointSaver[Any]:
    """`AsyncPostgresSaver` whose reads and writes wait out a database that went away
    (`tools.pg.retry_async`), then raise one `DatabaseError` line. Running one again is safe,
    even after an ambiguous commit: every write of the saver is keyed (checkpoints and writes
    are upserts on their ids, blobs `ON CONFLICT DO NOTHING`), and a thread's deletion is a
    delete. A write that still fails raises inside the graph's step, so the runner records
    the account as failed and the next run resumes it from its last saved checkpoint."""
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
    from langgraph.checkpoint.base import CheckpointTuple as Tuple
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    from tools.pg import redact, retry_async

    where = redact(url)

    class WaitingSaver(AsyncPostgresSaver):
        async def aget_tuple(self, config: RunnableConfig) -> Tuple | None:
            get = super().aget_tuple
            return await retry_async(lambda: get(config), where=where, window=window)

        async def aput(
            self,
            config: RunnableConfig,
            checkpoint: Checkpoint,
            metadata: CheckpointMetadata,
            new_versions: ChannelVersions,
        ) -> RunnableConfig:
            put = super().aput
            return await retry_async(
                lambda: put(config, checkpoint, metadata, new_versions), where=where, window=window
            )

        async def aput_writes(
            self,
            config: RunnableConfig,
            writes: Sequence[tuple[str, Any]],
            task_id: str,
            task_path: str = "",
        ) -> None:
            put = super().aput_writes
            await retry_async(
                lambda: put(config, writes, task_id, task_path), where=where, window=window
            )

        async def adelete_thread(self, thread_id: str) -> None:
            delete = super().adelete_thread
            await retry_async(lambda: delete(thread_id), where=where, window=window)

    return WaitingSaver(pool, serde=checkpoint_serde())


@contextlib.asynccontextmanager
async def _postgres_pool(url: str, *, timeout: float = 30.0) -> AsyncIterator[Any]:
    """An async pool set up as `langgraph-checkpoint-postgres` requires of one (autocommit, no
    prepared statements, rows as dicts); a dropped connection is replaced before use. An
    unreachable server is one `DatabaseError` line, never the password."""
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool, PoolTimeout

    from tools.pg import DatabaseError, redact

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=8,
        timeout=timeout,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        check=AsyncConnectionPool.check_connection,
        open=False,
        name="gtm-checkpoints",
    )
    try:
        await pool.open(wait=True, timeout=timeout)
    except PoolTimeout:
        await pool.close()
        raise DatabaseError(
            f"cannot connect to {redact(url)}: no connection within {timeout:g} s"
        ) from None
    try:
        yield pool
    finally:
        await pool.close()
