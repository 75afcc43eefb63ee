"""Research-free specificity: how much of a message could only have been written to its reader.

`genericness` (evals/checks.py) measures a draft against its own research, which needs the
research. People also bring messages without it: their templates, a colleague's draft, a
vendor's "personalized" output. `specificity(text)` reads the text alone and finds

- **specific spans**, what only this reader's writer would know: named people, companies,
  products and events (capitalised runs that are not grammar, greetings, role titles or
  sign-offs), concrete numbers and dates, quotes, and references to something the reader did or
  said ("your post on…", "your talk at…", "saw you're hiring…", "you mentioned…");
- **generic spans**, what a mail merge could send to anyone: the playbook's banned, urgency and
  pitch phrases (`guardrails:`; not repeated here), merge-field debris (the `placeholders`
  check), boilerplate openers, generic praise, vague value claims ("help companies like yours",
  "increase revenue") and calendar-link asks.

A word inside a generic span never also counts as specific ("Fortune 500", "my name is Tom").
Each distinct specific span counts once, with its kind's weight; generic spans likewise. Then

    score = S / (S + G + 1)

where S and G are the summed weights. The `+ 1` is the prior: a message with no evidence
either way scores 0 (it could be sent to anyone), and one name alone cannot score above 0.5.
Deterministic, no model, one regex pass per pattern: linting 1,000 messages takes well under a
second (bench/bench_lint.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from evals.checks import placeholders
from evals.context import CheckContext
from evals.specificity_phrases import GENERIC_PHRASES, SPECIFIC_PHRASES, rx
from evals.text import NEUTRAL_CAPS, STOPWORDS, greeted_name
from gtm.domain.models import Draft
from gtm.domain.playbook import Playbook, load_playbook

__all__ = [
    "DEFAULT_MIN_SPECIFICITY",
    "Span",
    "SpecificityScore",
    "campaign_specificity",
    "specificity",
]

DEFAULT_MIN_SPECIFICITY = 0.5
"""`gtm lint --min-specificity` when none is given."""


@dataclass(frozen=True)
class Span:
    """One piece of evidence: text[start:end], and why it counts."""

    start: int
    end: int
    text: str
    why: str
    weight: float = 1.0

    def as_dict(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "text": self.text, "why": self.why}


@dataclass(frozen=True)
class SpecificityScore:
    """0 (could be sent to anyone) .. 1 (only this reader), with the spans that decided it."""

    score: float
    specific: tuple[Span, ...]
    generic: tuple[Span, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "score": round(self.score, 4),
            "specific": [s.as_dict() for s in self.specific],
            "generic": [s.as_dict() for s in self.generic],
        }


_GREETING = re.compile(
    r"^[ \t]*(?:hi|hello|hey|dear|morning|good morning)[ \t]+([^,\n—–!:]{1,40})", re.IGNORECASE
)
_FIELD_NEXT = re.compile(r"\s*(?:\w+\s+)?[\[{<%]")
_BRACES = re.compile(r"\{\{[^{}\n]{1,60}\}\}")
_CAP_WORD = re.compile(r"(?<![\w'’])[A-Z][\w'’&.\-]*[\w]|[A-Z]")
_NUMBER = re.compile(
    r"(?<![\w.])(?:[$€£]\s?)?\d[\d,]*(?:\.\d+)?"
    r"(?:\s?(?:%|k|m|bn?|x|\+|million|billion|thousand|[kmgtp]b|ms|s|seconds|days|weeks|months|"
    r"years|people|engineers|employees|customers|users|stars|repos?))?(?!\w)",
    re.IGNORECASE,
)
_LOGISTICS = re.compile(r"\s*(?:-|\s)?(?:min(?:ute)?s?|hours?|hrs?)\b", re.IGNORECASE)
# "May" is a month only with a day or after "in/since/by/early/late" ("May I ask" is not).
_MONTH = re.compile(
    r"(?<!\w)(?:(?:January|February|March|April|June|July|August|September|October|November|"
    r"December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)(?:\s+\d{1,2}(?:st|nd|rd|th)?)?"
    r"|(?<=in |by )May|(?<=since )May|(?<=early )May|(?<=late )May"
    r"|May\s+\d{1,2}(?:st|nd|rd|th)?)(?!\w)"
)
_WHEN = rx(
    r"Q[1-4](?: ?'?\d{2,4})?",
    r"(?:last|this past) (?:week|month|quarter|year|monday|tuesday|wednesday|thursday|friday)",
    r"earlier this (?:week|month|year)",
    r"yesterday",
)
_QUOTE = re.compile(r"[\"“]([^\"”\n]{12,300})[\"”]")
_SENTENCE_END = re.compile(r"(?:^|[.!?:;\n•*>\-—–(\[\"“])\s*$")
_SIGN_OFF = re.compile(
    r"^[ \t]*(?:best|thanks|thank you|cheers|regards|best regards|kind regards|warm regards|"
    r"sincerely|warmly|talk soon|all the best|many thanks|thx)[ \t]*[,!.]?[ \t]*$|^[ \t]*(?:--|—)",
    re.IGNORECASE | re.MULTILINE,
)
_JOINERS = frozenset({"of", "&", "de", "and", "for", "the"})
_GENERIC_CAPS = frozenset(
    """crm roi seo kpi kpis b2c gtm ceo cto cfo coo cmo vp svp evp sdr sdrs bdr bdrs ae aes ops
    hr it us usa uk eu faq pdf email e-mail inbox team teams company q&a covid ps p.s. pps
    subject re fwd founder co-founder head director manager president chief officer engineer
    engineering sales marketing growth product operations""".split()
)


@cache
def _default_playbook() -> Playbook:
    return load_playbook()


def specificity(text: str, playbook: Playbook | None = None) -> SpecificityScore:
    """How specific `text` is to its reader, with the spans that say why (module docstring)."""
    pb = playbook or _default_playbook()
    generic = _distinct(_dedupe(_generic_spans(text, pb)))
    taken = [(s.start, s.end) for s in generic]
    specific = _dedupe(
        s for s in _specific_spans(text, pb) if not any(s.start < e and b < s.end for b, e in taken)
    )
    specific = _distinct(specific)
    s_weight = sum(s.weight for s in specific)
    g_weight = sum(s.weight for s in generic)
    score = s_weight / (s_weight + g_weight + 1.0)
    return SpecificityScore(score, tuple(specific), tuple(generic))


def campaign_specificity(research_free: float, genericness: float, weight: float = 0.5) -> float:
    """Inside a campaign, combine the research-free score with the research-based genericness.

    `combined = weight · (1 − genericness) + (1 − weight) · research_free`. Genericness is the
    stronger evidence (it checks the words against real research), so it keeps half the say by
    default; the research-free score adds what genericness cannot see: merge debris, boilerplate
    and vague claims built from words the research happens to contain. Neither input changes
    the existing `genericness` check or the eval baseline.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be within 0..1, not {weight}")
    return weight * (1.0 - genericness) + (1.0 - weight) * research_free


