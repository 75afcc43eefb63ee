"""`memory.vectors.DraftIndex` keeps a campaign's draft vectors in fixed blocks (issue 20).

Doubling one matrix made a step of +39 MB near 8,000 drafts. In blocks of `BLOCK` rows the
index grows by at most one block at a time, and a search over the blocks finds exactly what one
search over the whole matrix found, across the blocks' edges.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memory import vectors
from memory.vectors import BLOCK, DraftIndex

DIM = 384
"""The embedding's width (all-MiniLM-L6-v2)."""


def _brute(
    rows: dict[str, tuple[str, str, np.ndarray[Any, Any]]],
    q: np.ndarray[Any, Any],
    skip: str,
    k: int,
) -> list[tuple[str, float]]:
    """One matrix of every row, searched as the index did before it had blocks."""
    docs = [d for d, _, _ in rows.values()]
    owners = np.array([a for _, a, _ in rows.values()], dtype=object)
    matrix = np.stack([v / np.linalg.norm(v) for _, _, v in rows.values()]).astype(np.float32)
    unit = (q / np.linalg.norm(q)).astype(np.float32)
    keep = owners != skip
    n = min(k, int(keep.sum()))
    sims = np.where(keep, matrix @ unit, -np.inf)
    top = np.argpartition(-sims, n - 1)[:n]
    top = top[np.argsort(-sims[top], kind="stable")]
    return [(docs[j], float(sims[j])) for j in top]


def test_a_search_across_blocks_matches_one_over_the_whole_matrix() -> None:
    rng = np.random.default_rng(20)
    n_loaded, n_added = 1500, 1200  # loaded into two blocks; added across two more edges
    keys = [f"k{i}" for i in range(n_loaded + n_added)]
    accounts = [f"a{i % 700}" for i in range(len(keys))]
    vecs = rng.normal(size=(len(keys), DIM)).astype(np.float32)
    rows: dict[str, tuple[str, str, np.ndarray[Any, Any]]] = {}

    def load(campaign: str) -> tuple[list[str], list[str], list[dict[str, Any]], list[Any]]:
        return (
            keys[:n_loaded],
            [f"doc {k}" for k in keys[:n_loaded]],
            [{"account_id": a} for a in accounts[:n_loaded]],
            list(vecs[:n_loaded]),
        )

    index = DraftIndex(load)
    for i in range(n_loaded):
        rows[keys[i]] = (f"doc {keys[i]}", accounts[i], vecs[i])
    for i in range(n_loaded, len(keys)):
        if i % 100 == 0 or i in (2047, 2048, 2049):
            q = rng.normal(size=DIM).astype(np.float32)
            for k in (1, 5, 40):
                skip = accounts[i - 1]
                got = index.nearest("c", q, exclude_account=skip, k=k)
                assert [(d, c) for d, _, c in got] == _brute(rows, q, skip, k)
                assert all(m["account_id"] != skip for _, m, _ in got)
        index.add(keys[i], "c", f"doc {keys[i]}", {"account_id": accounts[i]}, vecs[i])
        rows[keys[i]] = (f"doc {keys[i]}", accounts[i], vecs[i])
    q = vecs[2048] + 0.01  # a vector in the third block: found first, wherever it sits
    got = index.nearest("c", q, exclude_account="nobody", k=3)
    assert got[0][0] == "doc k2048"
    assert [(d, c) for d, _, c in got] == _brute(rows, q, "nobody", 3)


def test_a_draft_stored_again_keeps_one_row() -> None:
    index = DraftIndex(lambda c: ([], [], [], []))
    index.nearest("c", np.ones(DIM), exclude_account="x", k=1)  # loads the campaign: empty
    rng = np.random.default_rng(3)
    for i in range(BLOCK + 5):
        index.add(f"k{i}", "c", f"doc {i}", {"account_id": f"a{i}"}, rng.normal(size=DIM))
    target = rng.normal(size=DIM)
    index.add("k3", "c", "doc 3 again", {"account_id": "a-new"}, target)  # same key: replaced
    index.add(f"k{BLOCK + 2}", "c", "last again", {"account_id": "a-new"}, -target)

    got = index.nearest("c", target, exclude_account="nobody", k=BLOCK + 10)
    docs = [d for d, _, _ in got]
    assert len(got) == BLOCK + 5 and len(set(docs)) == BLOCK + 5
    assert docs[0] == "doc 3 again" and docs[-1] == "last again"
    assert "doc 3" not in docs and f"doc {BLOCK + 2}" not in docs
    assert got[0][1] == {"account_id": "a-new"} and round(got[0][2], 5) == 1.0
    mine = index.nearest("c", target, exclude_account="a-new", k=BLOCK + 10)
    assert len(mine) == BLOCK + 3  # the account that took both rows over is left out
    assert "doc 3 again" not in {d for d, _, _ in mine}


def test_the_index_grows_by_at_most_one_block_at_a_time() -> None:
    campaign = vectors._Campaign(loaded_at=0.0, wall_at=0.0)
    block_bytes = BLOCK * DIM * 4 + BLOCK * 4  # float32 vectors and int32 account codes
    rng = np.random.default_rng(8)
    vec = rng.normal(size=DIM).astype(np.float32)
    before = campaign.nbytes
    steps = []
    for i in range(5 * BLOCK + 3):
        campaign.put(f"k{i}", "d", {"account_id": f"a{i % 50}"}, vec)
        if campaign.nbytes != before:
            steps.append(campaign.nbytes - before)
            before = campaign.nbytes
        # never more than one block held beyond the rows in use
        assert campaign.nbytes <= (i // BLOCK + 1) * block_bytes
    assert steps and max(steps) <= block_bytes
    assert steps[-4:] == [block_bytes] * 4  # past the first block: one block per step
    assert campaign.nbytes == 6 * block_bytes
