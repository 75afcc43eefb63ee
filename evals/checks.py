"""Deterministic guardrail checks: pure functions over a draft, its facts and the playbook.

Each returns a `CheckResult` whose finding quotes the offending text and whose instruction tells
the writer what to change. The review agent and the eval harness call exactly these.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from gtm.models import Account, CheckResult, Draft, Fact
from gtm.playbook import Playbook

__all__ = [
    "Check",
    "ALL_CHECKS",
    "fact_coverage",
    "placeholders",
    "length",
    "banned_phrases",
    "single_ask",
    "no_urgency",
    "no_pitch_to_open_source",
    "count_asks",
]

Check = Callable[..., CheckResult]


def _text(draft: Draft) -> str:
    return f"{draft.subject}\n{draft.body}" if draft.subject else draft.body


def _quote(spans: Sequence[str]) -> str:
    return ", ".join(f"“{s}”" for s in spans)


def _matches(patterns: Sequence[re.Pattern[str]], text: str) -> list[str]:
    """Every span any of the playbook's phrase patterns matches, in pattern order."""
    return [m.group(0) for p in patterns for m in p.finditer(text)]


def _result(
    name: str, spans: list[str], finding: str, instruction: str, score: float | None = None
) -> CheckResult:
    ok = not spans and not finding
    return CheckResult(
        check=name,
        passed=ok,
        score=1.0 if ok else (score if score is not None else 0.0),
        finding=finding,
        spans=tuple(spans),
        instruction="" if ok else instruction,
    )


def fact_coverage(
    draft: Draft, facts: Sequence[Fact], playbook: Playbook, *, account: Account | None = None
) -> CheckResult:
    """At least `min_cited_facts` distinct cited facts, every one of them real."""
    known = {f.id for f in facts}
    cited = list(dict.fromkeys(draft.cited_fact_ids))
    unknown = [i for i in cited if i not in known]
    real = [i for i in cited if i in known]
    need = playbook.guardrails.min_cited_facts
    problems = []
    if unknown:
        problems.append(f"cites fact ids that do not exist: {_quote(unknown)}")
    if len(real) < need:
        problems.append(f"cites {len(real)} real fact(s), needs {need}")
    return _result(
        "fact_coverage",
        unknown,
        "; ".join(problems),
        f"Use at least {need} of the listed facts and cite only their ids "
        f"({', '.join(sorted(known)) or 'none available'}).",
        score=min(1.0, len(real) / need) if need else 1.0,
    )


_PLACEHOLDER = re.compile(
    r"\{\{?\s*\w+\s*\}?\}"  # {first_name} {{x}}
    r"|\[(?:[A-Z][\w ]*|f\d+)\]"  # [Company] [Your Name] [f2]
    r"|<\s*[A-Z_]{2,}\s*>"  # <NAME>
    r"|%[A-Z_]{2,}%"  # %FIRSTNAME%
    r"|\b(?:Hi|Hello|Hey|Dear)\s*,"  # "Hi ," with no name
    r"|\bX{3,}\b|\bTBD\b|\bINSERT\b|lorem ipsum",
    re.IGNORECASE,
)
_PLACEHOLDER_CASE = re.compile(r"\[(?:[A-Z][\w ]*|f\d+)\]|<\s*[A-Z_]{2,}\s*>|%[A-Z_]{2,}%")


def placeholders(
    draft: Draft, facts: Sequence[Fact], playbook: Playbook, *, account: Account | None = None
) -> CheckResult:
    """Unfilled template fields and merge debris."""
    text = _text(draft)
    spans = [m.group(0) for m in _PLACEHOLDER.finditer(text)]
    # Bracketed forms only count with their original case ("[Company]", "<NAME>").
    spans = [s for s in spans if not s.startswith(("[", "<", "%")) or _PLACEHOLDER_CASE.match(s)]
    return _result(
        "placeholders",
        spans,
        f"template debris: {_quote(spans)}" if spans else "",
        "Replace every placeholder with the real name or fact, and never put fact ids in the text.",
    )