def _generic_spans(text: str, pb: Playbook) -> list[Span]:
    found: list[Span] = []
    g = pb.guardrails
    lists = (
        (g.banned_patterns, "playbook banned phrase", 1.0),
        (g.urgency_patterns, "playbook urgency phrase", 1.0),
        (g.pitch_patterns, "playbook pitch phrase", 1.0),
    )
    for patterns, why, weight in lists:
        for p in patterns:
            found += [Span(m.start(), m.end(), m.group(0), why, weight) for m in p.finditer(text)]
    for debris in _debris(text, pb):
        found.append(debris)
    for pattern, why, weight in GENERIC_PHRASES:
        found += [Span(m.start(), m.end(), m.group(0), why, weight) for m in pattern.finditer(text)]
    return found


def _debris(text: str, pb: Playbook) -> Iterable[Span]:
    """Merge-field debris, as the `placeholders` check finds it, located in the text."""
    draft = Draft(
        channel="linkedin", step="linkedin_message", body=text, prompt_version="", model=""
    )
    result = placeholders(draft, CheckContext(facts=(), playbook=pb))
    at = 0
    for span in result.spans:
        i = text.find(span, at)
        if i < 0:
            i = text.find(span)
        if i >= 0:
            at = i + len(span)
            yield Span(i, i + len(span), span, "merge-field debris", 1.0)
    for m in _BRACES.finditer(text):  # "{{Your Name}}": the check only knows one-word fields
        yield Span(m.start(), m.end(), m.group(0), "merge-field debris", 1.0)


