"""The do-not-contact list (`tools.suppression.SuppressionList`) on Postgres.

Same rules, same answers, same canonical forms: `tools.suppression.SuppressionStore` holds them
for both backends; this module gives only the queries. Every entry is one row under its
(kind, value) key, so two processes entering one person store them once; a method that writes
several rows writes them in one transaction. An erasure rewrites the table afterwards, so the
plain values it replaced leave the table's files (the server's WAL keeps them until it rotates).

While the database is briefly away each method is run again whole (`tools.pg.retried`); adding
is `ON CONFLICT DO NOTHING`, so a second run after an ambiguous commit changes nothing. `erase`
(its count) and `record_erasure` (its audit row) are not run again then: one `DatabaseError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import Any

import psycopg

from tools.pg import PgStore, retried
from tools.suppression import SuppressionKind, SuppressionStore

__all__ = ["PgSuppressionList"]

_PUT = (
    "INSERT INTO suppressions (kind, value, reason, added_at) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (kind, value) DO NOTHING"
)

_Conn = psycopg.Connection[Any]


class PgSuppressionList(PgStore, SuppressionStore[_Conn]):
    """`tools.suppression.SuppressionList` on a Postgres database (`GTM_DATABASE_URL`)."""

    # The rules are `SuppressionStore`'s (tests/test_store_rules.py), only wrapped here so the
    # whole transaction runs again while the database is away (`retried`); an erasure's count
    # would be wrong after an ambiguous commit, so it is not run again then.
    add = retried(idempotent=True)(SuppressionStore.add)
    add_person = retried(idempotent=True)(SuppressionStore.add_person)
    erase = retried(idempotent=False)(SuppressionStore.erase)

    @contextmanager
    def _writing(self) -> Iterator[_Conn]:
        with self._db.connection() as conn:
            yield conn

    def _put(self, c: _Conn, kind: SuppressionKind, form: str, reason: str) -> None:
        c.execute(_PUT, (kind, form, reason, self._clock()))

    def _delete(self, c: _Conn, kind: SuppressionKind, form: str) -> int:
        return c.execute(
            "DELETE FROM suppressions WHERE kind = %s AND value = %s", (kind, form)
        ).rowcount

    @retried(idempotent=True)
    def _count(self, kind: SuppressionKind, form: str) -> int:
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM suppressions WHERE kind = %s AND value = %s", (kind, form)
            ).fetchone()
        return int(row[0]) if row else 0

    @retried(idempotent=True)
    def _reasons(self, probes: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """All probes in one query (one round trip to the server)."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT kind, value, reason FROM suppressions WHERE (kind, value) IN ("
                + ", ".join(["(%s, %s)"] * len(probes))
                + ")",
                [x for probe in probes for x in probe],
            ).fetchall()
        return {(k, v): r for k, v, r in rows}

    @retried(idempotent=True)
    def entries(self) -> list[tuple[str, str, str]]:
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT kind, value, reason FROM suppressions ORDER BY added_at, seq"
            ).fetchall()
        return [(k, v, r) for k, v, r in rows]

    @retried(idempotent=False)
    def record_erasure(self, fingerprint: str, requested_by: str, erased: dict[str, int]) -> None:
        with self._db.connection() as conn:
            conn.execute(
                "INSERT INTO erasures (at, fingerprint, requested_by, erased)"
                " VALUES (%s, %s, %s, %s)",
                (self._clock(), fingerprint, requested_by, json.dumps(erased)),
            )
        self._db.vacuum_full("suppressions")

    @retried(idempotent=True)
    def erasures(self) -> list[tuple[str, str, str, str]]:
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT at, fingerprint, requested_by, erased FROM erasures ORDER BY n"
            ).fetchall()
        return [(at.astimezone(UTC).isoformat(), f, by, e) for at, f, by, e in rows]
