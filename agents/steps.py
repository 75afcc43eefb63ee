"""Which step carries a message and which prompt writes it: the writer's plain facts.

They live apart from `agents.personalize` (which re-exports them) because listings need them
too: `gtm status` names a sequence's steps and the campaign book lists the writer's prompts,
and neither should load the writer's model client and LangGraph runtime to do so (issue 20).
"""

from __future__ import annotations

from gtm.domain.models import Channel, Step
from gtm.domain.playbook import Playbook

__all__ = ["PROMPT_FOR_STEP", "first_step", "step_at"]

PROMPT_FOR_STEP: dict[Step, str] = {
    "linkedin_connect": "personalize_linkedin_note",
    "linkedin_message": "personalize_linkedin_message",
    "email": "personalize_email",
}
"""The prompt that writes each step's message."""


def first_step(channel: Channel) -> Step:
    """The step that carries the first message on a channel."""
    return "linkedin_connect" if channel == "linkedin" else "email"


def step_at(channel: Channel, position: int, playbook: Playbook) -> Step:
    """The step that carries the message at `position` of the channel's sequence (0: the first
    touch). A position the playbook no longer has falls back to the first touch's step."""
    follow = playbook.sequences.follow_up(channel, position) if position else None
    return follow.step if follow is not None else first_step(channel)
