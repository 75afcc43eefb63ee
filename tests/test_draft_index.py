"""`memory.vectors.DraftIndex`: the in-process near-duplicate index stays exact as it grows,
replaces a draft stored again under its key, and never returns the asking account's drafts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from memory.vectors import DraftIndex

DIM = 8
ROOT = Path(__file__).resolve().parents[1]


def _brute(
    rows: dict[str, tuple[str, str, np.ndarray[Any, Any]]],
    q: np.ndarray[Any, Any],
    skip: str,
    k: int,
) -> list[tuple[str, float]]:
    unit = q / np.linalg.norm(q)
    scored = [
        (doc, float(v @ unit / np.linalg.norm(v))) for doc, acct, v in rows.values() if acct != skip
    ]
    return sorted(scored, key=lambda x: -x[1])[:k]


@settings(max_examples=60, deadline=None)
@given(
    writes=st.lists(
        st.tuples(
            st.integers(0, 40),
            st.integers(0, 5),
            st.lists(st.floats(-1, 1), min_size=DIM, max_size=DIM),
        ),
        min_size=1,
        max_size=120,
    ),
    preload=st.integers(0, 30),
    k=st.integers(1, 6),
)
def test_nearest_matches_a_brute_force_search(
    writes: list[tuple[int, int, list[float]]], preload: int, k: int
) -> None:
    rows: dict[str, tuple[str, str, np.ndarray[Any, Any]]] = {}
    stored = [
        (f"k{key}", f"a{acct}", np.array(v, dtype=np.float32) + 2.0) for key, acct, v in writes
    ]
    first, later = stored[:preload], stored[preload:]

    def load(campaign: str) -> tuple[list[str], list[str], list[dict[str, Any]], list[Any]]:
        return (
            [key for key, _, _ in first],
            [f"doc {key} {i}" for i, (key, _, _) in enumerate(first)],
            [{"account_id": acct} for _, acct, _ in first],
            [v for _, _, v in first],
        )

    index = DraftIndex(load)
    for i, (key, acct, v) in enumerate(first):
        rows[key] = (f"doc {key} {i}", acct, v)
    index.nearest("c", np.ones(DIM), exclude_account="none", k=1)  # loads `first`
    for i, (key, acct, v) in enumerate(later):  # appends, and replaces a key stored again
        index.add(key, "c", f"later {key} {i}", {"account_id": acct}, v)
        rows[key] = (f"later {key} {i}", acct, v)
        q = np.array(later[(i * 7) % len(later)][2]) + 0.5
        got = index.nearest("c", q, exclude_account=acct, k=k)
        want = _brute(rows, q, acct, k)
        assert [round(c, 4) for _, _, c in got] == [round(c, 4) for _, c in want]
        assert all(m["account_id"] != acct for _, m, _ in got)
        assert {d for d, _, _ in got} <= {d for d, _, _ in rows.values()}


def test_a_draft_of_a_campaign_not_loaded_is_not_kept() -> None:
    index = DraftIndex(lambda c: ([], [], [], []))
    index.add("k", "c", "text", {"account_id": "a"}, np.ones(DIM))
    assert index.nearest("c", np.ones(DIM), exclude_account="b", k=3) == []  # loads: empty
    index.add("k", "c", "text", {"account_id": "a"}, np.ones(DIM))
    ((doc, meta, cos),) = index.nearest("c", np.ones(DIM), exclude_account="b", k=3)
    assert (doc, meta["account_id"], round(cos, 6)) == ("text", "a", 1.0)


def test_the_index_keeps_blas_to_one_thread() -> None:
    """Spinning BLAS workers doubled the per-account CPU late in a long run (bench_run). In a
    fresh interpreter with BLAS at two threads, making an index leaves it at one."""
    code = (
        "import numpy\n"
        "from threadpoolctl import threadpool_info, threadpool_limits\n"
        "threadpool_limits(limits=2, user_api='blas')\n"
        "before = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "from memory.vectors import DraftIndex\n"
        "DraftIndex(lambda c: ([], [], [], []))\n"
        "after = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "print(before, after)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[2]", "[1]"], done.stdout
