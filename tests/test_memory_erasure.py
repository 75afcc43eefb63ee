"""Erasing from Chroma memory: through Chroma's API, repeatable, and leaving no copy on disk.

The bug this guards: rows deleted from Chroma's write log let later writes reuse sequence ids
that Chroma had already applied, so a second erasure found nothing and later writes vanished.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import chromadb
from chromadb.config import Settings

from gtm.domain.models import Touch
from memory.chroma import COLLECTION, ERASE_COPY, ChromaMemory
from memory.embedding import MiniLMEmbedding

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _touch(account: str, contact: str, text: str) -> Touch:
    return Touch(account_id=account, kind="draft", text=text, at=AT, campaign="c", contact=contact)


def _files_naming(root: Path, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


async def test_forget_twice_then_write_keeps_every_record_and_no_trace(tmp_path: Path) -> None:
    path = tmp_path / "chroma"
    memory = ChromaMemory(path)
    for i in range(12):
        who = "Dana Ruiz" if i % 4 == 0 else "Omar Haddad"
        await memory.remember(_touch(f"acct{i % 3}", who, f"Note {i} for {who}"), key=f"k{i}")

    assert await memory.forget_person(["dana ruiz"]) == 3
    assert await memory.forget_person(["dana ruiz"]) == 0  # nothing left to find
    assert await memory.forget_person(["omar haddad"], ["acct1"]) == 3

    for i in range(12, 20):  # later writes must land, not be skipped as already applied
        await memory.remember(_touch("acct2", "Lee Park", f"Later note {i}"), key=f"k{i}")
    memory.close()

    reopened = ChromaMemory(path)
    history = await reopened.history("acct2", limit=100)
    assert sorted(t.text for t in history) == sorted(
        [f"Note {i} for Omar Haddad" for i in (2, 5, 11)]
        + [f"Later note {i}" for i in range(12, 20)]
    )
    assert len(await reopened.history("acct0", limit=100)) == 3  # 0, 4, 8 were Dana: 3, 6, 9 stay
    assert await reopened.history("acct1", limit=100) == []
    assert await reopened.forget_person(["lee park"]) == 8  # a third erasure still finds its rows
    reopened.close()
    assert _files_naming(path, "Dana") == []
    assert _files_naming(path, "Lee Park") == []


async def test_an_erasure_that_died_part_way_is_finished_on_open(tmp_path: Path) -> None:
    path = tmp_path / "chroma"
    memory = ChromaMemory(path)
    await memory.remember(_touch("acct", "Ann", "kept"), key="k1")
    memory.close()
    client = chromadb.PersistentClient(
        path=str(path), settings=Settings(anonymized_telemetry=False)
    )

    # Died while copying: the half-made copy is dropped, the original stays.
    ef: Any = MiniLMEmbedding()
    client.create_collection(ERASE_COPY, embedding_function=ef).add(
        ids=["partial"], documents=["x"], embeddings=[[0.0] * 384]
    )
    memory = ChromaMemory(path)
    assert [t.text for t in await memory.history("acct")] == ["kept"]
    assert {c.name for c in client.list_collections()} == {COLLECTION}
    memory.close()

    # Died after dropping the original: the finished copy takes its name.
    got = client.get_collection(COLLECTION, embedding_function=ef).get(
        include=["documents", "metadatas", "embeddings"]
    )
    copy = client.create_collection(ERASE_COPY, embedding_function=ef)
    copy.add(
        ids=got["ids"],
        documents=got["documents"],
        metadatas=got["metadatas"],
        embeddings=got["embeddings"],
    )
    client.delete_collection(COLLECTION)
    memory = ChromaMemory(path)
    assert [t.text for t in await memory.history("acct")] == ["kept"]
    assert {c.name for c in client.list_collections()} == {COLLECTION}
