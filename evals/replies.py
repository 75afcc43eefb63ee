"""Reply classification, the deterministic half: what the person newly wrote, the opt-out and
out-of-office rules, and combining them with a model's answer. No I/O: the model call lives in
`evals.reply_classifier`, and this module only judges what it returned.

The order is the point. Opt-out is decided by the playbook's phrases (and the subject line)
before any model is asked, so a weak or absent model can never miss one; out-of-office is decided
by the RFC 3834 headers when the mailbox gave them. The model adds the other signals, and every
signal it claims must come with a quote that really is in the new text: a quote that is not is
dropped, and a signal left without a quote is dropped with it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import cache
from typing import Literal

from mailparser_reply import EmailReplyParser  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field

from gtm.domain.events import REPLY_SIGNALS, ReplySignal
from gtm.domain.playbook import Playbook, load_playbook

__all__ = [
    "ClassifiedReply",
    "Evidence",
    "ReplyAnswer",
    "SignalEvidence",
    "classify",
    "new_text",
    "opt_out",
    "out_of_office",
    "unquoted_text",
    "verified",
]

_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pl", "sv", "da"]

# "On <date>, <name> wrote:" in the languages the parser misses or only half-handles (its
# Spanish pattern wants two spaces before "escribió"). The line may be wrapped by the client.
_ATTRIBUTION = re.compile(
    r"^[ >]*(?:On|Am|Le|El|Il|Op|Em|Den|På)\s(?:.|\n(?![ >]*\n)){0,300}?"
    r"(?:wrote|schrieb|a\s+écrit|escribió|ha\s+scritto|schreef|escreveu|skrev)\b[^\n]{0,200}:\s*$",
    re.MULTILINE | re.IGNORECASE,
)
_SEPARATOR = re.compile(r"^\s*(?:[_-]{5,}|-+ ?(?:Original Message|Ursprüngliche Nachricht).*)\s*$")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_SIGNOFF_TAIL = re.compile(r"^[^\W\d_][\w.'-]*(?: [^\W\d_][\w.'-]*)?[.!]?$")

EvidenceSource = Literal["rule", "header", "model"]


class Evidence(BaseModel):
    """One signal the model sees, with the words of the reply that show it."""

    signal: ReplySignal
    quote: str = Field(description="Words copied exactly from the reply that show this signal.")


class ReplyAnswer(BaseModel):
    """The model's structured answer for one reply."""

    signals: list[ReplySignal] = Field(
        default_factory=list,
        description="Every signal the reply carries; an empty list when it carries none.",
    )
    evidence: list[Evidence] = Field(
        default_factory=list,
        description="For each signal, a short quote copied exactly from the reply.",
    )


class SignalEvidence(BaseModel):
    """Why a signal was kept: the quote (or header) and who found it."""

    model_config = ConfigDict(frozen=True)

    signal: ReplySignal
    quote: str
    source: EvidenceSource


class ClassifiedReply(BaseModel):
    """A reply's signals, each with its evidence, and what was thrown away and why."""

    model_config = ConfigDict(frozen=True)

    text: str = Field(description="The new text that was classified (no thread, no signature).")
    signals: tuple[ReplySignal, ...] = Field(description="In the playbook's order.")
    evidence: tuple[SignalEvidence, ...] = ()
    dropped: tuple[Evidence, ...] = Field(
        default=(), description="Model claims whose quote is not in the new text, or no quote."
    )
    opt_out_by: EvidenceSource | None = Field(
        default=None,
        description="'rule' or 'header' when the rules decided it; 'model' when only the model "
        "saw it (with a verified quote): a person should confirm that one.",
    )
    model_error: str | None = None


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE).translate(_QUOTES)


def _is_signoff(block: str) -> bool:
    """Whether a block the parser calls a signature really is one: a short block whose first
    line is a bare sign-off ("Best,", "Thanks, Sam", "Mit freundlichen Grüßen"). The parser
    cuts at any line starting "Thanks," — "Thanks, but remove me" must stay in the text."""
    lines = [ln for ln in block.strip().splitlines() if ln.strip()]
    if not lines or len(lines) > 10:
        return False
    first = lines[0].strip()
    if first.startswith("--") or first.startswith("__"):
        return True
    head, _, tail = first.partition(",")
    tail = tail.strip()
    return len(head.split()) <= 4 and (not tail or bool(_SIGNOFF_TAIL.match(tail)))


def _first_reply(body: str) -> tuple[str, str]:
    """(the reply before any quoted thread, the signature block the parser found in it)."""
    text = _normalise(body).replace("\r\n", "\n")
    cut = _ATTRIBUTION.search(text)
    if cut:
        text = text[: cut.start()]
    message = EmailReplyParser(languages=_LANGUAGES).read(text)
    if not message.replies or message.replies[0].headers:
        return "", ""  # the body starts with a quoted header: nothing new was written
    reply = message.replies[0]
    lines = [ln for ln in reply.full_body.splitlines() if not ln.lstrip().startswith(">")]
    while lines and (not lines[-1].strip() or _SEPARATOR.match(lines[-1])):
        lines.pop()
    return "\n".join(lines).strip(), reply.signatures or ""


def unquoted_text(body: str) -> str:
    """The reply without its quoted thread ("On … wrote:", "Am … schrieb", Outlook "From:/Sent:"
    blocks, "> " lines), signature kept. The opt-out rules read this: a signature cut in the
    wrong place must never hide an opt-out."""
    return _first_reply(body)[0]


