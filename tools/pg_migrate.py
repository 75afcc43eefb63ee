"""Bring a Postgres database to the schema this version needs, and say where it stands.

Two sets of migrations, each versioned by its own tool: gtm's stores (Alembic, the revisions in
`tools/migrations/versions`, tracked in `alembic_version`) and LangGraph's checkpoints
(`langgraph-checkpoint-postgres` runs its own list, tracked in `checkpoint_migrations`).
`upgrade` applies whatever of both is missing and is safe to run again; `status` reads both
without changing anything. The URL is handed to the drivers only: Alembic's configuration never
holds it, so no log line can show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.pg import DatabaseError, check_url, connect_once, redact, schema_revision, scrub

__all__ = ["MIGRATIONS", "SchemaStatus", "status", "upgrade"]

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class SchemaStatus:
    """Where one database stands against this version's migrations."""

    where: str
    """The database, without its password."""
    current: str | None
    """The stores' revision; None: never migrated."""
    head: str
    checkpoints: int
    """Checkpoint migrations applied (LangGraph's own numbering)."""
    checkpoints_head: int

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head and self.checkpoints == self.checkpoints_head


def _alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision in the migrations directory."""
    from alembic.script import ScriptDirectory

    found = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert found is not None, "the migrations directory has no revision"
    return str(found)


def _engine(url: str) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    try:
        target = make_url(url).set(drivername="postgresql+psycopg")
    except Exception:  # noqa: BLE001 - SQLAlchemy's parse errors quote the URL back
        raise DatabaseError(f"GTM_DATABASE_URL cannot be read: {redact(url)}") from None
    return create_engine(target, poolclass=NullPool)


def _checkpoint_versions() -> int:
    from langgraph.checkpoint.postgres.base import BasePostgresSaver

    return len(BasePostgresSaver.MIGRATIONS)


def _refused(doing: str, url: str, exc: BaseException) -> DatabaseError:
    """One line for a database that refused a migration or a read (permissions, a lock)."""
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    return DatabaseError(f"cannot {doing} {redact(url)}: {scrub(str(cause), url)}")


def upgrade(url: str) -> SchemaStatus:
    """Apply every missing migration (stores, then checkpoints); returns where it ends."""
    connect_once(url).close()  # one clear line for a wrong host, password or database
    import psycopg
    import sqlalchemy.exc
    from alembic import command
    from langgraph.checkpoint.postgres import PostgresSaver

    engine = _engine(url)
    try:
        with engine.begin() as connection:
            command.upgrade(_alembic_config(connection), "head")
        with PostgresSaver.from_conn_string(url) as saver:
            saver.setup()
    except (sqlalchemy.exc.DBAPIError, psycopg.Error) as exc:
        raise _refused("apply the migrations to", url, exc) from None
    finally:
        engine.dispose()
    return status(url)


def status(url: str) -> SchemaStatus:
    """The database's revisions against this version's, read only."""
    import psycopg

    check_url(url)
    with connect_once(url) as conn:
        try:
            current = schema_revision(conn)
            row = conn.execute("SELECT to_regclass('checkpoint_migrations')").fetchone()
            done = 0
            if row is not None and row[0] is not None:
                got = conn.execute("SELECT COALESCE(MAX(v) + 1, 0) FROM checkpoint_migrations")
                done = int((got.fetchone() or (0,))[0])
        except psycopg.Error as exc:
            raise _refused("read the schema revision of", url, exc) from None
    return SchemaStatus(redact(url), current, head(), done, _checkpoint_versions())
