"""Text as a model reads it, for matching: what a page hides or disguises from its human reader.

An instruction can slip past a pattern behind characters nobody sees (a soft hyphen inside
"Ignore", the invisible operators U+2061–U+2064, direction marks) or behind letters that only
look Latin (Cyrillic "а", Greek "ο", fullwidth or mathematical forms). `fold` undoes all of it
before matching: it drops every default-ignorable code point (the Unicode property, not a list
kept here), applies NFKC per grapheme cluster, and folds each look-alike letter to the ASCII
letter it imitates, from Unicode's confusables data (the `confusable-homoglyphs` package).

Every folded character remembers the original characters it came from, so a match found in the
folded text is reported at its place in the original one, and the reviewer's highlighting stays
right. Plain ASCII, almost every fact and draft, takes a fast path and is returned as it is.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache

import regex

__all__ = ["Folded", "fold", "mixed_script_words", "reveal"]

_IGNORABLE = regex.compile(r"\p{Default_Ignorable_Code_Point}")
_CLUSTER = regex.compile(r"\X")
# A word for the script check: letters and their marks; an invisible character inside a word
# ("І\u00adgnore") does not split it.
_WORD = regex.compile(r"[\p{L}\p{M}\p{Default_Ignorable_Code_Point}]+")
# A look-alike of both "I" and "l", until `fold` decides how to read it (a private-use code point).
_I_OR_L = "\ue000"
_WORD_START_I_OR_L = regex.compile(r"(?<![\p{L}\ue000])\ue000")
# The scripts whose letters pass for each other. Other scripts mixing with Latin in one word
# ("iPhone版", "Tシャツ") are ordinary writing, not a disguise.
_LOOKALIKE_SCRIPTS = {
    name: regex.compile(rf"\p{{Script={name}}}") for name in ("Latin", "Cyrillic", "Greek")
}


@dataclass(frozen=True)
class Folded:
    """`text` folded for matching, and where each of its characters came from."""

    text: str
    size: int
    """The length of the original text."""
    starts: tuple[int, ...] | None = None
    """Per folded character, where its original grapheme cluster starts (None: unchanged)."""
    ends: tuple[int, ...] | None = None
    """Per folded character, where its original grapheme cluster ends (None: unchanged)."""
    readings: tuple[str, ...] = ()
    """Every way to read the folded text, `text` first, all of its length: a look-alike of both
    "I" and "l" (Cyrillic "І", Greek "Ι") is read as "I" at the start of a word and "l" inside one,
    then as "I" everywhere, then as "l" everywhere. Match a pattern against each."""

    def __post_init__(self) -> None:
        if not self.readings:
            object.__setattr__(self, "readings", (self.text,))

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original [start, end) of the folded text's [start, end)."""
        if self.starts is None or self.ends is None:
            return start, end
        if start >= len(self.text):
            return self.size, self.size
        if end <= start:
            return self.starts[start], self.starts[start]
        return self.starts[start], self.ends[end - 1]


@lru_cache(maxsize=8192)
def fold(text: str) -> Folded:
    """`text` without invisible characters, in NFKC, look-alike letters as the ASCII they mimic."""
    if text.isascii():  # no ignorable code point, NFKC is the identity, no look-alike
        return Folded(text, len(text))
    dropped = {m.start() for m in _IGNORABLE.finditer(text)}
    kept = [i for i in range(len(text)) if i not in dropped]
    visible = "".join(text[i] for i in kept)
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for m in _CLUSTER.finditer(visible):
        first, last = kept[m.start()], kept[m.end() - 1] + 1
        for ch in _fold_cluster(m.group()):
            out.append(ch)
            starts.append(first)
            ends.append(last)
    raw = "".join(out)
    readings = [raw]
    if _I_OR_L in raw:
        by_place = _WORD_START_I_OR_L.sub("I", raw).replace(_I_OR_L, "l")
        every_i, every_l = raw.replace(_I_OR_L, "I"), raw.replace(_I_OR_L, "l")
        readings = list(dict.fromkeys((by_place, every_i, every_l)))
    return Folded(readings[0], len(text), tuple(starts), tuple(ends), tuple(readings))


def mixed_script_words(text: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """Words that mix Latin, Cyrillic and Greek letters with a look-alike among them: "Іgnore".

    Each as (offset in `text`, the word, its scripts). A word wholly in one script (a Cyrillic
    name, German with umlauts, Greek) is writing; so is a mix without a look-alike ("10μs"): the
    reader sees what it is. A look-alike inside another script's word is there to fool someone.
    """
    if text.isascii():
        return []
    found = []
    for m in _WORD.finditer(text):
        word = m.group()
        if word.isascii():
            continue
        scripts = [name for name, p in _LOOKALIKE_SCRIPTS.items() if p.search(word)]
        if len(scripts) > 1 and any(_lookalike(ch) != ch for ch in word if not ch.isascii()):
            found.append((m.start(), word, tuple(scripts)))
    return found


def reveal(text: str) -> str:
    """`text` quoted with each invisible, control or look-alike character as its code point.

    "Іgnore" with a Cyrillic І reads "'\\u0406gnore'", so a reviewer sees what a model would;
    ordinary letters, accented or not, stay as they are.
    """
    return "'" + "".join(_code_point(ch) if _disguising(ch) else ch for ch in text) + "'"


def _disguising(ch: str) -> bool:
    return not ch.isprintable() or (not ch.isascii() and _fold_cluster(ch) != ch)


def _code_point(ch: str) -> str:
    return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"


@lru_cache(maxsize=4096)
def _fold_cluster(cluster: str) -> str:
    return "".join(_lookalike(ch) for ch in unicodedata.normalize("NFKC", cluster))


@cache
def _lookalike(ch: str) -> str:
    """The ASCII letter or digit `ch` is confusable with (Unicode's skeleton), else `ch` itself.

    Unicode's skeleton of "I" is "l": which one a look-alike of them imitates ("Іgnore", "аІІ")
    depends on the word, so it folds to a placeholder that `fold` reads both ways.
    """
    if ch.isascii():
        return ch
    entries = _confusables().get(ch)
    if not entries or len(entries) != 1:  # a prototype lists its look-alikes, not a target
        return ch
    target = str(entries[0]["c"])
    if not (target.isascii() and target.isalnum()):
        return ch
    return _I_OR_L if target == "l" else target


@cache
def _confusables() -> dict[str, list[dict[str, str]]]:
    """Unicode's confusables (UTS #39), loaded on first use rather than at import."""
    from confusable_homoglyphs import confusables  # type: ignore[import-untyped]

    data: dict[str, list[dict[str, str]]] = confusables.confusables_data
    return data
