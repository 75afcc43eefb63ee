"""Text plumbing shared by the checks: tokens, the research's vocabulary, claims, shingles.

Everything here is deterministic and dependency-free so that scoring 1,000 drafts stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

from evals.unicode import Folded, fold, mixed_script_words, reveal
from gtm.domain.patterns import any_of

__all__ = [
    "find_injection",
    "Claim",
    "Vocabulary",
    "claims",
    "content_tokens",
    "greeted_name",
    "longest_common_run",
    "norm",
    "number_key",
    "shingles",
    "words",
]

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    i'm i've i'd i'll you're you've it's that's what's let's we're we've don't didn't isn't
    hi hello hey dear also still yet really quite much many lot lots one""".split()
)

# Capitalised words that carry no claim: pronouns, sign-offs, generic acronyms, the channel.
NEUTRAL_CAPS = frozenset(
    """i i'm i've i'd i'll ai ml llm llms rag api apis sdk saas b2b ok ps p.s thanks thank
    cheers best regards linkedin hi hello hey dear monday tuesday wednesday thursday friday
    saturday sunday""".split()
)
# "20 minutes", "a 15-minute call": meeting logistics, not claims about the account.
_LOGISTICS_UNIT = re.compile(r"^(?:min(?:ute)?s?|hours?|-minute|-min)\b", re.IGNORECASE)

MONTHS = (
    "january february march april may june july august september october november december"
).split()
_MONTH_ABBR = {m[:3]: m for m in MONTHS} | {"sept": "september"}
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}

