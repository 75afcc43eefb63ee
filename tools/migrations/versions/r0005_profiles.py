"""The LinkedIn profile facts: the last durable store of a run that was still a SQLite file.

Revision ID: 0005
Revises: 0004

Same columns, key and meaning as the SQLite table; times are `timestamptz`.

- `profile_fields` (tools/profiles.py `ProfileStore`, tools/pg_profiles.py `PgProfileStore`):
  what Dux-Soup's visits saw on a person's profile, the newest value of each field per person,
  with when, by which source and under which idempotency key it was seen. The key is
  (person, field), so a sighting's upsert (`tools.profiles.record_statement`) keeps one row per
  field and two workers storing sightings of one person wait for each other's row. Research
  reads a person's rows and `gtm forget` deletes them by `person`, the primary key's first
  column; nothing lists them in order, so the text keeps the database's collation (equality
  is byte for byte under any deterministic collation).
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE profile_fields (
    person TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL,
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    stored_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (person, field)
);
"""

TABLES = ("profile_fields",)


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("".join(f"DROP TABLE {t};" for t in TABLES))
