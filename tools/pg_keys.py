"""The key ledger (`tools.sqlite.KeyLedger`) on Postgres: which idempotency keys a provider
client without idempotency keys of its own (Dux-Soup, SMTP) has acted on, and the provider's id.

The key is the primary key and the first id recorded stays, so two processes recording one key
keep one answer, as the SQLite file does. Both methods are run again while the database is
briefly away (`tools.pg.retried`); `put` is `ON CONFLICT DO NOTHING`, safe to run twice.
"""

from __future__ import annotations

from tools.pg import Database, open_database, retried

__all__ = ["PgKeyLedger"]


class PgKeyLedger:
    """`tools.sqlite.KeyLedger` on a Postgres database (`GTM_DATABASE_URL`)."""

    def __init__(self, db: Database | str) -> None:
        self._db, self._owned = open_database(db)

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

    def close(self) -> None:
        if self._owned:
            self._db.close()
