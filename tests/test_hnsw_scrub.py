"""The unused slots of Chroma's vector-segment files are zeroed after an erasure
(`memory.hnsw_scrub`), because Chroma writes them from uninitialised heap memory
(chroma-core/chroma#7688): a name the process had just erased could otherwise stay on disk."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.config import Settings

from gtm.domain.models import Touch
from memory.chroma import COLLECTION, ChromaMemory
from memory.embedding import MiniLMEmbedding
from memory.hnsw_scrub import scrub_all, scrub_segment

pytestmark = pytest.mark.timeout(300)

_NEEDLE = b"Dana Ruiz, VP Engineering"


def _touch(account: str, text: str) -> Touch:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    return Touch(account_id=account, kind="draft", text=text, at=at, campaign="c", contact="Lee")


def _nearest(root: Path, text: str) -> list[str]:
    """Ask Chroma's own vector index (not gtm's in-process one) for the nearest records."""
    client = chromadb.PersistentClient(
        path=str(root), settings=Settings(anonymized_telemetry=False)
    )
    ef: Any = MiniLMEmbedding()
    got = client.get_collection(COLLECTION, embedding_function=ef).query(
        query_texts=[text], n_results=3
    )
    return list(got["ids"][0])


def _segment(root: Path) -> Path:
    (seg,) = [d for d in root.iterdir() if (d / "header.bin").is_file()]
    return seg


def _plant(seg: Path) -> tuple[int, int]:
    """Write the needle into every unused slot, as a malloc that reused freed text would."""
    raw = (seg / "header.bin").read_bytes()
    _version, _off, max_el, count, per_el = struct.unpack_from("<iQQQQ", raw)
    for name, width, start in (
        ("data_level0.bin", per_el, count * per_el),
        ("length.bin", 4, count * 4),
    ):
        path = seg / name
        size = max(path.stat().st_size, max_el * width)
        junk = (_NEEDLE * (size // len(_NEEDLE) + 1))[: size - start]
        with path.open("r+b") as f:
            f.seek(start)
            f.write(junk)
    return count, per_el


async def _filled(root: Path, n: int) -> ChromaMemory:
    """A memory of `n` records whose vector index persists every 10 writes (Chroma's default is
    1,000), so that live slots are on disk beside the unused ones."""
    client = chromadb.PersistentClient(
        path=str(root), settings=Settings(anonymized_telemetry=False)
    )
    ef: Any = MiniLMEmbedding()
    meta = {"hnsw:space": "cosine", "hnsw:sync_threshold": 10, "hnsw:batch_size": 10}
    client.create_collection(COLLECTION, embedding_function=ef, metadata=meta)
    memory = ChromaMemory(root)
    for i in range(n):
        await memory.remember(_touch(f"a{i % 3}", f"Kept note {i} on pricing"), key=f"k{i}")
    return memory


async def test_scrub_zeroes_only_unused_slots_and_the_index_still_answers(
    tmp_path: Path,
) -> None:
    root = tmp_path / "chroma"
    memory = await _filled(root, 45)
    memory.close()
    before = _nearest(root, "Kept note 7 on pricing")
    seg = _segment(root)
    live_level0 = (seg / "data_level0.bin").read_bytes()
    count, per_el = _plant(seg)
    assert count > 0, "the test needs live elements on disk"
    assert _NEEDLE in (seg / "data_level0.bin").read_bytes()

    result = scrub_segment(seg)

    assert result.skipped is None and result.zeroed > 0
    for name in ("data_level0.bin", "length.bin", "header.bin", "link_lists.bin"):
        assert _NEEDLE not in (seg / name).read_bytes(), name
    level0 = (seg / "data_level0.bin").read_bytes()
    assert level0[: count * per_el] == live_level0[: count * per_el]  # live slots untouched
    assert level0[count * per_el :].count(0) == len(level0) - count * per_el
    reopened = ChromaMemory(root)
    assert _nearest(root, "Kept note 7 on pricing") == before
    await reopened.remember(_touch("a1", "Written after the scrub"), key="late")
    assert "Written after the scrub" in [t.text for t in await reopened.history("a1", limit=200)]
    reopened.close()


async def test_a_header_it_cannot_read_is_left_alone(tmp_path: Path) -> None:
    seg = tmp_path / "seg"
    seg.mkdir()
    (seg / "header.bin").write_bytes(struct.pack("<i", 7) + bytes(96))
    (seg / "length.bin").write_bytes(_NEEDLE)
    (result,) = scrub_all(tmp_path)
    assert result.skipped == "header not understood (version 7)"
    assert (seg / "length.bin").read_bytes() == _NEEDLE


async def test_forget_leaves_no_unused_slot_holding_anything(tmp_path: Path) -> None:
    root = tmp_path / "chroma"
    memory = await _filled(root, 45)
    await memory.remember(_touch("a0", "Dana Ruiz asked about SOC 2"), key="dana")
    assert await memory.forget_person(["dana ruiz"]) == 1
    memory.close()
    for seg in [d for d in root.iterdir() if (d / "header.bin").is_file()]:
        raw = (seg / "header.bin").read_bytes()
        _v, _o, _m, count, per_el = struct.unpack_from("<iQQQQ", raw)
        level0 = (seg / "data_level0.bin").read_bytes()
        lengths = (seg / "length.bin").read_bytes()
        assert level0[count * per_el :].count(0) == len(level0) - count * per_el
        assert lengths[count * 4 :].count(0) == len(lengths) - count * 4