def _specific_spans(text: str, pb: Playbook) -> list[Span]:
    found: list[Span] = []
    for pattern, why, weight in SPECIFIC_PHRASES:
        for m in pattern.finditer(text):
            # "your post on [topic]": the thing referred to is a merge field, not knowledge.
            if not _FIELD_NEXT.match(text, m.end()):
                found.append(Span(m.start(), m.end(), m.group(0), why, weight))
    for m in _QUOTE.finditer(text):
        found.append(Span(m.start(), m.end(), m.group(0), "quotes something said or written", 1.5))
    end = _body_end(text)
    blocked = _blocked(text, pb)
    for pattern in (_MONTH, _WHEN):
        for m in pattern.finditer(text, 0, end):
            found.append(Span(m.start(), m.end(), m.group(0), "a date or time reference", 1.0))
    for m in _NUMBER.finditer(text, 0, end):
        if _LOGISTICS.match(text, m.end()) or _is_list_number(text, m.start(), m.end()):
            continue
        if not any(b <= m.start() < e for b, e in blocked):
            found.append(Span(m.start(), m.end(), m.group(0), "a concrete number", 1.0))
    found += _names(text, end, blocked)
    return found


def _body_end(text: str) -> int:
    """Where the sign-off starts ("Best,", "Thanks,"): the sender's own name is not evidence."""
    m = _SIGN_OFF.search(text)
    return m.start() if m else len(text)


def _blocked(text: str, pb: Playbook) -> list[tuple[int, int]]:
    """Role titles and the greeting's name: merge fields, not evidence."""
    spans = [m.span() for p in pb.guardrails.role_patterns for m in p.finditer(text)]
    at = 0
    for line in text.splitlines(keepends=True):
        if at < 400 and (m := _GREETING.match(line)):  # the greeting may follow a subject line
            spans.append((at + m.start(1), at + m.end(1)))
        elif at < 400 and (name := greeted_name(line.lstrip())):
            i = at + line.find(name)
            spans.append((i, i + len(name)))
        if _title_case(line):
            spans.append((at, at + len(line)))
        at += len(line)
    return spans


def _title_case(line: str) -> bool:
    """A headline ("Proposal for Strategic Alliance"): its capitals are style, not names."""
    ws = [w for w in line.split() if w[:1].isalpha() and w.lower() not in STOPWORDS]
    return len(ws) >= 3 and sum(w[0].isupper() for w in ws) > len(ws) * 0.7


def _is_list_number(text: str, start: int, end: int) -> bool:
    line_start = text.rfind("\n", 0, start) + 1
    return not text[line_start:start].strip() and text[end : end + 1] in (".", ")")


def _names(text: str, end: int, blocked: list[tuple[int, int]]) -> list[Span]:
    """Runs of capitalised words that grammar does not explain: people, companies, products."""
    found: list[Span] = []
    run: list[re.Match[str]] = []

    def flush() -> None:
        if run:
            a, b = run[0].start(), run[-1].end()
            words = text[a:b]
            first_starts = bool(_SENTENCE_END.search(text[max(0, a - 3) : a] or "\n"))
            distinctive = len(run) > 1 or _distinctive(run[0].group(0))
            if (not first_starts or distinctive) and (len(run) > 1 or len(words) > 1):
                found.append(Span(a, b, words, "names a person, company, product or event", 1.0))
            run.clear()

    prev_end = -1
    for m in _CAP_WORD.finditer(text, 0, end):
        word = m.group(0).rstrip(".")
        key = word.lower().replace("’", "'").removesuffix("'s")
        skip = (
            key in NEUTRAL_CAPS
            or key in _GENERIC_CAPS
            or key in STOPWORDS
            or any(b <= m.start() < e for b, e in blocked)
        )
        gap = text[prev_end : m.start()] if prev_end >= 0 else ""
        joined = run and (gap == " " or gap.strip().lower() in _JOINERS and gap.count(" ") <= 2)
        if skip:
            flush()
        elif joined:
            run.append(m)
        else:
            flush()
            run.append(m)
        prev_end = m.end()
    flush()
    return found


def _distinctive(word: str) -> bool:
    """A sentence's first word is a name only when it looks like one: CamelCase, digits,
    all capitals, or possessive ("Acme's")."""
    core = word.replace("’", "'").removesuffix("'s")
    return (
        core != word.replace("’", "'")
        or any(c.isdigit() for c in core)
        or any(c.isupper() for c in core[1:])
    )


def _dedupe(spans: Iterable[Span]) -> list[Span]:
    """Overlapping spans keep the first found (the playbook's, then the longer), in text order."""
    kept: list[Span] = []
    for s in spans:
        if s.end <= s.start:
            continue
        if any(s.start < k.end and k.start < s.end for k in kept):
            continue
        kept.append(s)
    return sorted(kept, key=lambda s: s.start)


def _distinct(spans: list[Span]) -> list[Span]:
    """Each distinct evidence text counts once ("Acme" named three times is one name)."""
    seen: set[str] = set()
    out = []
    for s in spans:
        key = s.text.lower().strip()
        if key in seen:
            continue
        seen.add(key)
        out.append(s)
    return out
