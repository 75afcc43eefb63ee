"""What one Chroma upsert costs as the collection grows (issue 20, flat cost).

`gtm run` remembers each final draft in the embedded Chroma (`memory.chroma.ChromaMemory`), a
record or two per call as concurrent accounts' writes are grouped (`memory.batch`). This
measures such calls on a fresh on-disk collection with the same settings and metadata as a
draft, first while it is nearly empty and again once it holds 10,000 records (filled in
batches of 500), so the late-run cost of the memory writes can be told apart from the rest of
the run. Each probe writes 1,000 records (500 calls), a whole window between two persists of
Chroma's vector index at its default setting, so where a probe starts in that window does not
weigh on it. It runs twice: with Chroma's default (the index persisted every 1,000 records)
and with the collection as `ChromaMemory` makes it (`memory.chroma._tuned`: every 100), since
a write costs in proportion to the records written since the last persist. It also checks
what the upsert does to the other threads: a thread counting while upserts run gets about one
turn per upsert, because chromadb's bindings hold the GIL through an insert (they release it
for reads only).

Usage: .venv/bin/python bench/bench_chroma_growth.py [--size 10000] [--calls 500]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from typing import Any

import chromadb
import numpy as np

from memory.chroma import _METADATA as METADATA  # noqa: PLC2701 - the collection's own settings
from memory.chroma import _tuned  # noqa: PLC2701

DOC = (
    "Hi Dana, saw that Cornivos shipped its new retrieval layer for support agents last week; "
    "curious how you evaluate answer quality before rollout? "
)


def _meta(i: int) -> dict[str, Any]:
    return {
        "account_id": f"a{i}",
        "kind": "draft",
        "campaign": "bench",
        "ts": float(i),
        "at": "2026-12-05T10:00:00+00:00",
        "contact": "Dana Ruiz",
        "channel": "linkedin",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--calls", type=int, default=500)
    args = ap.parse_args()
    got = {}
    for key, label, tune in (
        ("default", "Chroma's default, index persisted every 1,000 records", False),
        ("gtm", "as gtm makes it, index persisted every 100 records", True),
    ):
        print(f"{label}: upsert of 2 drafts' records, on disk, {args.calls} calls each:")
        got[key] = _measure(args.size, args.calls, tune)
    saved = 1 - got["gtm"]["full"]["cpu_ms_per_call"] / got["default"]["full"]["cpu_ms_per_call"]
    print(f"CPU per call once full, gtm's setting against the default: -{saved:.0%}")
    print("BENCH " + json.dumps({"bench": "chroma_growth", **got}))


def _measure(size: int, calls: int, tune: bool) -> dict[str, dict[str, float]]:
    client = chromadb.PersistentClient(
        path=tempfile.mkdtemp(prefix="gtm-bench-chroma-"),
        settings=chromadb.Settings(anonymized_telemetry=False),
    )
    col = client.get_or_create_collection("bench", embedding_function=None, metadata=METADATA)
    if tune:
        col = _tuned(col)
    rng = np.random.default_rng(0)
    n = 0

    def upsert(k: int) -> None:
        nonlocal n
        ids = [f"id{n + i}" for i in range(k)]
        col.upsert(
            ids=ids,
            documents=[DOC + i for i in ids],
            metadatas=[_meta(n + i) for i in range(k)],
            embeddings=rng.standard_normal((k, 384)).astype(np.float32),
        )
        n += k

    def probe() -> dict[str, float]:
        turns = [0]
        stop = threading.Event()

        def count() -> None:
            while not stop.is_set():
                turns[0] += 1
                time.sleep(0.0005)

        counter = threading.Thread(target=count)
        counter.start()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            upsert(2)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        stop.set()
        counter.join()
        return {
            "cpu_ms_per_call": round(cpu / calls * 1000, 2),
            "wall_ms_per_call": round(wall / calls * 1000, 2),
            "other_thread_turns_per_call": round(turns[0] / calls, 2),
            "other_thread_turns_if_free": round(wall / 0.00055 / calls, 1),
        }

    empty = probe()
    while n < size:
        upsert(500)
    full = probe()
    for label, one in ((f"nearly empty (0 to {calls * 2} records)", empty), (f"{n} records", full)):
        print(
            f"  {label}: {one['cpu_ms_per_call']} ms CPU, {one['wall_ms_per_call']} ms wall per "
            f"call; another Python thread got {one['other_thread_turns_per_call']} turns per call "
            f"(about {one['other_thread_turns_if_free']} with the GIL free)"
        )
    ratio = full["cpu_ms_per_call"] / empty["cpu_ms_per_call"]
    print(f"  CPU per call, full / empty: x{ratio:.2f}")
    return {"empty": empty, "full": full}


if __name__ == "__main__":
    main()