_WORD = re.compile(r"[A-Za-z0-9$#][\w'’.\-$%#]*[\w%]|[A-Za-z0-9]")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\n—–]\s*|\s[-–—]\s+)$")
_URL = re.compile(
    r"\b(?:https?://|www\.)[^\s<>\"')]*[^\s<>\"').,;:!?]|\b[\w.+-]+@[\w-]+\.[\w.-]+\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"^[$€£#]?\d[\d,.]*(?:[kmb]|%|x|\+)?\b", re.IGNORECASE)
_QUOTED = re.compile(r"[\"“]([^\"”]{12,})[\"”]")
_GREETING = re.compile(
    r"^\s*(?:(?:hi|hello|hey|dear|morning|good morning)\s+([A-Z][\w'’-]+)"
    r"|([A-Z][\w'’-]+)\s*[,—–])",
    re.IGNORECASE,
)
_JOINERS = ("of", "&", "de", "and")
_MULTIPLIER = {"million": "m", "billion": "b", "thousand": "k", "mn": "m", "bn": "b"}
_ISO_DATE = re.compile(r"\b(20\d\d)-(0[1-9]|1[0-2])(?:-\d\d)?\b")


@cache
def norm(token: str) -> str:
    """Lower-case, drop possessives and trailing punctuation, fold simple plurals."""
    t = token.lower().replace("’", "'").strip(".,;:!?'\"()[]-")
    if t.endswith("'s"):
        t = t[:-2]
    if t in _MONTH_ABBR:
        return _MONTH_ABBR[t]
    if len(t) > 3 and t.endswith("s") and not t.endswith("ss") and not t[-2].isdigit():
        t = t[:-1]
    return t


def number_key(token: str) -> str | None:
    """'$14M' -> '14m', '2,000' -> '2000', '4s' -> '4', '#412' -> '412'; None if no number."""
    m = _NUMBER.match(token)
    if not m:
        return None
    raw = m.group(0).lower().lstrip("$€£#")
    suffix = raw[-1] if raw[-1] in "kmb" else ""
    digits = raw.rstrip("kmb%x+").replace(",", "").rstrip(".")
    if not digits or not digits[0].isdigit():
        return None
    return digits + suffix


def words(text: str) -> list[tuple[str, int]]:
    """Word tokens with their offsets."""
    return [(m.group(0), m.start()) for m in _WORD.finditer(text)]


def _with_iso_months(text: str) -> str:
    return _ISO_DATE.sub(lambda m: f"{m.group(0)} {MONTHS[int(m.group(2)) - 1]} {m.group(1)}", text)


@dataclass(frozen=True)
class Vocabulary:
    """What the research supports: normalised words, numbers and the raw text for phrases."""

    tokens: frozenset[str]
    numbers: frozenset[str]
    text: str
    acronyms: frozenset[str] = frozenset()
    """Initials of 2-4 consecutive research words: "product manager" supports "PM"."""

    @classmethod
    def of(cls, texts: Iterable[str]) -> Vocabulary:
        text = _with_iso_months("\n".join(t for t in texts if t))
        tokens: set[str] = set()
        numbers: set[str] = set()
        toks = [w for w, _ in words(text)]
        for i, w in enumerate(toks):
            for part in [w, *re.split(r"[-/.]", w)]:
                if part:
                    tokens.add(norm(part))
            key = number_key(w) or _NUMBER_WORDS.get(w.lower())
            if key:
                nxt = toks[i + 1].lower() if i + 1 < len(toks) else ""
                mult = _MULTIPLIER.get(nxt, "")
                numbers.add(key + mult if key[-1].isdigit() else key)
                numbers.add(key.rstrip("kmb"))
        alpha = [w.lower() for w in toks if w[0].isalpha()]
        acronyms = {
            "".join(w[0] for w in alpha[i : i + n])
            for n in (2, 3, 4)
            for i in range(len(alpha) - n + 1)
        }
        return cls(frozenset(tokens), frozenset(numbers), text.lower(), frozenset(acronyms))

    def supports_word(self, token: str) -> bool:
        n = norm(token)
        if n in self.tokens or n in NEUTRAL_CAPS:
            return True
        if token.isupper() and 2 <= len(token) <= 4 and token.lower() in self.acronyms:
            return True
        parts = [p for p in re.split(r"[-/.]", token) if p]
        return len(parts) > 1 and all(norm(p) in self.tokens for p in parts)

    def supports_number(self, key: str) -> bool:
        return key in self.numbers or (key[-1] in "kmb" and key[:-1] + key[-1] in self.numbers)


@dataclass(frozen=True)
class Claim:
    kind: str  # name | number | date | role | link | quote
    span: str


def greeted_name(body: str) -> str | None:
    """The name a message opens with ("Hi Maria," / "Maria —"), if any."""
    m = _GREETING.match(body)
    if not m:
        return None
    name = m.group(1) or m.group(2)
    return None if norm(name) in STOPWORDS or norm(name) in NEUTRAL_CAPS else name


def _is_cap(token: str) -> bool:
    return token[:1].isupper() and len(token) > 1 and not token.isdigit()


def claims(text: str, role_patterns: Sequence[re.Pattern[str]], *, title_case: bool) -> list[Claim]:
    """Concrete claims a reader would take as facts: names, numbers, dates, roles, links, quotes.

    A sentence's first word is not a name claim (it is capitalised by grammar), except a
    greeting's name. In a title-case line (an email subject) only numbers, dates, roles, links
    and quotes count.
    """
    found: list[Claim] = []
    for m in _URL.finditer(text):
        found.append(Claim("link", m.group(0).rstrip(".,")))
    scrubbed = _URL.sub(" ", text)
    for m in _QUOTED.finditer(scrubbed):
        found.append(Claim("quote", m.group(1)))
    for p in role_patterns:
        found.extend(Claim("role", m.group(0)) for m in p.finditer(scrubbed))
    toks = words(scrubbed)
    greeting = greeted_name(scrubbed)
    run: list[str] = []

    def flush() -> None:
        if run:
            found.append(Claim("name", " ".join(run)))
            run.clear()

    for i, (tok, at) in enumerate(toks):
        if number_key(tok):
            flush()
            unit = tok.lstrip("0123456789$,.") or (toks[i + 1][0] if i + 1 < len(toks) else "")
            if not _LOGISTICS_UNIT.match(unit):
                found.append(Claim("number", tok))
            continue
        if norm(tok) in MONTHS and (tok[0].isupper() or len(tok) > 3):
            flush()
            found.append(Claim("date", tok))
            continue
        starts_sentence = bool(_SENTENCE_START.search(scrubbed[:at]))
        is_greeting = greeting is not None and i <= 1 and tok == greeting
        if _is_cap(tok) and not title_case and (is_greeting or not starts_sentence):
            if norm(tok) in NEUTRAL_CAPS and not is_greeting:
                flush()
                continue
            run.append(tok)
        elif (
            run
            and tok in ("of", "&", "de", "and")
            and i + 1 < len(toks)
            and _is_cap(toks[i + 1][0])
        ):
            run.append(tok)
        else:
            flush()
    flush()
    return found


def content_tokens(text: str) -> list[str]:
    """Normalised words that carry meaning (no stopwords), in order."""
    out = []
    for tok, _ in words(_URL.sub(" ", text)):
        n = number_key(tok) or norm(tok)
        if n and n not in STOPWORDS and (len(n) > 2 or n[0].isdigit()):
            out.append(n)
    return out


@lru_cache(maxsize=8192)
def shingles(text: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    """Word n-grams of the text with names and numbers masked, so a template shows its skeleton."""
    seq = skeleton(text)
    return frozenset(tuple(seq[i : i + n]) for i in range(max(0, len(seq) - n + 1)))


def skeleton(text: str) -> list[str]:
    return ["#" if _is_cap(t) or number_key(t) else t.lower() for t, _ in words(text)]


def longest_common_run(a: str, b: str) -> str:
    """The longest run of words `a` shares with `b` (names and numbers masked), quoted from `a`."""
    from difflib import SequenceMatcher

    ta, tb = words(a), words(b)
    sm = SequenceMatcher(None, skeleton(a), skeleton(b), autojunk=False)
    m = sm.find_longest_match(0, len(ta), 0, len(tb))
    if m.size == 0:
        return ""
    start = ta[m.a][1]
    last_tok, last_at = ta[m.a + m.size - 1]
    return a[start : last_at + len(last_tok)]


# Text a page hides from its human reader is written for a machine: zero-width characters,
# invisible operators (U+2061-U+2064), Unicode tag characters ("ASCII smuggling"), bidi
# overrides, and markup that hides text. Soft hyphens and direction marks have honest uses in
# real text: they are not flagged, only removed before matching (see `evals.unicode`).
_HIDDEN_CHARS = re.compile(
    "[\u200b-\u200d\u2060-\u2064\u206a-\u206f\ufeff\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f]"
)
_HIDDEN_MARKUP = re.compile(
    r"<!--|display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0|"
    r"color\s*:\s*(?:#fff(?:fff)?\b|white\b)|<\s*(?:script|style|iframe)\b",
    re.IGNORECASE,
)
# Chat-template tokens and role headers: a fact never legitimately speaks as a role. A header
# starts the text or follows punctuation ("…, SYSTEM:", "(assistant:", "- system:"); in capitals
# ("… SYSTEM: …") it is a header wherever it stands.
_ROLE_MARKERS = re.compile(
    r"<\|[a-z_]+\|>|\[/?INST\]|<<\s*SYS\s*>>|</?\s*(?:system|assistant|instructions?)\s*>|"
    r"(?:^|[\n.,;:!?()\[\]{}>\"'“”‘’*|—–]\s*|(?:^|\s)-\s*)"
    r"(?:system|assistant|developer)\s*(?:message|prompt)?\s*:|"
    r"\b(?-i:SYSTEM|ASSISTANT|DEVELOPER)(?:\s*(?-i:MESSAGE|PROMPT))?\s*:|"
    r"#{2,}\s*(?:system|instructions?|assistant)\b",
    re.IGNORECASE,
)


def find_injection(text: str, patterns: Sequence[re.Pattern[str]]) -> tuple[int, str] | None:
    """Where `text` starts trying to instruct a writer, and why, or None.

    Hidden characters or markup, chat-role markers, the playbook's `injection_phrases`
    (`patterns`), and words disguised with look-alike letters. Markup, markers and phrases are
    matched in the folded text (`evals.unicode.fold`: no invisible characters, NFKC, look-alikes
    as ASCII), so "Ig\u00adnore", "Іgnore" (Cyrillic І) or fullwidth letters change nothing; the
    offset is in `text` as given. Research quarantines such a fact; review flags a draft that
    repeats it."""
    hits: list[tuple[int, str]] = []
    if m := _HIDDEN_CHARS.search(text):
        hits.append((m.start(), "hidden characters"))
    folded = fold(text)
    if m := _search(_HIDDEN_MARKUP, folded):
        hits.append(_hit(text, folded, m, "hidden markup"))
    if m := _search(_ROLE_MARKERS, folded):
        hits.append(_hit(text, folded, m, "a fake role message"))
    gate = any_of(tuple(patterns))  # one scan first: most texts hold none of the phrases
    phrases = (
        [m for p in patterns if (m := _search(p, folded))]
        if gate is None or _search(gate, folded) is not None
        else []
    )
    if phrases:
        hits.append(_hit(text, folded, min(phrases, key=lambda m: m.start()), "an instruction"))
    for at, word, scripts in mixed_script_words(text)[:1]:
        mix = " and ".join(scripts)
        hits.append((at, f"a word mixing {mix} letters, a look-alike disguise: {reveal(word)}"))
    # The earliest; at one place, the first kind above ("an instruction", disguised, says more
    # than the disguised word it starts with).
    return min(hits, key=lambda hit: (hit[0], hits.index(hit))) if hits else None


def _search(pattern: re.Pattern[str], folded: Folded) -> re.Match[str] | None:
    """The earliest match in any reading of the folded text."""
    found = [m for reading in folded.readings if (m := pattern.search(reading))]
    return min(found, key=lambda m: m.start(), default=None)


def _hit(text: str, folded: Folded, m: re.Match[str], what: str) -> tuple[int, str]:
    """The match at its place in `text`; the reason quotes it as read, and as written if not."""
    start, end = folded.span(*m.span())
    read, written = m.group(0).strip(), text[start:end].strip()
    if read == written:
        return start, f"{what} {read!r}"
    return start, f"{what} {read!r}, disguised as {reveal(written)}"
