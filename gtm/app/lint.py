"""`gtm lint`: read messages from a file a team already has and score each without research.

Inputs: a text or Markdown file (messages separated by a line of `---`, or one message; a first
line `Subject: …` makes it an email), a CSV with a message column, or an email `.eml` (its body,
through the stdlib email parser). Each message gets every guardrail check that needs no research
(`CHECKS`) and the research-free specificity score (`evals.specificity`).

Bad input never stops the others: a message over 100 KB, an empty row or a message that is not
UTF-8 becomes one `error` result naming file and row or message. A file that cannot be read at
all (missing, empty, binary, UTF-16, no message column) raises `LintInputError` with one line.
"""

from __future__ import annotations

import csv
import email
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Literal

from evals.checks import (
    banned_phrases,
    length,
    no_injected_instructions,
    no_urgency,
    placeholders,
    single_ask,
)
from evals.context import Check, CheckContext
from evals.specificity import Span, SpecificityScore, specificity
from gtm.domain.models import CheckResult, Draft, Step
from gtm.domain.playbook import Playbook

__all__ = [
    "CHECKS",
    "MAX_MESSAGE_BYTES",
    "MESSAGE_COLUMNS",
    "Finding",
    "InputKind",
    "LintInputError",
    "LintResult",
    "Message",
    "Source",
    "lint_bytes",
    "lint_message",
    "read_messages",
]

MAX_MESSAGE_BYTES = 100 * 1024
MESSAGE_COLUMNS = ("message", "body", "text")
"""CSV columns tried, in order, when `--column` is not given (any case)."""

CHECKS: tuple[Check, ...] = (
    placeholders,
    length,
    banned_phrases,
    single_ask,
    no_urgency,
    no_injected_instructions,
)
"""The checks that need no research, contact or batch. The rest (fact coverage, groundedness,
genericness, pitch to open-source users, near-duplicates, something new) need a campaign."""

InputKind = Literal["auto", "text", "csv", "eml"]
StepChoice = Literal["auto", "linkedin_connect", "linkedin_message", "email"]

_SEPARATOR = re.compile(r"^[ \t]*-{3,}[ \t]*$")
_SUBJECT = re.compile(r"^[ \t]*subject:[ \t]*(.*)$", re.IGNORECASE)
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


class LintInputError(ValueError):
    """The file cannot be linted at all; the message is one line naming it."""


@dataclass(frozen=True)
class Source:
    """Where a message came from: the file, and its line (text) or row (CSV)."""

    file: str
    line: int | None = None
    row: int | None = None

    def label(self) -> str:
        if self.row is not None:
            return f"{self.file} row {self.row}"
        if self.line is not None:
            return f"{self.file}:{self.line}"
        return self.file

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "row": self.row}


@dataclass(frozen=True)
class Message:
    """One message to lint, or the one-line reason it cannot be (`problem`)."""

    index: int
    source: Source
    body: str
    subject: str | None = None
    problem: str = ""

    @property
    def text(self) -> str:
        """What is scored, and what span offsets point into: the subject line, then the body."""
        return f"{self.subject}\n{self.body}" if self.subject else self.body


@dataclass(frozen=True)
class Finding:
    """One check's verdict, its spans located in the message text."""

    check: str
    passed: bool
    finding: str
    instruction: str
    spans: tuple[Span, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "check": self.check,
            "passed": self.passed,
            "finding": self.finding,
            "instruction": self.instruction,
            "spans": [s.as_dict() for s in self.spans],
        }


@dataclass(frozen=True)
class LintResult:
    """A message's verdict: `pass`, `fail` (a check or the specificity threshold) or `error`."""

    message: Message
    verdict: Literal["pass", "fail", "error"]
    specificity: SpecificityScore | None = None
    findings: tuple[Finding, ...] = field(default=())
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.message.index,
            "source": self.message.source.as_dict(),
            "verdict": self.verdict,
            "specificity": self.specificity.as_dict() if self.specificity else None,
            "findings": [f.as_dict() for f in self.findings],
            "error": self.error or None,
        }


