"""Alembic's entry point for gtm's Postgres schema, run by `tools.pg_migrate`.

It reads nothing from files or the environment: `tools.pg_migrate` opens the connection (the
URL never enters Alembic's configuration, so it is never logged) and hands it over in
`config.attributes["connection"]`. The migrations are plain SQL (`op.execute`): the schema is
written out, not generated from models.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
