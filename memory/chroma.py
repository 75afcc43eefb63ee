"""Account memory on Chroma with the offline MiniLM embedding: a local `PersistentClient` by
default, or a Chroma server (`ChromaMemory.server`, `GTM_CHROMA_URL`) shared by several
processes and machines. Either way every vector is computed here, by our model, and handed to
Chroma: the server's own embedding function is never used."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import chromadb
import chromadb.errors
from chromadb.api.types import Documents, EmbeddingFunction
from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT, Settings

from gtm.domain.models import Touch
from memory.base import names_person
from memory.batch import GroupCommit
from memory.chroma_drafts import draft_changes, load_drafts
from memory.chroma_http import (
    MemoryServerError,
    auth_headers,
    check_server,
    close_http_client,
    one_line,
    parse_url,
    shown_url,
)
from memory.embedding import MiniLMEmbedding
from memory.hnsw_scrub import scrub_all
from memory.vectors import DraftIndex, Vector, VectorCache

__all__ = ["ChromaMemory", "COLLECTION", "ERASE_COPY", "describe_server"]

COLLECTION = "touches"
ERASE_COPY = "touches-next"
"""Where an erasure copies the records that stay, before it takes the old name."""
_METADATA = {"hnsw:space": "cosine"}
_SYNC_THRESHOLD = 100
"""Records written between two persists of the vector index (Chroma's default: 1,000). Every
write costs Chroma time in proportion to the records written since the last persist: one
single-record upsert took 4.4 ms of CPU just after a persist and 12 ms 1,000 records later
(`bench/bench_chroma_growth.py` measures both settings)."""
_PAGE = 1000
_DIMENSION = 384
"""The length of MiniLM's vectors: a collection holding others was embedded by another model."""


class ChromaMemory:
    """Implements `AccountMemory`. Chroma is synchronous; calls run in a worker thread.

    Each text is embedded once (`VectorCache`) and its vector handed to Chroma; near-duplicate
    search runs on an in-process index of the campaign's drafts (`DraftIndex`).
    """

    def __init__(
        self,
        path: Path,
        *,
        embedding: EmbeddingFunction[Documents] | None = None,
        index_max_age: float = 60.0,
    ) -> None:
        """`index_max_age`: seconds after which the near-duplicate index reloads a campaign's
        drafts from the store, picking up what other processes wrote."""
        path.mkdir(parents=True, exist_ok=True)
        self._path: Path | None = path
        self._url = ""
        self._client = chromadb.PersistentClient(
            path=str(path), settings=Settings(anonymized_telemetry=False, allow_reset=False)
        )
        self._start(embedding, index_max_age)

    @classmethod
    def server(
        cls,
        url: str,
        *,
        token: str | None = None,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
        embedding: EmbeddingFunction[Documents] | None = None,
        index_max_age: float = 60.0,
    ) -> ChromaMemory:
        """The memory on the Chroma server at `url` (http[s]://host[:port]), `token` sent as
        `X-Chroma-Token` and `Authorization: Bearer`. Raises `MemoryServerError` (one line) if
        the server cannot be reached, refuses the token, lacks the tenant or database, or holds
        a `touches` collection another embedding made."""
        client = _http_client(url, token, tenant, database)
        memory = cls.__new__(cls)
        memory._path = None
        memory._client = client
        memory._url = shown_url(url)
        try:
            memory._start(embedding, index_max_age)
        except BaseException:
            close_http_client(client)
            raise
        return memory

    def _start(self, embedding: EmbeddingFunction[Documents] | None, index_max_age: float) -> None:
        self._embedding = embedding or MiniLMEmbedding()
        self._vectors = VectorCache(self._embedding)
        self._drafts = DraftIndex(
            lambda campaign: load_drafts(self._collection, self._embedding, campaign),
            changes=lambda campaign, since, keys: draft_changes(
                self._collection, self._embedding, campaign, since, keys
            ),
            max_age=index_max_age,
        )
        self._writes = GroupCommit[tuple[str, Touch], None](self._write)
        self._embeds = GroupCommit[str, Vector](self._vectors.vectors)
        self._histories = GroupCommit[str, list[Touch]](self._history_batch)
        self._erased = False
        self._collection = self._open()

    def _open(self) -> Any:
        """The collection, finishing whatever an erasure that died part-way left (`_erase`)."""
        if self._path is None:
            return self._open_remote()
        names = {c.name for c in self._client.list_collections()}
        if ERASE_COPY in names and COLLECTION not in names:  # died after dropping the old copy
            ef: Any = self._embedding
            self._client.get_collection(ERASE_COPY, embedding_function=ef).modify(name=COLLECTION)
        elif ERASE_COPY in names:  # died while copying: the old collection is intact
            self._client.delete_collection(ERASE_COPY)
        return _tuned(
            self._client.get_or_create_collection(
                COLLECTION,
                embedding_function=self._embedding,  # type: ignore[arg-type]
                metadata=_METADATA,
            )
        )

    def _open_remote(self) -> Any:
        """The server's collection, refused if another embedding made it (`_checked`)."""
        try:
            collection = self._client.get_or_create_collection(
                COLLECTION,
                embedding_function=self._embedding,  # type: ignore[arg-type]
                metadata=_METADATA,
            )
        except ValueError as exc:  # chromadb: "Embedding function conflict: new: x vs ..."
            raise _conflict(self._url, exc) from None
        return _tuned(_checked(collection, self._url))

    def close(self) -> None:
        # PersistentClient has no close(); dropping the reference releases the handles.
        self._collection = None
        if self._path is not None and self._erased:
            scrub_all(self._path)  # a segment made after an erasure, from the same heap
        if self._path is None:
            close_http_client(self._client)

    @staticmethod
    def _meta(t: Touch) -> dict[str, Any]:
        return {
            "account_id": t.account_id,
            "kind": t.kind,
            "at": t.at.isoformat(),
            "ts": t.at.timestamp(),
            "campaign": t.campaign,
            "contact": t.contact,
            "channel": t.channel,
        }

    @staticmethod
    def _touch(doc: str, meta: dict[str, Any]) -> Touch:
        return Touch(
            account_id=meta["account_id"],
            kind=meta["kind"],
            text=doc,
            at=datetime.fromisoformat(meta["at"]),
            campaign=meta.get("campaign", ""),
            contact=meta.get("contact", ""),
            channel=meta.get("channel", ""),
        )

    async def remember(self, touch: Touch, *, key: str) -> None:
        await self._writes.submit((key, touch))

    def _write(self, items: list[tuple[str, Touch]]) -> list[None]:
        """One upsert for the records of concurrent `remember` calls (`GroupCommit`); a key
        given twice keeps its last record, as two upserts in turn would."""
        last = dict(items)
        keys = list(last)
        touches = [last[k] for k in keys]
        vectors = self._vectors.vectors([t.text for t in touches])
        metas = [self._meta(t) for t in touches]
        self._collection.upsert(
            ids=keys, documents=[t.text for t in touches], metadatas=metas, embeddings=vectors
        )
        for key, touch, meta, vector in zip(keys, touches, metas, vectors, strict=True):
            if touch.kind == "draft":
                self._drafts.add(key, touch.campaign, touch.text, meta, vector)
        return [None] * len(items)

    async def history(self, account_id: str, limit: int = 20) -> list[Touch]:
        touches = await self._histories.submit(account_id)  # read with concurrent accounts'
        return sorted(touches, key=lambda t: t.at, reverse=True)[:limit]

    def _history_batch(self, account_ids: list[str]) -> list[list[Touch]]:
        """Every touch of each of these accounts, in one read."""
        wanted = list(dict.fromkeys(account_ids))
        where: Any = (
            {"account_id": wanted[0]} if len(wanted) == 1 else {"account_id": {"$in": wanted}}
        )
        got = self._collection.get(where=where, include=["documents", "metadatas"])
        found: dict[str, list[Touch]] = {a: [] for a in wanted}
        for d, m in zip(got["documents"] or [], got["metadatas"] or [], strict=True):
            touch = self._touch(d, dict(m))
            found[touch.account_id].append(touch)
        return [list(found[a]) for a in account_ids]

    async def recall(self, account_id: str, query: str, k: int = 5) -> list[Touch]:
        count = await asyncio.to_thread(self._collection.count)
        if count == 0:
            return []
        vector = await asyncio.to_thread(self._vectors.vectors, [query])
        got = await asyncio.to_thread(
            self._collection.query,
            query_embeddings=vector,
            n_results=min(k, count),
            where={"account_id": account_id},
            include=["documents", "metadatas"],
        )
        docs = (got["documents"] or [[]])[0]
        metas = (got["metadatas"] or [[]])[0]
        return [self._touch(d, dict(m)) for d, m in zip(docs, metas, strict=True)]

    async def similar_drafts(
        self, campaign: str, text: str, *, exclude_account: str, k: int = 5
    ) -> list[tuple[Touch, float | None]]:
        vector = await self._embeds.submit(text)  # embedded with concurrent reviews' drafts
        found = await asyncio.to_thread(
            self._drafts.nearest, campaign, vector, exclude_account=exclude_account, k=k
        )
        return [(self._touch(d, dict(m)), cos) for d, m, cos in found]

    async def forget_person(self, needles: list[str], account_ids: list[str] | None = None) -> int:
        if account_ids is not None and not account_ids:
            return 0
        where: Any = {"account_id": {"$in": account_ids}} if account_ids else None
        got = await asyncio.to_thread(
            self._collection.get, where=where, include=["documents", "metadatas"]
        )
        docs, metas = got["documents"] or [], got["metadatas"] or []
        ids = [
            i
            for i, d, m in zip(got["ids"], docs, metas, strict=True)
            if names_person(self._touch(d, dict(m)), needles)
        ]
        if ids:
            await asyncio.to_thread(self._erase_any, set(ids))
        return len(ids)

    async def forget_account(self, account_id: str) -> int:
        got = await asyncio.to_thread(self._collection.get, where={"account_id": account_id})
        ids = got["ids"]
        if ids:
            await asyncio.to_thread(self._erase_any, set(ids))
        return len(ids)

    def _erase_any(self, ids: set[str]) -> None:
        if self._path is None:
            self._erase_remote(ids)
        else:
            self._erase(ids)

    def _erase_remote(self, ids: set[str]) -> None:
        """Delete `ids` on the server: from then on no get, query or count of any client finds
        them. What the server keeps on its own disk is out of our reach: its write log and
        vector index may hold the bytes until its operator compacts them (`chroma vacuum` on
        the server's data while it is stopped). The copy-and-swap of `_erase` is not used
        here: other processes write to the same collection meanwhile, and their writes to the
        old one would be lost."""
        self._drafts.drop()  # nothing erased may stay in this process either
        self._vectors.clear()
        self._collection.delete(ids=sorted(ids))
        self._drafts.drop()

    def _erase(self, ids: set[str]) -> None:
        """Delete `ids` so that no copy stays on disk, using only Chroma's own operations.

        A delete through the API leaves the documents in Chroma's write-ahead log until the
        vector index next persists, which for a small memory may be never. So the records that
        stay are copied into a fresh collection, the old collection is dropped (which takes its
        log with it), the fresh one takes the old name, and Chroma's own `vacuum` rewrites the
        file without free pages. Chroma leaves a dropped collection's vector-index directory
        behind: those directories (every one that existed before the copy) are removed.

        A crash part-way leaves either the old collection intact (the copy is discarded on the
        next open) or only the copy (it is renamed on the next open): never neither.
        """
        assert self._path is not None  # embedded only: a server's files are out of reach
        self._drafts.drop()  # nothing erased may stay in this process either
        self._vectors.clear()
        before = self._segment_dirs()
        with contextlib.suppress(chromadb.errors.NotFoundError):
            self._client.delete_collection(ERASE_COPY)
        ef: Any = self._embedding
        fresh = self._client.create_collection(
            ERASE_COPY, embedding_function=ef, metadata=_METADATA
        )
        offset = 0
        while True:
            page = self._collection.get(
                include=["documents", "metadatas", "embeddings"], limit=_PAGE, offset=offset
            )
            if not page["ids"]:
                break
            offset += len(page["ids"])
            keep = [n for n, i in enumerate(page["ids"]) if i not in ids]
            if keep:
                docs, metas = page["documents"] or [], page["metadatas"] or []
                vectors = page["embeddings"]
                assert vectors is not None
                fresh.add(
                    ids=[page["ids"][n] for n in keep],
                    documents=[docs[n] for n in keep],
                    metadatas=[metas[n] for n in keep],
                    embeddings=[vectors[n] for n in keep],
                )
        self._client.delete_collection(COLLECTION)
        fresh.modify(name=COLLECTION)
        self._collection = self._open()
        self._drafts.drop()
        for stale in before:
            shutil.rmtree(stale, ignore_errors=True)
        _vacuum(self._path)
        self._erased = True
        scrub_all(self._path)  # the copy's unused slots hold this process's heap (hnsw_scrub)

    def _segment_dirs(self) -> set[Path]:
        assert self._path is not None
        return {d for d in self._path.iterdir() if d.is_dir()}


def _vacuum(path: Path) -> None:
    """Chroma's own `chroma vacuum`: purge what its log may drop, then rewrite the file.

    Run as a child process: the command prints to the terminal from native code.
    """
    cmd = "import sys, chromadb_rust_bindings as b; b.cli(['chroma', *sys.argv[1:]])"
    done = subprocess.run(
        [sys.executable, "-c", cmd, "vacuum", "--path", str(path), "--force"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"chroma vacuum failed on {path}: {done.stderr.strip()[-500:]}")


def _http_client(url: str, token: str | None, tenant: str, database: str) -> Any:
    """chromadb's `HttpClient` for `url`, after `check_server` found it answering (chromadb's
    own client has no timeout: a server that accepts and never answers would hang the run)."""
    host, port, ssl = parse_url(url)
    check_server(url, token=token, tenant=tenant, database=database)
    try:
        return chromadb.HttpClient(
            host=host,
            port=port,
            ssl=ssl,
            headers=auth_headers(token),
            settings=Settings(anonymized_telemetry=False, allow_reset=False),
            tenant=tenant,
            database=database,
        )
    except (ValueError, chromadb.errors.ChromaError) as exc:
        raise MemoryServerError(f"Chroma server {shown_url(url)}: {one_line(exc)}") from None


def _conflict(url: str, exc: Exception) -> MemoryServerError:
    return MemoryServerError(
        f"Chroma server {url}: collection {COLLECTION!r} was made with another embedding "
        f"({one_line(exc)}); use another database (GTM_CHROMA_DATABASE) or delete that collection"
    )


def _tuned(collection: Any) -> Any:
    """`collection` with the vector index persisted at least every `_SYNC_THRESHOLD` records;
    a collection made before (or by another tool) with a larger setting is changed once, and
    the change is kept; a smaller one (persisting more often) is left as it is. Only `metadata`
    may say the distance: given a `configuration` too, Chroma makes it l2."""
    index = collection.configuration.get("hnsw")
    threshold = index.get("sync_threshold") if isinstance(index, dict) else None
    if isinstance(threshold, int) and threshold > _SYNC_THRESHOLD:
        collection.modify(configuration={"hnsw": {"sync_threshold": _SYNC_THRESHOLD}})
    return collection


def _checked(collection: Any, url: str) -> Any:
    """`collection`, refused if another embedding made it: vectors of two models in one index
    would make every similarity meaningless, silently. Its distance must be cosine and what it
    holds MiniLM's 384 dimensions (chromadb checks the embedding function's name itself)."""
    where = f"Chroma server {url}: collection {COLLECTION!r}"
    config: Any = collection.configuration
    index = config.get("hnsw") or config.get("spann") or {}
    space = index.get("space") if isinstance(index, dict) else None
    if space not in (None, "cosine"):
        raise MemoryServerError(f"{where} measures distance by {space!r}, not 'cosine'")
    some = collection.get(limit=1, include=["embeddings"])["embeddings"]
    if some is not None and len(some) and len(some[0]) != _DIMENSION:
        raise MemoryServerError(
            f"{where} holds {len(some[0])}-dimensional vectors, not MiniLM's {_DIMENSION}"
        )
    return collection


def describe_server(
    url: str,
    *,
    token: str | None = None,
    tenant: str = DEFAULT_TENANT,
    database: str = DEFAULT_DATABASE,
) -> str:
    """For `gtm doctor`: the server's version and what its memory collection holds, creating
    and writing nothing. Raises `MemoryServerError` (one line) as `ChromaMemory.server` would."""
    version = check_server(url, token=token, tenant=tenant, database=database)
    client = _http_client(url, token, tenant, database)
    where = f"{version} at {shown_url(url)} ({tenant}/{database})"
    try:
        if COLLECTION not in {c.name for c in client.list_collections()}:
            return f"{where}; no memory stored yet"
        ef: Any = MiniLMEmbedding()  # named only, never loaded: nothing is embedded here
        try:
            collection = client.get_collection(COLLECTION, embedding_function=ef)
        except ValueError as exc:
            raise _conflict(shown_url(url), exc) from None
        return f"{where}; {_checked(collection, shown_url(url)).count()} records"
    finally:
        close_http_client(client)
