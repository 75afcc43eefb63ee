"""Account memory on Chroma: a local `PersistentClient` with the offline MiniLM embedding."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import chromadb
from chromadb.api.types import Documents, EmbeddingFunction
from chromadb.config import Settings

from gtm.domain.models import Touch
from memory.base import names_person
from memory.embedding import MiniLMEmbedding

__all__ = ["ChromaMemory"]

COLLECTION = "touches"


class ChromaMemory:
    """Implements `AccountMemory`. Chroma is synchronous; calls run in a worker thread."""

    def __init__(
        self, path: Path, *, embedding: EmbeddingFunction[Documents] | None = None
    ) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._client = chromadb.PersistentClient(
            path=str(path), settings=Settings(anonymized_telemetry=False, allow_reset=False)
        )
        self._collection = self._client.get_or_create_collection(
            COLLECTION,
            embedding_function=embedding or MiniLMEmbedding(),  # type: ignore[arg-type]
            metadata={"hnsw:space": "cosine"},
        )

    def close(self) -> None:
        # PersistentClient has no close(); dropping the reference releases the handles.
        self._collection = None  # type: ignore[assignment]

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
        await asyncio.to_thread(
            self._collection.upsert,
            ids=[key],
            documents=[touch.text],
            metadatas=[self._meta(touch)],
        )

    async def history(self, account_id: str, limit: int = 20) -> list[Touch]:
        got = await asyncio.to_thread(
            self._collection.get,
            where={"account_id": account_id},
            include=["documents", "metadatas"],
        )
        touches = [
            self._touch(d, dict(m))
            for d, m in zip(got["documents"] or [], got["metadatas"] or [], strict=True)
        ]
        return sorted(touches, key=lambda t: t.at, reverse=True)[:limit]

    async def recall(self, account_id: str, query: str, k: int = 5) -> list[Touch]:
        count = await asyncio.to_thread(self._collection.count)
        if count == 0:
            return []
        got = await asyncio.to_thread(
            self._collection.query,
            query_texts=[query],
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
        where: Any = {
            "$and": [
                {"campaign": campaign},
                {"kind": "draft"},
                {"account_id": {"$ne": exclude_account}},
            ]
        }
        found = await asyncio.to_thread(self._collection.get, where=where, include=[])
        n = len(found["ids"])
        if n == 0:
            return []
        got = await asyncio.to_thread(
            self._collection.query,
            query_texts=[text],
            n_results=min(k, n),
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        docs = (got["documents"] or [[]])[0]
        metas = (got["metadatas"] or [[]])[0]
        dists = (got["distances"] or [[]])[0]
        return [
            (self._touch(d, dict(m)), 1.0 - float(dist))
            for d, m, dist in zip(docs, metas, dists, strict=True)
        ]

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
            await asyncio.to_thread(self._collection.delete, ids=ids)
            await asyncio.to_thread(self._scrub_log, ids)
        return len(ids)

    def _scrub_log(self, ids: list[str]) -> None:
        """Chroma keeps every write in its own log table (`embeddings_queue`) until the vector
        index next persists, so a deleted document would still be on disk. Drop the erased ids'
        entries (their add and their delete: a replay then never sees them) and rewrite the file
        without free pages."""
        db = sqlite3.connect(self._path / "chroma.sqlite3", timeout=30)
        try:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                db.execute(
                    f"DELETE FROM embeddings_queue WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            db.commit()
            db.execute("VACUUM")
        finally:
            db.close()

    async def forget_account(self, account_id: str) -> int:
        got = await asyncio.to_thread(self._collection.get, where={"account_id": account_id})
        ids = got["ids"]
        if ids:
            await asyncio.to_thread(self._collection.delete, ids=ids)
        return len(ids)
