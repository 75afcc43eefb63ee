"""What `ChromaMemory` keeps in-process so one account costs one embedding and no scan.

- `VectorCache`: the last texts embedded and their vectors. Review embeds a draft to find its
  near-duplicates and then stores the same text; record stores it again after approval. Each
  text is embedded once.
- `DraftIndex`: one campaign's drafts (text, metadata, unit vector), loaded from the store once
  and kept current by this process's own writes and erasures, so a near-duplicate search is a
  matrix product (over fixed blocks of rows, `BLOCK`) instead of fetching every draft id of the
  campaign and a filtered store query (whose cost grows with the campaign: 3.6 ms per call at
  200 drafts, 16 ms at 2,000, measured on Chroma 1.5). Drafts other processes write appear when
  the index refreshes (`max_age`): a refresh fetches only what is new or changed, so its cost
  does not grow with the campaign (a full reload of 10,000 drafts costs 0.73 s of CPU; every
  minute, that made the last accounts of a long run dearer than the first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["BLOCK", "VectorCache", "DraftIndex", "Vector", "Records", "single_threaded_blas"]

Vector = np.ndarray[Any, np.dtype[np.float32]]
Records = tuple[list[str], list[str], list[dict[str, Any]], Sequence[Any]]
"""Drafts as (ids, documents, metadatas, vectors)."""


class VectorCache:
    """Texts to vectors, the most recent `size` kept; thread-safe."""

    def __init__(self, embed: Callable[[list[str]], Sequence[Any]], size: int = 512) -> None:
        self._embed = embed
        self._size = size
        self._items: OrderedDict[str, Vector] = OrderedDict()
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def vectors(self, texts: list[str]) -> list[Vector]:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._items]
        if missing:
            fresh = self._embed(missing)
            with self._lock:
                for t, v in zip(missing, fresh, strict=True):
                    self._items[t] = np.asarray(v, dtype=np.float32)
        with self._lock:
            out = []
            for t in texts:
                v = self._items.get(t)
                if v is None:  # evicted between the two locks by a large concurrent batch
                    v = np.asarray(self._embed([t])[0], dtype=np.float32)
                    self._items[t] = v
                self._items.move_to_end(t)
                out.append(v)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return out


def _unit(v: Any) -> Vector:
    a = np.asarray(v, dtype=np.float32)
    n = float(np.linalg.norm(a))
    return a / n if n > 0 else a


BLOCK = 1024
"""Rows per block of a campaign's draft matrix (1.5 MB at 384 dimensions). The matrix grows a
block at a time: doubling one matrix took a step of +39 MB near 8,000 drafts (the new matrix
and the zeros concatenated onto the old, all alive at once) and kept up to half of it unused."""


class _Campaign:
    """One campaign's drafts as rows of a matrix kept in fixed blocks: a new draft appends a
    row, a stored draft again (same key) overwrites its row, so a search never restacks the
    campaign (that rebuild cost O(drafts) per account and doubled the per-account CPU over
    10,000 accounts). The first block starts at 16 rows and doubles up to `BLOCK`; after that
    each block holds `BLOCK` rows, so row `at` is row `at % BLOCK` of block `at // BLOCK`."""

    def __init__(self, loaded_at: float, wall_at: float) -> None:
        self.loaded_at = loaded_at
        self.wall_at = wall_at
        """Wall-clock time (`time.time()`) the last load or refresh started."""
        self.row: dict[str, int] = {}
        self.docs: list[str] = []
        self.metas: list[dict[str, Any]] = []
        self.blocks: list[np.ndarray[Any, np.dtype[np.float32]]] = []
        self.owners: list[np.ndarray[Any, np.dtype[np.int32]]] = []
        """Per block, each row's account as a small integer (`codes`), compared in a search."""
        self.codes: dict[str | None, int] = {}

    @property
    def nbytes(self) -> int:
        """Bytes held by the blocks (vectors and account codes)."""
        return sum(b.nbytes for b in self.blocks) + sum(o.nbytes for o in self.owners)

    def _room(self, at: int, dim: int) -> None:
        """Make row `at` (the next one) exist: grow the first block, or add a block."""
        if not self.blocks:
            self.blocks.append(np.zeros((16, dim), dtype=np.float32))
            self.owners.append(np.zeros(16, dtype=np.int32))
        elif at == len(self.blocks) * BLOCK:  # every block full
            self.blocks.append(np.zeros((BLOCK, dim), dtype=np.float32))
            self.owners.append(np.zeros(BLOCK, dtype=np.int32))
        elif at == self.blocks[0].shape[0]:  # the first block, full below `BLOCK` rows
            size = min(BLOCK, 2 * at)
            grown = np.zeros((size, dim), dtype=np.float32)
            grown[:at] = self.blocks[0]
            owners = np.zeros(size, dtype=np.int32)
            owners[:at] = self.owners[0]
            self.blocks[0], self.owners[0] = grown, owners

    def put(self, key: str, doc: str, meta: dict[str, Any], vector: Vector) -> None:
        at = self.row.get(key)
        if at is not None:
            self.docs[at], self.metas[at] = doc, meta
        else:
            at = len(self.docs)
            self._room(at, vector.shape[0])
            self.row[key] = at
            self.docs.append(doc)
            self.metas.append(meta)
        account = meta.get("account_id")
        code = self.codes.setdefault(account, len(self.codes))
        self.blocks[at // BLOCK][at % BLOCK] = vector
        self.owners[at // BLOCK][at % BLOCK] = code

    def similarities(self, query: Vector, exclude_account: str) -> tuple[np.ndarray[Any, Any], int]:
        """Cosine of `query` to every row in use, -inf for rows of `exclude_account` (one
        matrix-vector product per block, joined in row order), and how many rows are not."""
        n_rows = len(self.docs)
        skip = self.codes.get(exclude_account, -1)
        parts, kept = [], 0
        for i, (block, owners) in enumerate(zip(self.blocks, self.owners, strict=True)):
            used = min(block.shape[0], n_rows - i * BLOCK)
            if used <= 0:
                break
            keep = owners[:used] != skip
            kept += int(keep.sum())
            parts.append(np.where(keep, block[:used] @ query, -np.inf))
        return (np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)), kept


@cache
def single_threaded_blas() -> None:
    """Keep numpy's BLAS to one thread in this process, once. The index's matrix-vector
    product is small; past a few thousand rows OpenBLAS splits it across threads whose
    workers then spin between calls, which made the last accounts of a 3,000-account run cost
    2.4x the CPU of the first (1.4x with one thread). threadpoolctl applies it to a numpy
    already imported, whatever imported it first."""
    threadpool_limits(limits=1, user_api="blas")


class DraftIndex:
    """Per-campaign draft vectors for exact cosine search; thread-safe.

    `load(campaign)` is called with the lock free and returns every draft of the campaign in
    the store. `changes(campaign, since, keys)`, if given, refreshes a loaded campaign: it
    returns the drafts stored since wall-clock time `since` (their `ts`) and any whose key is
    not in `keys`, or None when a key in `keys` is gone from the store (an erasure elsewhere),
    and the campaign then loads in full. `since` reaches `max_age` before the last refresh
    began, so a draft committed a while after its `ts` is still fetched; a draft another process
    rewrites under a known key with its clock more than that behind ours is not.
    """

    def __init__(
        self,
        load: Callable[[str], Records],
        *,
        changes: Callable[[str, float, set[str]], Records | None] | None = None,
        max_age: float = 60.0,
    ) -> None:
        single_threaded_blas()
        self._load = load
        self._changes = changes
        self._max_age = max_age
        self._campaigns: dict[str, _Campaign] = {}
        self._lock = threading.Lock()
        self._loading = threading.Lock()
        """Held while a campaign loads, and by `add`: a draft stored during a load is added to
        the loaded copy, never lost to it."""

    def _current(self, campaign: str) -> _Campaign:
        with self._lock:
            known = self._campaigns.get(campaign)
            if known is not None and time.monotonic() - known.loaded_at < self._max_age:
                return known
        with self._loading:
            started, wall = time.monotonic(), time.time()
            with self._lock:
                known = self._campaigns.get(campaign)
                if known is not None and started - known.loaded_at < self._max_age:
                    return known  # another thread refreshed it while this one waited
                keys = set(known.row) if known is not None else set()
            if known is not None and self._changes is not None:
                got = self._changes(campaign, known.wall_at - self._max_age, keys)
                if got is not None:
                    with self._lock:  # `nearest` reads the rows under this lock
                        for i, d, m, v in zip(*got, strict=True):
                            known.put(i, d, m, _unit(v))
                        known.loaded_at, known.wall_at = started, wall
                    return known
            ids, docs, metas, vectors = self._load(campaign)
            fresh = _Campaign(loaded_at=started, wall_at=wall)
            for i, d, m, v in zip(ids, docs, metas, vectors, strict=True):
                fresh.put(i, d, m, _unit(v))
            with self._lock:
                self._campaigns[campaign] = fresh
        return fresh

    def add(self, key: str, campaign: str, doc: str, meta: dict[str, Any], vector: Any) -> None:
        """A draft this process stored (same key: replaced), if its campaign is loaded."""
        with self._loading, self._lock:
            known = self._campaigns.get(campaign)
            if known is not None:
                known.put(key, doc, meta, _unit(vector))

    def drop(self) -> None:
        """Forget every campaign: the next search reloads from the store."""
        with self._lock:
            self._campaigns.clear()

    def nearest(
        self, campaign: str, vector: Any, *, exclude_account: str, k: int
    ) -> list[tuple[str, dict[str, Any], float]]:
        """The `k` drafts of other accounts closest to `vector`: (document, metadata, cosine)."""
        known = self._current(campaign)
        query = _unit(vector)
        with self._lock:  # one matrix-vector product per block of rows in use, under the lock
            sims, kept = known.similarities(query, exclude_account)
            n = min(k, kept)
            if n == 0:
                return []
            top = np.argpartition(-sims, n - 1)[:n]
            top = top[np.argsort(-sims[top], kind="stable")]
            return [(known.docs[j], known.metas[j], float(sims[j])) for j in top]
