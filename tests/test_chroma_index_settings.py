"""The vector index settings the embedded memory keeps (issue 20): Chroma persists the index
every 100 records instead of its default 1,000, since every write costs in proportion to the
records written since the last persist (`bench/bench_chroma_growth.py`). A new memory gets the
setting, a memory made before with Chroma's default gets it on open and keeps every record, an
erasure's fresh copy gets it too, one set to persist more often is left alone, and the distance
stays cosine throughout. The server's collection is checked in
test_chroma_server.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import chromadb
from chromadb.config import Settings

from gtm.domain.models import Touch
from memory.chroma import _METADATA, COLLECTION, ChromaMemory  # noqa: PLC2701
from memory.embedding import MiniLMEmbedding

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _touch(account: str, text: str) -> Touch:
    return Touch(account_id=account, kind="draft", text=text, at=AT, campaign="c", contact="Dana")


def _client(path: Path) -> Any:
    return chromadb.PersistentClient(
        path=str(path), settings=Settings(anonymized_telemetry=False, allow_reset=False)
    )


def _index(path: Path) -> dict[str, Any]:
    """The collection's index settings as a new client reads them from disk."""
    index = _client(path).get_collection(COLLECTION).configuration["hnsw"]
    assert isinstance(index, dict)
    return index


def _logged(path: Path) -> int:
    """Records in Chroma's write-ahead log: those the last persist of the index did not take."""
    with sqlite3.connect(path / "chroma.sqlite3") as db:
        (rows,) = db.execute("SELECT count(*) FROM embeddings_queue").fetchone()
    return int(rows)


async def test_a_new_memory_persists_its_index_every_100_records(tmp_path: Path) -> None:
    ours, default = tmp_path / "ours", tmp_path / "default"
    memory = ChromaMemory(ours)
    for i in range(150):
        await memory.remember(_touch(f"a{i}", f"Note {i} on the migration"), key=f"k{i}")
    memory.close()
    # the same 150 writes, one at a time, into a collection with Chroma's own setting
    plain = _client(default).get_or_create_collection(
        COLLECTION, embedding_function=None, metadata=_METADATA
    )
    for i in range(150):
        plain.upsert(ids=[f"k{i}"], documents=["d"], embeddings=[[1.0] + [0.0] * 383])

    assert _index(ours)["sync_threshold"] == 100
    assert _index(ours)["space"] == "cosine"
    assert _index(default)["sync_threshold"] == 1000
    assert _logged(ours) < 100  # persisted at 100: the log was cut there
    assert _logged(default) == 150  # never persisted yet: every write still in the log


async def test_a_memory_made_before_is_changed_once_and_keeps_its_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chroma"
    embedding: Any = MiniLMEmbedding()
    old = _client(path).get_or_create_collection(
        COLLECTION, embedding_function=embedding, metadata=_METADATA
    )
    old.add(
        ids=["k1", "k2", "k3"],
        documents=["Your Pinecone migration costs", "Hiring bakers", "Pinecone pricing"],
        metadatas=[ChromaMemory._meta(_touch(a, "x")) for a in ("acme", "acme", "beta")],  # noqa: SLF001
    )
    assert _index(path)["sync_threshold"] == 1000

    memory = ChromaMemory(path)
    assert _index(path)["sync_threshold"] == 100
    assert _index(path)["space"] == "cosine"
    assert sorted(t.text for t in await memory.history("acme")) == [
        "Hiring bakers",
        "Your Pinecone migration costs",
    ]
    assert await memory.forget_account("beta") == 1  # the erasure swaps in a fresh copy
    memory.close()

    assert _index(path)["sync_threshold"] == 100
    assert _index(path)["space"] == "cosine"
    reopened = ChromaMemory(path)
    assert len(await reopened.history("acme")) == 2
    assert await reopened.history("beta") == []
    reopened.close()


def test_a_memory_that_persists_more_often_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "chroma"
    embedding: Any = MiniLMEmbedding()
    meta = {**_METADATA, "hnsw:sync_threshold": 10, "hnsw:batch_size": 10}
    _client(path).get_or_create_collection(COLLECTION, embedding_function=embedding, metadata=meta)
    ChromaMemory(path).close()
    assert _index(path)["sync_threshold"] == 10
    assert _index(path)["space"] == "cosine"
