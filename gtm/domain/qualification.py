"""The qualification card: MEDDIC and product-qualified signals, each with the facts behind it.

Two things live here, both pure data: the playbook's `qualification:` section (`Rules`: which
title words make an economic buyer or a champion, which words in a fact speak of pain, metrics,
criteria or process, the PQL thresholds and the score's weights), and the card research fills
from those rules (`Qualification`, built by `agents.qualify`). A value is either backed by the
ids of research facts or it is "unknown"; nothing is guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gtm.domain.models import FactKind

__all__ = [
    "MEDDIC",
    "UNKNOWN",
    "Element",
    "ElementName",
    "Evidence",
    "PqlRule",
    "PqlSignal",
    "Qualification",
    "Rules",
    "STATE_FIELD",
    "TextRule",
    "TitleRule",
]

UNKNOWN = "unknown"
STATE_FIELD = "qualification"
"""The graph state field that holds a thread's card (`agents.state.State.qualification`)."""

ElementName = Literal[
    "metrics",
    "economic_buyer",
    "decision_criteria",
    "decision_process",
    "identified_pain",
    "champion",
]
MEDDIC: tuple[ElementName, ...] = (
    "metrics",
    "economic_buyer",
    "decision_criteria",
    "decision_process",
    "identified_pain",
    "champion",
)
"""The six elements, in MEDDIC order (the order the card shows them)."""

LABELS: dict[ElementName, str] = {
    "metrics": "Metrics",
    "economic_buyer": "Economic buyer",
    "decision_criteria": "Decision criteria",
    "decision_process": "Decision process",
    "identified_pain": "Identified pain",
    "champion": "Champion",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, ignored_types=(cached_property,))


def _whole(pattern: str) -> str:
    return rf"(?<!\w)(?:{pattern})(?!\w)"


def _check(patterns: tuple[str, ...], field: str) -> tuple[str, ...]:
    for p in patterns:
        try:
            re.compile(_whole(p), re.IGNORECASE)
        except (re.error, OverflowError, RecursionError) as exc:
            raise ValueError(f"{field}: {p!r} is not a valid pattern ({exc})") from None
    return patterns


class TextRule(_Strict):
    """An element found by words in a fact's text (regular expressions, any case, whole words)."""

    words: tuple[str, ...] = ()
    kinds: tuple[FactKind, ...] = Field(
        default=("company", "signal", "website", "person"),
        description="Fact kinds that may back it; our own earlier messages (history) never do.",
    )
    weight: float = Field(default=1, ge=0, description="What a known value adds to the score.")

    @field_validator("words")
    @classmethod
    def _valid(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check(v, "words")

    @cached_property
    def patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(_whole(p), re.IGNORECASE) for p in self.words)


class TitleRule(_Strict):
    """A person found by title words (plain words, any case, whole words) in facts that state a
    title: the contact's title column or a profile headline."""

    titles: tuple[str, ...] = ()
    kinds: tuple[FactKind, ...] = ("person",)
    source_columns: tuple[str, ...] = Field(
        default=("contact_title", "headline"),
        description="Only facts from these columns (the last part of 'file:row:column', any "
        "case and punctuation); empty: any fact of the kinds above.",
    )
    weight: float = Field(default=1, ge=0)

    @cached_property
    def patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(_whole(re.escape(t)), re.IGNORECASE) for t in self.titles)


class PqlRule(_Strict):
    """A product-qualified signal: a number next to one of `words` in a fact, compared with
    `at_least` (a growth figure is in percent)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    words: tuple[str, ...] = Field(min_length=1)
    at_least: float
    weight: float = Field(default=1, ge=0)
    kinds: tuple[FactKind, ...] = ("signal", "company", "website", "history")

    @field_validator("words")
    @classmethod
    def _valid(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check(v, "words")

    @cached_property
    def patterns(self) -> tuple[re.Pattern[str], ...]:
        """Each word on its own (any case, whole words): a fact without one has no figure."""
        return tuple(re.compile(_whole(p), re.IGNORECASE) for p in self.words)


class Rules(_Strict):
    """The playbook's `qualification:` section. Left out, no rule matches anything: every
    element stays unknown, the score is 0 and accounts keep their list order."""

    rank_accounts: bool = Field(
        default=False,
        description="Run accounts by tier, then by score, so the strongest take the caps first.",
    )
    count_stale_facts: bool = Field(
        default=False,
        description="Whether a fact marked stale (a website or profile fact older than the "
        "freshness limit) may back a value.",
    )
    max_evidence: int = Field(default=3, ge=1, strict=True)
    metrics: TextRule = TextRule()
    economic_buyer: TitleRule = TitleRule()
    decision_criteria: TextRule = TextRule()
    decision_process: TextRule = TextRule()
    identified_pain: TextRule = TextRule()
    champion: TitleRule = TitleRule()
    pql: tuple[PqlRule, ...] = ()

    @field_validator("pql")
    @classmethod
    def _unique(cls, v: tuple[PqlRule, ...]) -> tuple[PqlRule, ...]:
        names = [r.name for r in v]
        if len(set(names)) != len(names):
            raise ValueError(f"pql signal names must be unique, got {names}")
        return v

    def rule(self, name: ElementName) -> TextRule | TitleRule:
        rule: TextRule | TitleRule = getattr(self, name)
        return rule

    @property
    def max_score(self) -> float:
        return sum(self.rule(n).weight for n in MEDDIC) + sum(r.weight for r in self.pql)


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Evidence(_Card):
    """One research fact behind a value, and the words in it that matched."""

    fact_id: str
    source: str
    matched: str = Field(description="The span of the fact's text the rule matched.")
    stale: bool = False


class Element(_Card):
    """One MEDDIC element: what research says, or "unknown"."""

    name: ElementName
    value: str = UNKNOWN
    evidence: tuple[Evidence, ...] = ()

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def known(self) -> bool:
        return bool(self.evidence)


class PqlSignal(_Card):
    """One product-qualified signal: the figure research found, against the playbook's bar."""

    name: str
    label: str
    value: str = Field(default=UNKNOWN, description="The figure as the fact wrote it.")
    number: float | None = None
    at_least: float
    met: bool = False
    evidence: tuple[Evidence, ...] = ()

    @property
    def known(self) -> bool:
        return self.number is not None


class Qualification(_Card):
    """The card for one account thread. Every value names the fact ids behind it."""

    contact: str = Field(default="", description="Who the thread writes to.")
    meddic: tuple[Element, ...]
    pql: tuple[PqlSignal, ...] = ()
    score: float = Field(ge=0)
    max_score: float = Field(ge=0)

    def element(self, name: ElementName) -> Element:
        return next(e for e in self.meddic if e.name == name)

    def fact_ids(self) -> set[str]:
        """Every fact id the card cites."""
        evidence = [ev for e in self.meddic for ev in e.evidence]
        evidence += [ev for s in self.pql for ev in s.evidence]
        return {ev.fact_id for ev in evidence}

    @classmethod
    def from_state(cls, value: object) -> Qualification | None:
        """The card as a checkpoint holds it: the object, its plain-data form (a checkpoint
        serializer that does not know the type), or nothing (threads from before the card
        existed). Anything else is not a card: None, never an error on the reviewer's page."""
        if isinstance(value, Qualification):
            return value
        if isinstance(value, Mapping):
            try:
                return cls.model_validate(dict(value))
            except ValidationError:
                return None
        return None
