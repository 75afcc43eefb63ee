"""`gtm db upgrade|status|migrate-from-sqlite`: the Postgres database named by GTM_DATABASE_URL.

SQLite stays the default and needs none of them. With `GTM_DATABASE_URL=postgresql://…`,
`gtm db upgrade` applies every migration this version has and the database lacks (gtm's stores
and LangGraph's checkpoints; running it again changes nothing), and `gtm db status` says where
the database stands without changing it (exit 1 when it is behind). `gtm db migrate-from-sqlite`
copies a data directory's SQLite stores into an upgraded, empty database (`gtm.app.pg_import`).
None prints the password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from gtm.cli.common import EXIT_REFUSED, EXIT_USAGE, app, fail, out, settings_of

if TYPE_CHECKING:
    from tools.pg_migrate import SchemaStatus

__all__ = ["db_app"]

db_app = typer.Typer(
    help="The Postgres database (GTM_DATABASE_URL): apply migrations, see where it stands.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db", rich_help_panel="Admin")


def _url(ctx: typer.Context) -> str:
    secret = settings_of(ctx).database_url
    if secret is None:
        raise fail(
            "GTM_DATABASE_URL is not set: the stores are SQLite files in the data directory, "
            "which need no migration (set it to postgresql://user@host:5432/db to use Postgres)"
        )
    return secret.get_secret_value()


def _show(s: SchemaStatus) -> None:
    out.print(f"database     {s.where}", highlight=False)
    out.print(f"stores       revision {s.current or 'none'} (head {s.head})", highlight=False)
    out.print(
        f"checkpoints  {s.checkpoints} of {s.checkpoints_head} migrations applied", highlight=False
    )


@db_app.command()
def upgrade(ctx: typer.Context) -> None:
    """Apply the migrations the database lacks (safe to run again)."""
    from tools.pg import DatabaseError
    from tools.pg_migrate import upgrade as apply

    url = _url(ctx)
    try:
        s = apply(url)
    except DatabaseError as exc:
        raise fail(str(exc), EXIT_REFUSED) from None
    _show(s)
    out.print("up to date")


@db_app.command()
def status(ctx: typer.Context) -> None:
    """Where the database stands against this version's migrations (exit 1: behind)."""
    from tools.pg import DatabaseError
    from tools.pg_migrate import status as read

    url = _url(ctx)
    try:
        s = read(url)
    except DatabaseError as exc:
        raise fail(str(exc), EXIT_REFUSED) from None
    _show(s)
    if not s.up_to_date:
        raise fail("the database is behind this version: run `gtm db upgrade`", EXIT_REFUSED)
    out.print("up to date")


@db_app.command("migrate-from-sqlite")
def migrate_from_sqlite(ctx: typer.Context) -> None:
    """Copy the data directory's SQLite stores into the (upgraded, empty) database.

    Moves what GTM_DATABASE_URL keeps in Postgres: the thread ledger and decisions, the
    campaigns, the send ledger, the suppression list, the events and the checkpoints, in one
    transaction. A database that already holds any of them is refused. Stop every gtm process
    on this data directory first; the SQLite files are left as they are.
    """
    from gtm.app.pg_import import ImportRefused
    from gtm.app.pg_import import migrate_from_sqlite as move
    from tools.pg import DatabaseError, redact

    settings = settings_of(ctx)
    url = _url(ctx)
    try:
        moved = move(settings)
    except (ImportRefused, DatabaseError) as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    for m in moved:
        out.print(f"{m.store:<30} {m.table:<18} {m.rows:>8} rows", highlight=False)
    total = sum(m.rows for m in moved)
    out.print(f"moved {total} rows from {settings.data_dir} to {redact(url)}", highlight=False)