def lint_bytes(
    data: bytes,
    name: str,
    playbook: Playbook,
    *,
    kind: InputKind = "auto",
    column: str | None = None,
    step: StepChoice = "auto",
    min_specificity: float = 0.5,
) -> list[LintResult]:
    """Read `data` (the file `name`) and lint every message in it, in order."""
    messages = read_messages(data, name, kind=kind, column=column)
    return [lint_message(m, playbook, step=step, min_specificity=min_specificity) for m in messages]


def lint_message(
    msg: Message, playbook: Playbook, *, step: StepChoice = "auto", min_specificity: float = 0.5
) -> LintResult:
    """Every research-free check and the specificity score for one message."""
    if msg.problem:
        return LintResult(msg, "error", error=msg.problem)
    chosen: Step
    if step == "auto":
        chosen = "email" if msg.subject is not None else "linkedin_message"
    else:
        chosen = step
    draft = Draft(
        channel="email" if chosen == "email" else "linkedin",
        step=chosen,
        subject=msg.subject,
        body=msg.body,
        prompt_version="lint",
        model="human",
    )
    ctx = CheckContext(facts=(), playbook=playbook)
    text = msg.text
    findings = [_finding(check(draft, ctx), text) for check in CHECKS]
    spec = specificity(text, playbook)
    low = spec.score < min_specificity
    findings.append(
        Finding(
            "specificity",
            not low,
            f"specificity {spec.score:.2f} is below {min_specificity:.2f}: it could be sent to "
            "almost anyone"
            if low
            else "",
            "Build it around what only this reader would recognise: what they wrote, shipped, "
            "said or are hiring for, with its names, numbers and dates."
            if low
            else "",
            spec.generic if low else (),
        )
    )
    verdict: Literal["pass", "fail"] = "pass" if all(f.passed for f in findings) else "fail"
    return LintResult(msg, verdict, spec, tuple(findings))


def _finding(result: CheckResult, text: str) -> Finding:
    """The check's verdict with each quoted span located in the text (-1 when it quotes
    something that is not there verbatim, like the length check's summary)."""
    spans: list[Span] = []
    at = 0
    for s in result.spans:
        i = text.find(s, at)
        if i < 0:
            i = text.find(s)
        if i >= 0:
            at = i + len(s)
        spans.append(Span(i, i + len(s) if i >= 0 else -1, s, result.check))
    return Finding(result.check, result.passed, result.finding, result.instruction, tuple(spans))


# ------------------------------------------------------------------------------ reading


def read_messages(
    data: bytes, name: str, *, kind: InputKind = "auto", column: str | None = None
) -> list[Message]:
    """The messages of one file; a message that cannot be linted carries its `problem`."""
    if not data.strip():
        raise LintInputError(f"{name}: empty file, no message to lint")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise LintInputError(f"{name}: encoded as UTF-16; save it as UTF-8 and lint it again")
    if b"\x00" in data:
        raise LintInputError(f"{name}: binary file (it contains NUL bytes), not text")
    chosen = kind if kind != "auto" else _kind_of(name)
    if chosen == "eml":
        return [_read_eml(data, name)]
    text = _decode(data)
    if chosen == "csv":
        return _read_csv(text, name, column)
    return _read_text(text, name)


def _kind_of(name: str) -> InputKind:
    lower = name.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(".eml"):
        return "eml"
    return "text"


def _decode(data: bytes) -> str:
    """UTF-8, with or without a byte-order mark. Bytes that are not UTF-8 are kept as surrogates
    (`surrogateescape`) so that only the messages holding them are refused."""
    return data.decode("utf-8-sig", errors="surrogateescape")


