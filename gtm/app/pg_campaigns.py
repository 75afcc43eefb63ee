"""The campaign book (`gtm.app.campaigns.CampaignBook`) on Postgres.

The rules (a campaign keeps its playbook and prompt variants; another one is refused unless
adopted) are `CampaignBookBase`'s, shared with SQLite; this gives the row read and the upsert.
Two processes recording one new campaign at once cannot both write a first record: the insert
is one `INSERT ... ON CONFLICT` statement, and the second only updates what an adoption may.
The run lock (`campaign_lock`) is not here: it stays a lock file on the machine that runs.
Both are run again while the database is briefly away (`tools.pg.retried`): the upsert writes
the same values a second time, so it is safe after an ambiguous commit too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from psycopg.rows import dict_row

from gtm.app.campaigns import CampaignBookBase
from tools.pg import Database, PgStore, retried

__all__ = ["PgCampaignBook"]


class PgCampaignBook(PgStore, CampaignBookBase):
    """The campaigns table, in the Postgres database (`GTM_DATABASE_URL`)."""

    def __init__(
        self, db: Database | str, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        super().__init__(db, clock)
        self._cache = {}

    @retried(idempotent=True)
    def _fetch(self, name: str) -> Mapping[str, Any] | None:
        with self._db.connection() as conn:
            return (
                conn.cursor(row_factory=dict_row)
                .execute("SELECT * FROM campaigns WHERE name = %s", (name,))
                .fetchone()
            )

    @retried(idempotent=True)
    def _upsert(self, row: dict[str, Any]) -> None:
        with self._db.connection() as conn:
            conn.execute(
                "INSERT INTO campaigns (name, playbook, fingerprint, source, recorded_at,"
                " adopted_at, prompt_variants, variant_seed) VALUES (%(name)s, %(playbook)s,"
                " %(fingerprint)s, %(source)s, %(recorded_at)s, %(adopted_at)s,"
                " %(prompt_variants)s, %(variant_seed)s)"
                " ON CONFLICT (name) DO UPDATE SET playbook = excluded.playbook,"
                " fingerprint = excluded.fingerprint, source = excluded.source,"
                " adopted_at = excluded.adopted_at",
                row,
            )