def length(
    draft: Draft, facts: Sequence[Fact], playbook: Playbook, *, account: Account | None = None
) -> CheckResult:
    """Within the channel's limits; never empty."""
    lim = playbook.channels
    body = draft.body
    problems: list[str] = []
    if not body.strip():
        problems.append("the message is empty")
    if draft.step == "linkedin_connect" and len(body) > lim.linkedin_note_max_chars:
        problems.append(f"note is {len(body)} characters, limit {lim.linkedin_note_max_chars}")
    if draft.step == "linkedin_message" and len(body) > lim.linkedin_message_max_chars:
        problems.append(
            f"message is {len(body)} characters, limit {lim.linkedin_message_max_chars}"
        )
    if draft.step == "email":
        subject = (draft.subject or "").strip()
        if not subject:
            problems.append("the email has no subject")
        elif len(subject) > lim.email_subject_max_chars:
            problems.append(
                f"subject is {len(subject)} characters, limit {lim.email_subject_max_chars}"
            )
        if len(body) > lim.email_body_max_chars:
            problems.append(f"body is {len(body)} characters, limit {lim.email_body_max_chars}")
        words = len(body.split())
        if words > lim.email_body_max_words:
            problems.append(f"body is {words} words, limit {lim.email_body_max_words}")
    limit = {
        "linkedin_connect": lim.linkedin_note_max_chars,
        "linkedin_message": lim.linkedin_message_max_chars,
    }.get(draft.step, lim.email_body_max_chars)
    tail = [body[limit:][:60]] if len(body) > limit else []
    return _result(
        "length",
        tail,
        "; ".join(problems),
        f"Keep it under {limit} characters and not empty.",
        score=min(1.0, limit / max(len(body), 1)) if body.strip() else 0.0,
    )


def banned_phrases(
    draft: Draft, facts: Sequence[Fact], playbook: Playbook, *, account: Account | None = None
) -> CheckResult:
    spans = _matches(playbook.guardrails.banned_patterns, _text(draft))
    return _result(
        "banned_phrases",
        spans,
        f"generic phrases: {_quote(spans)}" if spans else "",
        f"Remove {_quote(spans)}; say something only this person would recognise.",
    )


_ASK = re.compile(
    r"[^.!?\n]*\?"  # a question sentence
    r"|\b(?:let me know|would love to|happy to (?:chat|share|send)|drop me a line|"
    r"grab (?:a|some) (?:time|coffee)|book (?:a|some) time|hop on a call)\b[^.!?\n]*[.!]?",
    re.IGNORECASE,
)


def count_asks(text: str) -> list[str]:
    """Question sentences plus imperative asks ("let me know…"), each one span."""
    return [m.group(0).strip() for m in _ASK.finditer(text) if m.group(0).strip()]


def single_ask(
    draft: Draft, facts: Sequence[Fact], playbook: Playbook, *, account: Account | None = None
) -> CheckResult:
    """Exactly one clear ask: a question, or an explicit request like "let me know"."""
    asks = count_asks(draft.body)
    g = playbook.guardrails
    finding = ""
    if len(asks) < g.min_asks:
        finding = "no clear ask"
    elif len(asks) > g.max_asks:
        finding = f"{len(asks)} asks, allowed {g.max_asks}: {_quote(asks)}"
    return _result(
        "single_ask",
        asks if len(asks) > g.max_asks else [],
        finding,
        "End with exactly one short, low-pressure question and ask nothing else.",
        score=0.5 if asks else 0.0,
    )


def no_urgency(
    draft: Draft, facts: Sequence[Fact], playbook: Playbook, *, account: Account | None = None
) -> CheckResult:
    spans = _matches(playbook.guardrails.urgency_patterns, _text(draft))
    return _result(
        "no_urgency",
        spans,
        f"fake urgency: {_quote(spans)}" if spans else "",
        f"Remove the pressure ({_quote(spans)}); there is no deadline.",
    )


def no_pitch_to_open_source(
    draft: Draft, facts: Sequence[Fact], playbook: Playbook, *, account: Account | None = None
) -> CheckResult:
    """A first touch to an open-source user asks about their usage; it does not sell."""
    first_touch = draft.step in ("linkedin_connect", "email")
    if account is None or not account.open_source_user or not first_touch:
        return _result("no_pitch_to_open_source", [], "", "")
    spans = _matches(playbook.guardrails.pitch_patterns, _text(draft))
    return _result(
        "no_pitch_to_open_source",
        spans,
        f"sales pitch to an open-source user: {_quote(spans)}" if spans else "",
        "They use our open-source project: drop the pitch and ask how they use it "
        "or what they would change.",
    )


ALL_CHECKS: tuple[Check, ...] = (
    fact_coverage,
    placeholders,
    length,
    banned_phrases,
    single_ask,
    no_urgency,
    no_pitch_to_open_source,
)
