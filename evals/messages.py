"""Labeled real-world messages: the set the research-free specificity score is measured on.

Each item is a cold message copied verbatim from a public page (a teardown, a playbook, a
template collection), with its source link and a human label: `personalized` when the text says
something true of its recipient that could not be sent to anyone else, `generic` when it would
fit anyone. The set is split into a development part and a held-out part
(`DEV_MESSAGES`, `HELDOUT_MESSAGES`); report figures on the held-out part only.

The files live outside `evals/datasets/` on purpose: `load_datasets` reads every YAML file
under that folder and would reject this shape. A malformed file fails with
`file: item id: field: reason`.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError

__all__ = [
    "DEV_MESSAGES",
    "HELDOUT_MESSAGES",
    "LabeledMessage",
    "MessageSetError",
    "load_messages",
]

_HERE = Path(__file__).parent / "labeled_messages"
DEV_MESSAGES = _HERE / "dev.yaml"
HELDOUT_MESSAGES = _HERE / "heldout.yaml"


class MessageSetError(ValueError):
    """A message file cannot be read or an item does not validate; the message says where."""


class LabeledMessage(BaseModel):
    """One published message, where it came from, and what it shows."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str = Field(min_length=1, description="Unique across both splits.")
    source_url: HttpUrl = Field(description="The page or file the text was copied from.")
    source_title: str = Field(min_length=1)
    retrieved: date = Field(description="When the source was read.")
    channel: Literal["email", "linkedin", "unknown"]
    label: Literal["generic", "personalized"] = Field(description="What the text itself shows.")
    page_verdict: Literal["good", "bad", "none"] = Field(
        description="The source's own opinion of the message, if it gives one."
    )
    note: str = Field(min_length=1, description="Why the label.")
    text: str = Field(min_length=1, description="The message verbatim, subject line included.")


class _MessageFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, object]] = Field(min_length=1)


def _item(path: Path, i: int, raw: dict[str, object]) -> LabeledMessage:
    where = raw.get("id") if isinstance(raw.get("id"), str) else f"#{i + 1}"
    # YAML gives dates and URLs as str/date; strict mode wants them validated from JSON types.
    data = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in raw.items()}
    try:
        return LabeledMessage.model_validate_json(json.dumps(data))
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(item)'}: {e['msg']}" for e in exc.errors()
        )
        raise MessageSetError(f"{path}: {where}: {reasons}") from None


def load_messages(path: Path) -> list[LabeledMessage]:
    """Read one message file (`messages:` list); ids must be unique within it."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MessageSetError(f"{path}: cannot read: {exc}") from None
    try:
        items = _MessageFile.model_validate(data).messages
    except ValidationError as exc:
        raise MessageSetError(
            f"{path}: expected a top-level `messages:` list of mappings ({exc.errors()[0]['msg']})"
        ) from None
    out = [_item(path, i, raw) for i, raw in enumerate(items)]
    seen: set[str] = set()
    for m in out:
        if m.id in seen:
            raise MessageSetError(f"{path}: {m.id}: id used twice")
        seen.add(m.id)
    return out
