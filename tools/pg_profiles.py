"""The LinkedIn profile facts (`tools.profiles.ProfileStore`) on Postgres.

Same methods, same answers: the rules (cleaning, caps and the canonical profile URL of a
snapshot; newest value per field; of two sightings at one instant the first stored stays; the
keys an erasure deletes) are `tools.profiles`'s own, including the one upsert statement, run
here with Postgres's placeholders. Under READ COMMITTED an `INSERT … ON CONFLICT DO UPDATE …
WHERE` that meets a row another transaction is writing waits for it and then compares against
the committed row, so two workers storing sightings of one person at once leave the rows one
after the other would have.

`record` stores all its snapshots in ONE transaction (the SQLite file takes one per snapshot;
the answers are the same), so a run again after a failure starts from nothing stored and counts
the same. Its rows are written ordered by person and field (a stable sort, so sightings of one
field keep their order and a tie still goes to the first), so two batches naming the same
people lock their rows in one order and cannot deadlock.

While the database is briefly away each method is run again whole (`tools.pg.retried`). After
an ambiguous commit (`tools.pg.CommitUnknown`):
- `get` is run again: a read.
- `record` is not: a second run would leave the same rows (a redelivered sighting changes
  nothing) but answer 0 for sightings the first run stored, so that case is one `DatabaseError`
  line; the webhook answers with an error and Dux-Soup's redelivery is then stored once.
- `erase_person` is not: a second run would count 0 fields. The table is rewritten (`VACUUM
  FULL`) when any went, as the other stores' erasures do, so the deleted text leaves its files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gtm.domain.identity import profile_url
from tools.pg import PgStore, retried
from tools.profiles import (
    FIELDS,
    FieldRow,
    ProfileSnapshot,
    SeenProfile,
    erasure_keys,
    field_rows,
    record_statement,
    seen_profile,
)

__all__ = ["PgProfileStore"]

_UPSERT = record_statement("%s")


def _in_lock_order(snapshots: Sequence[ProfileSnapshot]) -> list[tuple[int, FieldRow]]:
    """Every field row of `snapshots`, tagged with its snapshot's index, ordered by person and
    field; rows of one (person, field) keep the snapshots' order."""
    rows = [(i, row) for i, snap in enumerate(snapshots) for row in field_rows(snap)]
    return sorted(rows, key=lambda r: (r[1][0], FIELDS.index(r[1][1])))


class PgProfileStore(PgStore):
    """`tools.profiles.ProfileStore` on a Postgres database (`GTM_DATABASE_URL`): the shared
    pool or its own, and the clock, as every Postgres store has them (`tools.pg.PgStore`)."""

    def record(self, snapshots: Iterable[ProfileSnapshot]) -> int:
        """Store `snapshots`; how many changed what is known (a redelivered or older sighting,
        or one with no field we keep, changes nothing)."""
        return self._record(list(snapshots))  # a list: a retry must see them all again

    @retried(idempotent=False)
    def _record(self, snapshots: Sequence[ProfileSnapshot]) -> int:
        now = self._clock()
        changed: set[int] = set()
        with self._db.connection() as conn, conn.cursor() as cur:
            for i, (person, name, value, seen, source, key) in _in_lock_order(snapshots):
                cur.execute(_UPSERT, (person, name, value, seen, source, key, now))
                if cur.rowcount:
                    changed.add(i)
        return len(changed)

    @retried(idempotent=True)
    def get(self, url: str) -> SeenProfile | None:
        """What is known of the person at `url` (any spelling), or None."""
        person = profile_url(url)
        if person is None:
            return None
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT field, value, seen_at, source FROM profile_fields WHERE person = %s",
                (person,),
            ).fetchall()
        return seen_profile(person, rows)

    @retried(idempotent=False)
    def erase_person(self, urls: Sequence[str]) -> int:
        """Delete every field stored for the people at `urls` (an erasure request) and rewrite
        the table; how many fields went."""
        with self._db.connection() as conn:
            n = conn.execute(
                "DELETE FROM profile_fields WHERE person = ANY(%s)", (erasure_keys(urls),)
            ).rowcount
        if n:
            self._db.vacuum_full("profile_fields")
        return int(n)
