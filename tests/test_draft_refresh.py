"""The near-duplicate index refreshes from the store without reloading the whole campaign
(issue 20, flat cost): a refresh fetches the ids and only the drafts that are new or changed,
and still sees what other processes wrote, rewrote or erased."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from gtm.domain.models import Touch
from memory.chroma import ChromaMemory
from memory.chroma_drafts import load_drafts
from memory.vectors import DraftIndex, Records

DIM = 4


def _vec(i: int) -> np.ndarray[Any, Any]:
    v = np.full(DIM, 0.1, dtype=np.float32)
    v[i % DIM] = 1.0 + i
    return v


class Store:
    """A fake store of drafts, counting full loads and refreshes."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, dict[str, Any], np.ndarray[Any, Any]]] = {}
        self.loads = 0
        self.refreshes: list[tuple[float, set[str]]] = []

    def put(self, key: str, doc: str, account: str, i: int) -> None:
        self.rows[key] = (doc, {"account_id": account}, _vec(i))

    def _records(self, keys: list[str]) -> Records:
        return (
            keys,
            [self.rows[k][0] for k in keys],
            [self.rows[k][1] for k in keys],
            [self.rows[k][2] for k in keys],
        )

    def load(self, campaign: str) -> Records:
        self.loads += 1
        return self._records(list(self.rows))

    def changes(self, campaign: str, since: float, keys: set[str]) -> Records | None:
        self.refreshes.append((since, set(keys)))
        if not keys <= set(self.rows):
            return None
        return self._records([k for k in self.rows if k not in keys])


def _docs(index: DraftIndex) -> list[str]:
    return sorted(d for d, _, _ in index.nearest("c", np.ones(DIM), exclude_account="q", k=50))


def test_a_refresh_fetches_only_what_changed_and_an_erasure_reloads() -> None:
    store = Store()
    for i in range(5):
        store.put(f"k{i}", f"doc {i}", f"a{i}", i)
    index = DraftIndex(store.load, changes=store.changes, max_age=0)
    assert _docs(index) == [f"doc {i}" for i in range(5)]
    assert store.loads == 1 and store.refreshes == []

    store.put("k5", "doc 5", "a5", 5)  # written by another process
    assert _docs(index) == [f"doc {i}" for i in range(6)]
    assert store.loads == 1  # refreshed, not reloaded
    since, keys = store.refreshes[-1]
    assert keys == {f"k{i}" for i in range(5)}
    assert since <= datetime.now(UTC).timestamp()

    index.add("k6", "c", "doc 6", {"account_id": "a6"}, _vec(6))  # this process's own write
    store.put("k6", "doc 6", "a6", 6)
    assert _docs(index) == [f"doc {i}" for i in range(7)]
    assert store.loads == 1 and store.refreshes[-1][1] == {f"k{i}" for i in range(7)}

    del store.rows["k2"]  # erased elsewhere: the refresh says so and the campaign reloads
    assert _docs(index) == [f"doc {i}" for i in (0, 1, 3, 4, 5, 6)]
    assert store.loads == 2


def test_without_a_refresh_the_index_reloads_in_full() -> None:
    store = Store()
    store.put("k0", "doc 0", "a0", 0)
    index = DraftIndex(store.load, max_age=0)
    _docs(index)
    store.put("k1", "doc 1", "a1", 1)
    assert _docs(index) == ["doc 0", "doc 1"]
    assert store.loads == 2


def _draft(account: str, text: str, at: datetime) -> Touch:
    return Touch(kind="draft", account_id=account, campaign="c1", at=at, text=text, contact="X")


class CountingGets:
    """Wraps a Chroma collection's `get`, counting the records fetched with their vectors."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection
        self.with_vectors = 0
        self.real = collection.get

    def get(self, *args: Any, **kwargs: Any) -> Any:
        got = self.real(*args, **kwargs)
        if "embeddings" in (kwargs.get("include") or []):
            self.with_vectors += len(got["ids"])
        return got


async def test_chroma_refresh_sees_other_writers_without_fetching_the_campaign(
    tmp_path: Path,
) -> None:
    old = datetime(2026, 1, 5, tzinfo=UTC)  # a clock far behind: found by its new id
    writer = ChromaMemory(tmp_path / "chroma")
    for n in range(30):
        await writer.remember(
            _draft(f"a{n}", f"Hi person {n}, a note about topic {n * 7}", old), key=f"k{n}"
        )
    reader = ChromaMemory(tmp_path / "chroma", index_max_age=0)
    gets = CountingGets(reader._collection)
    reader._collection.get = gets.get
    found = await reader.similar_drafts("c1", "Hi person 3", exclude_account="q", k=50)
    assert len(found) == 30 and gets.with_vectors == 30  # the first load reads them all

    new_text = "Hi Zoe, something entirely different about compliance audits"
    await writer.remember(_draft("z", new_text, old), key="kz")
    rewritten = "Hi person 4, a rewritten note about data residency rules"
    await writer.remember(_draft("a4", rewritten, datetime.now(UTC)), key="k4")
    gets.with_vectors = 0
    found = await reader.similar_drafts("c1", new_text, exclude_account="q", k=50)
    texts = {t.text for t, _ in found}
    assert len(found) == 31 and new_text in texts and rewritten in texts
    assert "Hi person 4, a note about topic 28" not in texts
    assert gets.with_vectors == 2  # the new draft and the rewritten one, not the campaign
    top = await reader.similar_drafts("c1", rewritten, exclude_account="q", k=1)
    assert top[0][0].account_id == "a4" and (top[0][1] or 0.0) > 0.99

    writer._collection.delete(ids=["k7"])  # erased elsewhere, as on a shared Chroma server
    found = await reader.similar_drafts("c1", new_text, exclude_account="q", k=50)
    assert len(found) == 30 and all(t.account_id != "a7" for t, _ in found)
    writer.close()
    reader.close()


class _ShortCollection:
    """A collection answering `get` with one vector fewer than its records: what Chroma gave
    once while another thread's write was reaching its vector segment."""

    def get(self, **query: Any) -> dict[str, Any]:
        return {
            "ids": ["a", "b"],
            "documents": ["first draft", "second draft"],
            "metadatas": [{"campaign": "c"}, {"campaign": "c"}],
            "embeddings": [_vec(1)],
        }


def test_fewer_vectors_than_records_are_computed_again_from_the_texts() -> None:
    seen: list[list[str]] = []

    def embed(texts: list[str]) -> list[np.ndarray[Any, Any]]:
        seen.append(list(texts))
        return [_vec(10 + n) for n, _ in enumerate(texts)]

    ids, docs, _metas, vectors = load_drafts(_ShortCollection(), embed, "c")  # type: ignore[arg-type]
    assert ids == ["a", "b"] and docs == ["first draft", "second draft"]
    assert seen == [["first draft", "second draft"]]
    assert [v.tolist() for v in vectors] == [_vec(10).tolist(), _vec(11).tolist()]