def new_text(body: str) -> str:
    """What the person newly wrote: no quoted thread, and no signature when the signature is
    plainly one. Empty when the reply is only a quoted thread."""
    text, signature = _first_reply(body)
    if signature and _is_signoff(signature):
        at = text.rfind(signature.strip().splitlines()[0].strip())
        if at > 0:
            text = text[:at].rstrip()
    return text


@cache
def _shipped_opt_out() -> tuple[re.Pattern[str], ...]:
    return load_playbook().escalations.opt_out_patterns


def _opt_out_patterns(playbook: Playbook | None) -> tuple[re.Pattern[str], ...]:
    """The playbook's phrases; a playbook written before the field existed gets the shipped
    ones, so an old file can never switch the rule off."""
    own = playbook.escalations.opt_out_patterns if playbook is not None else ()
    return own or _shipped_opt_out()


def _header(headers: Mapping[str, str] | None, name: str) -> str:
    for k, v in (headers or {}).items():
        if k.lower() == name.lower():
            return v
    return ""


def opt_out(
    text: str, headers: Mapping[str, str] | None = None, playbook: Playbook | None = None
) -> str | None:
    """The words that make this reply an opt-out by rule, or None. Reads `text` as given (pass
    `unquoted_text(body)`) both line by line and with line breaks folded, and the subject."""
    subject = _normalise(_header(headers, "Subject"))
    subject = re.sub(r"^\s*(?:(?:re|aw|fw|fwd|wg|tr|rv)\s*:\s*)+", "", subject, flags=re.I)
    t = _normalise(text)
    for candidate in (t, " ".join(t.split()), subject):
        for p in _opt_out_patterns(playbook):
            if m := p.search(candidate):
                return m.group(0).strip() or "stop"
    return None


_AUTO_SUBJECT = re.compile(
    r"^\s*(?:automatic reply|auto[- ]?reply|autoreply|out of (?:the )?office|abwesenheitsnotiz|"
    r"automatische antwort|r[ée]ponse automatique|absence|respuesta autom[áa]tica|"
    r"fuera de la oficina|risposta automatica|automatisch antwoord)\b",
    re.IGNORECASE,
)


def out_of_office(headers: Mapping[str, str] | None) -> str | None:
    """The header that marks an automatic reply, or None. RFC 3834 `Auto-Submitted:
    auto-replied` is the standard; `X-Autoreply`, `X-Autorespond` and `Precedence: auto_reply`
    are common; so is an "Automatic reply:" subject. (`X-Auto-Response-Suppress` asks others not
    to auto-reply; it does not mark one.)"""
    submitted = _header(headers, "Auto-Submitted").strip().lower()
    if submitted.startswith("auto-replied"):
        return f"Auto-Submitted: {submitted}"
    for name in ("X-Autoreply", "X-Autorespond"):
        if (v := _header(headers, name).strip()) and v.lower() not in {"no", "false", "0"}:
            return f"{name}: {v}"
    if _header(headers, "Precedence").strip().lower() == "auto_reply":
        return "Precedence: auto_reply"
    subject = _header(headers, "Subject")
    if _AUTO_SUBJECT.match(_normalise(subject)):
        return f"Subject: {subject.strip()}"
    return None


def _fold(s: str) -> str:
    return " ".join(_normalise(s).casefold().split())


def verified(quote: str, text: str) -> bool:
    """Whether `quote` is really in `text` (any case, any spacing, straight or curly quotes).
    Too short to mean anything ("a", "ok") counts as not found."""
    q = _fold(quote).strip(" .,;:!?\"'…")
    return len(q) >= 3 and any(c.isalpha() for c in q) and q in _fold(text)


def classify(
    body: str,
    headers: Mapping[str, str] | None,
    answer: ReplyAnswer | None,
    playbook: Playbook | None = None,
    *,
    model_error: str | None = None,
) -> ClassifiedReply:
    """Rules first (opt-out from the text and subject, out-of-office from headers), then the
    model's `answer` (None: rules only), keeping only claims whose quote is in the reply."""
    unquoted = unquoted_text(body)
    evidence: list[SignalEvidence] = []
    opt_out_by: EvidenceSource | None = None
    if hit := opt_out(unquoted, headers, playbook):
        evidence.append(SignalEvidence(signal="opt_out", quote=hit, source="rule"))
        opt_out_by = "rule"
    if hit := out_of_office(headers):
        evidence.append(SignalEvidence(signal="out_of_office", quote=hit, source="header"))
    dropped: list[Evidence] = []
    if answer is not None:
        quoted = {e.signal for e in answer.evidence}
        dropped += [Evidence(signal=s, quote="") for s in dict.fromkeys(answer.signals)]
        dropped = [d for d in dropped if d.signal not in quoted]
        for e in answer.evidence:
            if not verified(e.quote, unquoted):
                dropped.append(e)
            elif not any(x.signal == e.signal for x in evidence):
                evidence.append(SignalEvidence(signal=e.signal, quote=e.quote, source="model"))
                if e.signal == "opt_out":
                    opt_out_by = "model"
    found = {e.signal for e in evidence}
    return ClassifiedReply(
        text=new_text(body),
        signals=tuple(s for s in REPLY_SIGNALS if s in found),
        evidence=tuple(evidence),
        dropped=tuple(dropped),
        opt_out_by=opt_out_by,
        model_error=model_error,
    )
