"""Time the offline MiniLM embedding over 1,000 short texts; prints the figure.

.venv/bin/python bench/bench_embedding.py [N]
"""

from __future__ import annotations

import json
import sys
import time

from memory.embedding import MiniLMEmbedding


def main(n: int = 1000) -> None:
    texts = [
        f"On 2026-10-{i % 28 + 1:02d} we wrote to contact {i} about moving retrieval off a "
        f"hosted vector database; they mentioned {i % 7 + 2} sign-ups and a hiring push."
        for i in range(n)
    ]
    emb = MiniLMEmbedding()
    emb.embed(["warm up"])  # load the model outside the timing
    start = time.perf_counter()
    vectors = emb.embed(texts)
    took = time.perf_counter() - start
    print(f"embedded {n} texts ({vectors.shape[1]} dims) in {took:.2f} s ({n / took:.0f} texts/s)")
    print("BENCH " + json.dumps({"bench": "embedding", "texts": n, "embed_s": took}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
