"""The key ledger (`tools.sqlite.KeyLedger`) on Postgres: which idempotency keys a provider
client without idempotency keys of its own (Dux-Soup, SMTP) has acted on, and the provider's id.

With `GTM_DATABASE_URL` set, the Dux-Soup and SMTP clients keep it here rather than in a file of
their machine's data directory (`gtm.app.providers`), so a worker on another machine that takes
over a killed worker's account knows which keys were already acted on.

The key is the primary key and the first id recorded stays, so two processes recording one key
keep one answer, as the SQLite file does. Both methods are run again while the database is
briefly away (`tools.pg.retried`); `put` is `ON CONFLICT DO NOTHING`, safe to run twice.

Given a URL, the ledger opens its own small pool on first use (not when the client is built:
`gtm doctor` builds clients only to check the provider).
"""

from __future__ import annotations

from tools.pg import PgOnDemand, retried

__all__ = ["PgKeyLedger"]


class PgKeyLedger(PgOnDemand):
    """`tools.sqlite.KeyLedger` on a Postgres database (`GTM_DATABASE_URL`)."""

    @retried(idempotent=True)
    def get(self, key: str) -> str | None:
        with self._db.connection() as conn:
            row = conn.execute("SELECT provider_id FROM acted WHERE key = %s", (key,)).fetchone()
        return str(row[0]) if row else None

    @retried(idempotent=True)
    def put(self, key: str, provider_id: str) -> None:
        with self._db.connection() as conn:
            conn.execute(
                "INSERT INTO acted (key, provider_id) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                (key, provider_id),
            )
