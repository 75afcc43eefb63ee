"""Account leases: several `gtm run` workers share one campaign's accounts.

Revision ID: 0003
Revises: 0002

- `account_leases` (tools/pg_leases.py `AccountLeases`): one row per campaign and account that a
  worker has ever taken. `worker` and `lease_until` say who works it now and until when (the
  database's clock, so the machines' clocks need not agree); a worker renews its leases while
  it works, and a lease that has run out (its worker was killed) may be taken by another.
  `done_at` says when the account was last finished, so a worker skips what another worker
  finished since it started. `takes` counts the workers that took it, `taken_from` names the
  one whose lease ran out when it was last taken over. The partial index serves "who holds
  what" while a run waits.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE account_leases (
    campaign TEXT COLLATE "C" NOT NULL,
    account_id TEXT COLLATE "C" NOT NULL,
    worker TEXT,
    lease_until TIMESTAMPTZ,
    taken_at TIMESTAMPTZ,
    done_at TIMESTAMPTZ,
    takes INTEGER NOT NULL DEFAULT 0,
    taken_from TEXT,
    PRIMARY KEY (campaign, account_id)
);
CREATE INDEX account_leases_held ON account_leases (campaign, lease_until)
    WHERE worker IS NOT NULL;
"""

DOWNGRADE = """
DROP TABLE account_leases;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
