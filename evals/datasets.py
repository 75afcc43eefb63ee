"""Eval datasets: labeled drafts (what the checks must catch) and accounts to write for.

Two YAML shapes, told apart by their top-level key:

- `cases:` labeled cases: account, contact, facts, a draft and the human verdict with the checks
  it fails. Cases sharing a `batch` name are judged together for near-duplicates.
- `accounts:` the generation set: account, contact and facts; `gtm eval` writes a draft for each
  with the current prompts and model, then scores it.
- `replies:` labeled replies to our outreach: the body as received (quoted thread and all),
  optional headers, and the signals a person reads in it.

A malformed file fails with `file: case id: field: reason`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evals.checks import CHECK_NAMES
from gtm.domain.events import REPLY_SIGNALS, ReplySignal
from gtm.domain.models import Account, Channel, Contact, Draft, Fact, Step

__all__ = [
    "DEFAULT_DATASETS",
    "DatasetError",
    "Datasets",
    "GenerationCase",
    "LabeledCase",
    "ReplyCase",
    "load_datasets",
]

DEFAULT_DATASETS = Path(__file__).parent / "datasets"


class DatasetError(ValueError):
    """A dataset file cannot be read or a case does not validate; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaseAccount(_Strict):
    company: str
    domain: str
    segment: str = ""
    description: str = ""
    open_source_user: bool = False

    def to_account(self, contact: Contact) -> Account:
        return Account(
            account_id=self.domain.lower(),
            company=self.company,
            domain=self.domain.lower(),
            segment=self.segment,
            description=self.description,
            open_source_user=self.open_source_user,
            contacts=(contact,),
            source="eval",
        )


class CaseDraft(_Strict):
    channel: Channel
    step: Step
    subject: str | None = None
    body: str
    cited_fact_ids: tuple[str, ...] = ()


class Expected(_Strict):
    verdict: Literal["pass", "fail"]
    failing: tuple[str, ...] = ()

    @field_validator("failing")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(v) - set(CHECK_NAMES))
        if unknown:
            raise ValueError(f"unknown check(s) {unknown}; known: {', '.join(CHECK_NAMES)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Expected:
        if (self.verdict == "pass") != (not self.failing):
            raise ValueError("verdict 'pass' needs an empty `failing`, 'fail' a non-empty one")
        return self


class LabeledCase(_Strict):
    id: str
    category: str
    note: str = ""
    account: CaseAccount
    contact: Contact
    facts: tuple[Fact, ...]
    draft: CaseDraft
    batch: str | None = None
    expected: Expected

    def as_draft(self) -> Draft:
        return Draft(**self.draft.model_dump(), prompt_version="dataset", model="human")


class GenerationCase(_Strict):
    id: str
    account: CaseAccount
    contact: Contact
    facts: tuple[Fact, ...] = Field(min_length=1)
    channel: Channel = "linkedin"


class ReplyCase(_Strict):
    """A reply as it arrived, and the signals a person reads in its new text."""

    id: str
    category: str
    language: str = Field(default="en", min_length=2, max_length=5)
    note: str = ""
    channel: Channel = "email"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = Field(min_length=1)
    expected: tuple[ReplySignal, ...] = Field(
        description="Every signal in the new text; empty when it carries none."
    )

    @field_validator("expected")
    @classmethod
    def _unique(cls, v: tuple[ReplySignal, ...]) -> tuple[ReplySignal, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"a signal is listed twice in {list(v)}")
        return tuple(s for s in REPLY_SIGNALS if s in v)


class _ReplyFile(_Strict):
    replies: tuple[ReplyCase, ...]


class _LabeledFile(_Strict):
    cases: tuple[LabeledCase, ...]


class _GenerationFile(_Strict):
    accounts: tuple[GenerationCase, ...]


class Datasets(_Strict):
    labeled: tuple[LabeledCase, ...] = ()
    generation: tuple[GenerationCase, ...] = ()
    replies: tuple[ReplyCase, ...] = ()
    files: tuple[str, ...] = ()


def _where(exc: ValidationError, data: dict[str, object], key: str) -> str:
    lines = []
    items = data.get(key)
    for e in exc.errors():
        loc = list(e["loc"])
        where = ".".join(str(x) for x in loc)
        if len(loc) >= 2 and loc[0] == key and isinstance(loc[1], int) and isinstance(items, list):
            item = items[loc[1]]
            case = item.get("id", f"#{loc[1] + 1}") if isinstance(item, dict) else f"#{loc[1]}"
            where = f"{case}: " + ".".join(str(x) for x in loc[2:])
        lines.append(f"{where}: {e['msg']}")
    return "; ".join(lines)


def _load_file(path: Path) -> Datasets:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict) or not ({"cases", "accounts", "replies"} & set(data)):
        raise DatasetError(f"{path}: expected a top-level `cases:`, `accounts:` or `replies:` list")
    key = next(k for k in ("cases", "accounts", "replies") if k in data)
    try:
        if key == "replies":
            return Datasets(replies=_ReplyFile.model_validate(data).replies, files=(str(path),))
        if key == "cases":
            labeled = _LabeledFile.model_validate(data).cases
            return Datasets(labeled=labeled, files=(str(path),))
        generation = _GenerationFile.model_validate(data).accounts
        return Datasets(generation=generation, files=(str(path),))
    except ValidationError as exc:
        raise DatasetError(f"{path}: {_where(exc, data, key)}") from None


def _shown(p: Path) -> str:
    """A path as a person would type it: relative to the working directory when inside it."""
    try:
        return str(p.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.yaml") if q.is_file())
        elif p.exists():
            out.append(p)
        else:
            raise DatasetError(f"{p}: no such file or directory")
    return out


def load_datasets(paths: Iterable[Path] = (DEFAULT_DATASETS,)) -> Datasets:
    """Load every dataset file under `paths`; case ids must be unique across them."""
    labeled: list[LabeledCase] = []
    generation: list[GenerationCase] = []
    replies: list[ReplyCase] = []
    files = _files(paths)
    if not files:
        raise DatasetError(f"no dataset files (*.yaml) under {', '.join(map(str, paths))}")
    seen: dict[str, str] = {}
    for f in files:
        ds = _load_file(f)
        ids = [c.id for c in ds.labeled] + [c.id for c in ds.generation]
        for case_id in ids + [c.id for c in ds.replies]:
            if case_id in seen:
                raise DatasetError(f"{f}: {case_id}: id already used in {seen[case_id]}")
            seen[case_id] = str(f)
        labeled += ds.labeled
        generation += ds.generation
        replies += ds.replies
    return Datasets(
        labeled=tuple(labeled),
        generation=tuple(generation),
        replies=tuple(replies),
        files=tuple(map(_shown, files)),
    )
