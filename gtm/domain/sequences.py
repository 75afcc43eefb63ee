"""Sequences: the follow-up steps after a first touch, as the playbook declares them.

Playbook data, not code: a team changes a wait or removes a follow-up in its playbook file, and
`gtm.app.sequences` acts on what it says.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gtm.domain.models import Channel, Step

__all__ = ["SequenceStep", "Sequences"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SequenceStep(_Strict):
    """One follow-up after the first touch: what it sends, and how long after what it waits."""

    action: Literal["message", "email"] = Field(
        description="'message': a LinkedIn message; 'email': an email in the same thread."
    )
    after: Literal["accepted", "previous"] = Field(
        description="'accepted': wait from the connection being accepted (LinkedIn only; "
        "nothing is sent until it is); 'previous': wait from the previous step's send."
    )
    wait_days: int = Field(ge=0, strict=True, description="Days to wait, counted from `after`.")

    @property
    def step(self) -> Step:
        """The provider action that carries this step."""
        return "linkedin_message" if self.action == "message" else "email"


class Sequences(_Strict):
    """Follow-ups per channel, in order, after the first touch (a visit and connection request
    on LinkedIn, the first email). `[]` turns a channel's follow-ups off. Any reply, opt-out,
    bounce, meeting or a reviewer's stop ends a sequence at once."""

    linkedin: tuple[SequenceStep, ...] = ()
    email: tuple[SequenceStep, ...] = ()

    @field_validator("linkedin")
    @classmethod
    def _linkedin(cls, v: tuple[SequenceStep, ...]) -> tuple[SequenceStep, ...]:
        if any(s.action != "message" for s in v):
            raise ValueError("a LinkedIn follow-up is a message (action: message)")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: tuple[SequenceStep, ...]) -> tuple[SequenceStep, ...]:
        if any(s.action != "email" for s in v):
            raise ValueError("an email follow-up is an email (action: email)")
        if any(s.after != "previous" for s in v):
            raise ValueError("an email follow-up waits from the previous email (after: previous)")
        return v

    def follow_up(self, channel: Channel, position: int) -> SequenceStep | None:
        """The step at `position` (1 = the first follow-up), or None past the end."""
        steps = self.linkedin if channel == "linkedin" else self.email
        return steps[position - 1] if 1 <= position <= len(steps) else None
