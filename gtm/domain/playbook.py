"""The playbook: tiers, caps, guardrails, goals and escalations, as validated configuration.

The product reads every playbook number from here. The default ships as
`gtm/domain/playbook.default.yaml`; a team copies it and passes `--playbook FILE`.
"""

from __future__ import annotations

import hashlib
import re
from datetime import time
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gtm.domain.crm_lists import CrmLists
from gtm.domain.events import ReplySignal
from gtm.domain.models import Account, Step
from gtm.domain.qualification import Rules as QualificationRules
from gtm.domain.sequences import Sequences

__all__ = [
    "CrmLists",
    "Goals",
    "JudgeVerdicts",
    "Metrics",
    "Playbook",
    "PlaybookError",
    "RedFlags",
    "Research",
    "TierMatch",
    "load_playbook",
    "DEFAULT_PLAYBOOK",
]

DEFAULT_PLAYBOOK = "playbook.default.yaml"


class PlaybookError(ValueError):
    """The playbook file cannot be read or does not validate. The message names file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _compile(patterns: tuple[str, ...], field: str) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(rf"(?<!\w){p}(?!\w)", re.IGNORECASE))
        except (re.error, OverflowError) as exc:
            raise ValueError(f"{field}: {p!r} is not a valid pattern ({exc})") from exc
        except RecursionError:
            raise ValueError(f"{field}: {p!r} is nested too deeply to compile") from None
    return tuple(compiled)


class Segment(_Strict):
    name: str
    keywords: tuple[str, ...] = Field(min_length=1)


class Tier(_Strict):
    tier: int = Field(ge=1, strict=True)
    name: str
    review: Literal["always", "batch"] = Field(
        description="'always': a person reviews every draft; 'batch': drafts may be batch-approved."
    )
    segments: tuple[Segment, ...] = Field(min_length=1)
    examples: tuple[str, ...] = ()


class Competitor(_Strict):
    name: str
    domain: str


class Caps(_Strict):
    linkedin_profile_visits_per_week: int = Field(ge=0, strict=True)
    linkedin_connection_requests_per_week: int = Field(ge=0, strict=True)
    linkedin_messages_per_week: int = Field(ge=0, strict=True)
    emails_per_day: int = Field(ge=0, strict=True)


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Pacing(_Strict):
    """How live providers spread actions out: working hours, daily share, random gaps."""

    applies_to: Literal["live", "all", "none"] = Field(
        default="live", description="live: Dux-Soup and SMTP only; all: local twins too."
    )
    timezone: str = Field(default="UTC", description="The sender's IANA time zone.")
    working_days: tuple[Weekday, ...] = Field(
        default=("mon", "tue", "wed", "thu", "fri"), min_length=1
    )
    start: time = time(9, 0)
    end: time = time(17, 30)
    min_gap_seconds: float = Field(default=60, ge=0)
    max_gap_seconds: float = Field(default=240, ge=0)
    spread_weekly_caps: bool = Field(
        default=True, description="Cap each working day at the weekly cap / working days."
    )
    max_inline_wait_seconds: float = Field(
        default=600, ge=0, description="Wait this long for a gap inside a run; longer defers."
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: 'America', long
            raise ValueError(f"{v!r} is not an IANA time zone (e.g. Europe/Berlin)") from exc
        return v

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock(cls, v: object) -> object:
        if isinstance(v, int | float):  # YAML reads an unquoted 17:30 as the number 1050
            raise ValueError(f"{v!r} is not a time of day; write it in quotes, like '17:30'")
        return v

    @field_validator("start", "end")
    @classmethod
    def _local(cls, v: time) -> time:
        if v.tzinfo is not None:
            raise ValueError("give the time without a zone offset; `timezone` sets the zone")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> Pacing:
        if self.max_gap_seconds < self.min_gap_seconds:
            raise ValueError("max_gap_seconds must be at least min_gap_seconds")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ChannelLimits(_Strict):
    linkedin_note_max_chars: int = Field(gt=0, strict=True)
    linkedin_message_max_chars: int = Field(gt=0, strict=True)
    email_subject_max_chars: int = Field(gt=0, strict=True)
    email_body_max_chars: int = Field(gt=0, strict=True)
    email_body_max_words: int = Field(gt=0, strict=True)

    def max_chars(self, step: Step) -> int:
        """How long a step's message body may be: the writer is told this figure and the `length`
        check enforces it. (A profile visit sends no text; it falls back to the email body's.)"""
        if step == "linkedin_connect":
            return self.linkedin_note_max_chars
        if step == "linkedin_message":
            return self.linkedin_message_max_chars
        return self.email_body_max_chars


class Cooldown(_Strict):
    person_days: int = Field(ge=0, strict=True)
    account_days: int = Field(ge=0, strict=True)


class Guardrails(_Strict):
    min_cited_facts: int = Field(ge=0, strict=True)
    max_revisions: int = Field(ge=0, strict=True)
    min_asks: int = Field(ge=0, strict=True)
    max_asks: int = Field(ge=1, strict=True)
    banned_phrases: tuple[str, ...]
    pitch_phrases: tuple[str, ...]
    urgency_phrases: tuple[str, ...]
    injection_phrases: tuple[str, ...]
    role_words: tuple[str, ...]
    max_genericness: float = Field(ge=0, le=1)
    near_duplicate_shingle: float = Field(gt=0, le=1)
    near_duplicate_cosine: float = Field(gt=0, le=1)
    batch_max_duplicate_share: float = Field(gt=0, le=1)

    @model_validator(mode="after")
    def _asks(self) -> Guardrails:
        if self.min_asks > self.max_asks:
            raise ValueError(f"min_asks ({self.min_asks}) is above max_asks ({self.max_asks})")
        return self

    @field_validator("banned_phrases", "pitch_phrases", "urgency_phrases", "injection_phrases")
    @classmethod
    def _valid_patterns(cls, v: tuple[str, ...], info: object) -> tuple[str, ...]:
        _compile(v, getattr(info, "field_name", "pattern"))
        return v

    @cached_property
    def banned_patterns(self) -> tuple[re.Pattern[str], ...]:
        return _compile(self.banned_phrases, "banned_phrases")

    @cached_property
    def pitch_patterns(self) -> tuple[re.Pattern[str], ...]:
        return _compile(self.pitch_phrases, "pitch_phrases")

    @cached_property
    def urgency_patterns(self) -> tuple[re.Pattern[str], ...]:
        return _compile(self.urgency_phrases, "urgency_phrases")

    @cached_property
    def role_patterns(self) -> tuple[re.Pattern[str], ...]:
        return _compile(tuple(re.escape(w) for w in self.role_words), "role_words")

    @cached_property
    def injection_patterns(self) -> tuple[re.Pattern[str], ...]:
        return _compile(self.injection_phrases, "injection_phrases")


class JudgeVerdicts(_Strict):
    """How `gtm eval --judge` turns the LLM judge's 1-5 grades into the labels' verdicts, to
    measure how often the judge agrees with people (its calibration)."""

    pass_min: int = Field(default=3, ge=1, le=5)
    """A labeled draft passes when every dimension is graded at least this."""
    personalized_min: int = Field(default=3, ge=1, le=5)
    """A labeled message is personalized when its personalization_depth is at least this."""


class Evals(_Strict):
    """What `gtm eval` tracks against its baseline, and how far a metric may fall."""

    max_regression: float = Field(ge=0, le=1)
    thresholds: dict[str, float] = Field(default_factory=dict)
    """Per-metric allowed drop (glob pattern → drop), overriding `max_regression`."""
    tracked: tuple[str, ...] = Field(min_length=1)
    judge: JudgeVerdicts = JudgeVerdicts()

    def allowed_drop(self, metric: str) -> float:
        import fnmatch

        hits = [v for p, v in self.thresholds.items() if fnmatch.fnmatchcase(metric, p)]
        return max(hits) if hits else self.max_regression


class Goals(_Strict):
    """Weekly targets (opportunities: monthly). Each is optional: a goal the playbook does not
    set is not shown in the funnel report, never invented."""

    accept_rate: float | None = Field(default=None, ge=0, le=1)
    response_rate: float | None = Field(default=None, ge=0, le=1)
    meetings_per_week: int | None = Field(default=None, ge=0, strict=True)
    email_responses_per_week: int | None = Field(default=None, ge=0, strict=True)
    qualified_opportunities_per_month: int | None = Field(default=None, ge=0, strict=True)


class RedFlags(_Strict):
    """Thresholds that raise an alert, each optional (unset: never evaluated). A rate flag is
    evaluated only with at least `min_sample` people in its denominator, and "no meetings" only
    for a completed week in which at least `min_sample` people were messaged: three requests
    do not raise an alarm."""

    accept_rate_below: float | None = Field(default=None, ge=0, le=1)
    response_rate_below: float | None = Field(default=None, ge=0, le=1)
    meetings_per_week_below: int | None = Field(default=None, ge=0, strict=True)
    min_sample: int = Field(default=20, ge=1, strict=True)


class Metrics(_Strict):
    """How the funnel counts: how long a request or message gets before it counts in a rate's
    denominator, and which reply signals make a reply positive."""

    accept_window_days: int = Field(
        default=7,
        ge=0,
        strict=True,
        description="A connection request counts in the accept rate once it is this old.",
    )
    response_window_days: int = Field(
        default=7,
        ge=0,
        strict=True,
        description="A message or email counts in a response rate once it is this old.",
    )
    positive_signals: tuple[ReplySignal, ...] = Field(
        default=("interested", "meeting_request"),
        min_length=1,
        description="A reply carrying one of these signals is a positive reply.",
    )


class EscalationRule(_Strict):
    signal: Literal[
        "senior_reply",
        "tier1_interest",
        "meeting_request",
        "product_feedback",
        "competitor_mentioned",
        "opt_out",
    ]
    action: Literal[
        "alert_owner_now", "notify_owner", "create_task", "record", "suppress_everywhere"
    ]
    description: str
    due_hours: int | None = Field(default=None, ge=1, strict=True)


class Escalations(_Strict):
    senior_title_keywords: tuple[str, ...]
    rules: tuple[EscalationRule, ...]
    default_owner: str
    opt_out_phrases: tuple[str, ...] = Field(
        default=(),
        description="Regular expressions (any case, whole words) that make a reply an opt-out "
        "by rule, before and regardless of any model.",
    )

    @field_validator("opt_out_phrases")
    @classmethod
    def _valid_opt_out(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        _compile(v, "opt_out_phrases")
        return v

    @cached_property
    def opt_out_patterns(self) -> tuple[re.Pattern[str], ...]:
        return _compile(self.opt_out_phrases, "opt_out_phrases")

    def is_senior(self, title: str) -> bool:
        t = title.lower()
        return any(
            re.search(rf"(?<!\w){re.escape(k)}(?!\w)", t) for k in self.senior_title_keywords
        )


class Research(_Strict):
    """How research treats what it finds."""

    max_fact_age_days: int | None = Field(
        default=None,
        ge=1,
        strict=True,
        description="A website fact whose page is dated longer ago than this, or a LinkedIn "
        "profile fact seen longer ago, is marked stale and the writer is told it is not news; "
        "None: no limit.",
    )


class TierMatch(_Strict):
    """Which tier and segment an account falls in, and the words that decided it."""

    tier: int
    segment: str
    matched: str = Field(description="The keyword that matched.")
    review: Literal["always", "batch"]


class Playbook(_Strict):
    """The whole playbook. Load with `load_playbook`."""

    model_config = ConfigDict(extra="forbid", frozen=True, ignored_types=(cached_property,))

    name: str
    version: str
    tiers: tuple[Tier, ...] = Field(min_length=1)
    skip_out_of_tier: bool
    competitors: tuple[Competitor, ...]
    caps: Caps
    pacing: Pacing = Pacing()
    channels: ChannelLimits
    cooldown: Cooldown
    guardrails: Guardrails
    goals: Goals = Goals()
    red_flags: RedFlags = RedFlags()
    metrics: Metrics = Metrics()
    escalations: Escalations
    evals: Evals
    sequences: Sequences = Sequences()
    research: Research = Research()
    crm_lists: CrmLists = CrmLists()
    qualification: QualificationRules = QualificationRules()
    contacts_per_account: int = Field(
        default=1,
        ge=1,
        le=5,
        strict=True,
        description="How many people of one account a campaign may reach, best ranked first "
        "(champion titles, then the economic buyer, then list order), in one coordinated "
        "sequence: a reply from one stops the others. 1: the first eligible person only.",
    )
    source: str = Field(default="", description="File the playbook was read from.")

    @property
    def fingerprint(self) -> str:
        """sha256 of what the playbook says (not where it was read from): two files that
        validate to the same rules share it, and any change of a cap, tier or rule changes it."""
        return hashlib.sha256(self.model_dump_json(exclude={"source"}).encode()).hexdigest()

    def as_json(self) -> str:
        """The rules as JSON, to record with a campaign; `Playbook.model_validate_json` reads
        them back."""
        return self.model_dump_json(exclude={"source"})

    @field_validator("tiers")
    @classmethod
    def _ordered(cls, v: tuple[Tier, ...]) -> tuple[Tier, ...]:
        numbers = [t.tier for t in v]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"tier numbers must be unique, got {numbers}")
        return tuple(sorted(v, key=lambda t: t.tier))

    def tier_of(self, account: Account) -> TierMatch | None:
        """The highest-priority tier whose keywords appear in the account's own words."""
        haystack = " \n ".join(
            [account.segment, account.description, *account.tech_stack, *account.signals]
        ).lower()
        for tier in self.tiers:
            for segment in tier.segments:
                for kw in segment.keywords:
                    if re.search(rf"(?<!\w){re.escape(kw.lower())}(?!\w)", haystack):
                        return TierMatch(
                            tier=tier.tier, segment=segment.name, matched=kw, review=tier.review
                        )
        return None

    def competitor_of(self, account: Account) -> Competitor | None:
        domain = account.domain.lower()
        company = account.company.strip().lower()
        for c in self.competitors:
            if domain == c.domain.lower() or domain.endswith("." + c.domain.lower()):
                return c
            if company == c.name.lower():
                return c
        return None


_PLAIN_KEY = re.compile(r"[^\s:'\"]+")


def _key(part: str | int) -> str:
    """A path segment as the message shows it: names bare, odd keys ('', 'a b') quoted."""
    text = str(part)
    if isinstance(part, int) or (_PLAIN_KEY.fullmatch(text) and text.isprintable()):
        return text
    return repr(text)


def _format_errors(path: str, exc: ValidationError) -> str:
    lines = [f"{path}: the playbook does not validate:"]
    for err in exc.errors():
        where = ".".join(_key(p) for p in err["loc"]) or "(top level)"
        msg = " ".join(str(err["msg"]).split())
        lines.append(f"  {path}: {where}: {msg}")
    return "\n".join(lines)


def _yaml_problem(where: str, exc: yaml.YAMLError) -> str:
    """One line: file, line and column, and what the parser found."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = " ".join(f"{exc.context or ''} {exc.problem or ''}".split()) or "syntax error"
        return f"{where}: not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
    return f"{where}: not valid YAML ({' '.join(str(exc).split())})"


def load_playbook(path: str | Path | None = None) -> Playbook:
    """Read and validate a playbook file; `None` loads the shipped default."""
    if path is None:
        text = resources.files("gtm.domain").joinpath(DEFAULT_PLAYBOOK).read_text(encoding="utf-8")
        where = f"gtm/domain/{DEFAULT_PLAYBOOK}"
    else:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise PlaybookError(f"{where}: no such playbook file") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise PlaybookError(f"{where}: cannot read the playbook ({exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlaybookError(_yaml_problem(where, exc)) from exc
    except RecursionError:
        raise PlaybookError(f"{where}: not valid YAML (nested too deeply)") from None
    if not isinstance(data, dict):
        raise PlaybookError(f"{where}: expected a mapping at the top level")
    data["source"] = where
    try:
        return Playbook.model_validate(data)
    except ValidationError as exc:
        raise PlaybookError(_format_errors(where, exc)) from exc
