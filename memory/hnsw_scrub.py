"""Zero the unused tail of a Chroma vector segment's files, which Chroma fills from the heap.

Chroma's hnswlib fork allocates the index's level-0 block and its vector lengths with `malloc`
at full capacity and never clears them, and writes the whole capacity to `data_level0.bin` and
`length.bin` when it first persists a segment (upstream chroma-core/chroma#7688, open). The
slots past the live elements therefore hold whatever the writing process had freed: document
text, ids, request buffers. After `forget` has erased a person, the new segment is written by
the same process that just read that person's records, so their name can land in those slots.
Slots are only ever written again when an element is added there, and `addPoint` clears the
whole slot first, so zeroing every slot past the live count loses nothing and keeps the index
loadable (a slot Chroma has not filled is never read).

The header layout is hnswlib's `persistHeader` (persistence version 1): int32 version, then
size_t offsetLevel0, max_elements, cur_element_count, size_data_per_element, label_offset,
offsetData, int32 maxlevel, uint32 enterpoint, size_t maxM, maxM0, M, double mult, size_t
ef_construction: 100 bytes, little-endian on the platforms Chroma ships for. A header that
does not read that way is left alone (reported, never guessed at).

Only safe while no other writer has the segment open: `ChromaMemory` runs it where its erasure
already needs the memory to itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Scrubbed", "scrub_segment", "scrub_all"]

_HEADER = struct.Struct("<iQQQQQQiIQQQdQ")
_VERSION = 1
_FLOAT = 4
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Scrubbed:
    """What one segment directory got: bytes zeroed, or why it was left alone."""

    segment: Path
    zeroed: int = 0
    skipped: str | None = None


def _zero_from(path: Path, start: int) -> int:
    """Overwrite `path` with zeros from byte `start` to its end; the count of bytes changed."""
    size = path.stat().st_size
    if start >= size:
        return 0
    changed = 0
    with path.open("r+b") as f:
        f.seek(start)
        pos = start
        while pos < size:
            n = min(_CHUNK, size - pos)
            block = f.read(n)
            if block.count(0) != len(block):
                changed += len(block) - block.count(0)
                f.seek(pos)
                f.write(bytes(len(block)))
            pos += n
        f.flush()
    return changed


def scrub_segment(segment: Path) -> Scrubbed:
    """Zero `data_level0.bin` and `length.bin` past the header's live element count."""
    header = segment / "header.bin"
    level0, lengths = segment / "data_level0.bin", segment / "length.bin"
    if not header.is_file():
        return Scrubbed(segment, skipped="no header.bin")
    raw = header.read_bytes()
    if len(raw) < _HEADER.size:
        return Scrubbed(segment, skipped=f"header.bin has {len(raw)} bytes")
    version, _off, max_el, count, per_el, *_rest = _HEADER.unpack_from(raw)
    if version != _VERSION or per_el <= 0 or count > max_el:
        return Scrubbed(segment, skipped=f"header not understood (version {version})")
    zeroed = 0
    if level0.is_file():
        zeroed += _zero_from(level0, count * per_el)
    if lengths.is_file():
        zeroed += _zero_from(lengths, count * _FLOAT)
    return Scrubbed(segment, zeroed=zeroed)


def scrub_all(root: Path) -> list[Scrubbed]:
    """`scrub_segment` for every vector segment directory directly under a Chroma data dir."""
    return [scrub_segment(d) for d in sorted(root.iterdir()) if (d / "header.bin").is_file()]
