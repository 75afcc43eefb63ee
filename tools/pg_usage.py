"""Model token use (`tools.usage.UsageStore`) on Postgres: every worker's calls in one place.

One row per (campaign, model), added to by one `INSERT … ON CONFLICT DO UPDATE` with the
increments, so concurrent workers on any machine never lose a call (the row lock orders them).
Counts only: no prompt, reply, person or key reaches it.

While the database is briefly away a call is run again (`tools.pg.retried`); `add` is not run
again after an ambiguous commit, because a second run would count the call twice: that case is
one `DatabaseError` line (the telemetry callback that adds does not stop the run for it).
"""

from __future__ import annotations

from tools.pg import PgStore, retried
from tools.usage import USAGE_ADD, Usage

__all__ = ["PgUsageStore"]


class PgUsageStore(PgStore):
    """`tools.usage.UsageStore` on a Postgres database (`GTM_DATABASE_URL`)."""

    @retried(idempotent=False)
    def add(self, campaign: str, model: str, *, prompt_tokens: int, completion_tokens: int) -> None:
        """Count one model call (an atomic upsert, so concurrent writers never lose a call)."""
        with self._db.connection() as conn:
            conn.execute(
                USAGE_ADD.replace("?", "%s"),
                (campaign, model, max(0, prompt_tokens), max(0, completion_tokens)),
            )

    @retried(idempotent=True)
    def for_campaign(self, campaign: str) -> list[Usage]:
        """The campaign's totals, one per model, by model name."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT campaign, model, calls, prompt_tokens, completion_tokens FROM usage"
                " WHERE campaign = %s ORDER BY model",
                (campaign,),
            ).fetchall()
        return [Usage(c, m, int(n), int(p), int(k)) for c, m, n, p, k in rows]