def _checked(msg: Message) -> Message:
    """The same message, or one carrying why it cannot be linted."""
    where = f"{msg.source.label()} (message {msg.index})"
    raw = msg.text.encode("utf-8", errors="surrogateescape")
    if not msg.body.strip():
        return _problem(msg, f"{where}: empty message")
    if len(raw) > MAX_MESSAGE_BYTES:
        return _problem(
            msg, f"{where}: {len(raw) / 1024:.0f} KB, over the 100 KB limit; not linted"
        )
    if bad := _NOT_UTF8.search(msg.text):
        byte = ord(bad.group(0)) - 0xDC00
        return _problem(
            msg,
            f"{where}: not UTF-8 text (byte 0x{byte:02X}; tried utf-8 and utf-8-sig); "
            "save the file as UTF-8",
        )
    return msg


def _problem(msg: Message, problem: str) -> Message:
    return Message(msg.index, msg.source, "", None, problem)


def _read_text(text: str, name: str) -> list[Message]:
    segments: list[tuple[int, list[str]]] = []
    current: list[str] = []
    start = 1
    for n, line in enumerate(text.splitlines(), start=1):
        if _SEPARATOR.match(line):
            segments.append((start, current))
            current, start = [], n + 1
        else:
            current.append(line)
    segments.append((start, current))
    # Separators at the very start or end (front-matter style) leave blank segments: not messages.
    while segments and not "".join(segments[0][1]).strip():
        segments.pop(0)
    while segments and not "".join(segments[-1][1]).strip():
        segments.pop()
    out = []
    for i, (first, lines) in enumerate(segments, start=1):
        skip = next((k for k, line in enumerate(lines) if line.strip()), 0)
        lines = lines[skip:]
        subject = None
        if lines and (m := _SUBJECT.match(lines[0])):
            subject, lines = m.group(1).strip(), lines[1:]
        body = "\n".join(lines).strip("\n")
        out.append(_checked(Message(i, Source(name, line=first + skip), body, subject)))
    return out


def _read_csv(text: str, name: str, column: str | None) -> list[Message]:
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, len(text) + 1))  # a big cell is reported, not a crash
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
        except StopIteration:
            raise LintInputError(f"{name}: empty CSV, no header row") from None
        lowered = [h.strip().lower() for h in header]
        wanted = [column.lower()] if column else list(MESSAGE_COLUMNS)
        col = next((lowered.index(w) for w in wanted if w in lowered), None)
        if col is None:
            have = ", ".join(h for h in header if h) or "none"
            want = f"column {column!r}" if column else "a column named message, body or text"
            raise LintInputError(f"{name}: no {want} (columns: {have}); pass --column NAME")
        subj = lowered.index("subject") if "subject" in lowered else None
        out: list[Message] = []
        row_no = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise LintInputError(
                    f"{name}: line {reader.line_num}: not valid CSV ({exc})"
                ) from None
            row_no += 1
            if not any(cell.strip() for cell in row):
                continue  # a blank line between records
            body = row[col] if col < len(row) else ""
            subject = row[subj].strip() if subj is not None and subj < len(row) else None
            source = Source(name, row=row_no)
            out.append(_checked(Message(len(out) + 1, source, body.strip(), subject or None)))
        if not out:
            raise LintInputError(f"{name}: the CSV has a header but no rows")
        return out
    finally:
        csv.field_size_limit(old)


def _read_eml(data: bytes, name: str) -> Message:
    parsed = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    subject = str(parsed.get("subject", "") or "").strip()
    part = parsed.get_body(preferencelist=("plain", "html"))
    source = Source(name)
    if part is None:
        raise LintInputError(f"{name}: the email has no text or HTML body")
    try:
        content = part.get_content()
    except LookupError:
        charset = part.get_content_charset()
        return Message(
            1, source, "", None, f"{name}: the body is in an unknown encoding {charset!r}"
        )
    if not isinstance(content, str):
        raise LintInputError(f"{name}: the email body is not text")
    if part.get_content_subtype() == "html":
        content = _html_text(content)
    return _checked(Message(1, source, content.strip(), subject))


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: Sequence[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        elif tag in ("br", "p", "div", "li", "tr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def _html_text(html: str) -> str:
    parser = _TextOnly()
    parser.feed(html)
    parser.close()
    return re.sub(r"\n{3,}", "\n\n", "".join(parser.parts))
