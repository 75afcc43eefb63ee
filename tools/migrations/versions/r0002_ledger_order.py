"""The campaign book, and the ledger sorting as SQLite sorts.

Revision ID: 0002
Revises: 0001

- `campaigns` (gtm/app/campaigns.py `CampaignBook`): the playbook and prompt variants each
  campaign was started with. Times are `timestamptz`; the playbook and the variants stay the
  JSON text the code writes.
- The ledger's listings (the review queue, `gtm inbox`, `gtm status`) must list rows in the
  same order on both backends, page for page. SQLite compares text byte by byte and puts NULLs
  first; so the text columns of `threads` and `campaigns` take the "C" collation (byte order,
  whatever locale the cluster was created with), and the two listing indexes are rebuilt with
  `NULLS FIRST` keys, the order `gtm.app.pg_ledger` asks for, so a page is still read off the
  index instead of sorted.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

THREAD_TEXT = (
    "campaign",
    "account_id",
    "thread_id",
    "company",
    "channel",
    "status",
    "skip_reason",
    "detail",
    "claimed_by",
    "decided_by",
    "decision",
    "contact",
    "preview",
    "claim_owner",
    "seq_stopped",
    "variant",
)
"""The text columns a listing may sort, group or compare by (the JSON ones are left alone)."""

_QUEUE = (
    "status, campaign, (CASE WHEN COALESCE(tier, 0) = 0 THEN 99 ELSE tier END), "
    "(COALESCE(waiting_since, updated_at)), id"
)
_OLDEST = "status, (COALESCE(waiting_since, updated_at)), id"


def _nulls_first(keys: str) -> str:
    return ", ".join(f"{k.strip()} NULLS FIRST" for k in _split(keys))


def _split(keys: str) -> list[str]:
    """Index keys split at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(keys):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(keys[start:i])
            start = i + 1
    return [*parts, keys[start:]]


def _collate(collation: str) -> str:
    return "ALTER TABLE threads " + ", ".join(
        f"ALTER COLUMN {c} TYPE TEXT COLLATE {collation}" for c in THREAD_TEXT
    )


_C, _DEFAULT = '"C"', '"default"'

UPGRADE = f"""
CREATE TABLE campaigns (
    name TEXT COLLATE "C" PRIMARY KEY,
    playbook TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    source TEXT COLLATE "C" NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    adopted_at TIMESTAMPTZ,
    prompt_variants TEXT,
    variant_seed INTEGER
);
DROP INDEX threads_queue;
DROP INDEX threads_oldest;
{_collate(_C)};
CREATE INDEX threads_queue ON threads ({_nulls_first(_QUEUE)});
CREATE INDEX threads_oldest ON threads ({_nulls_first(_OLDEST)});
"""

DOWNGRADE = f"""
DROP TABLE campaigns;
DROP INDEX threads_queue;
DROP INDEX threads_oldest;
{_collate(_DEFAULT)};
CREATE INDEX threads_queue ON threads ({_QUEUE});
CREATE INDEX threads_oldest ON threads ({_OLDEST});
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
