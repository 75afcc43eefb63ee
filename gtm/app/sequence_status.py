"""Where each thread's sequence stands, as people read it: `gtm status` and the web inbox.

Read from the ledger row alone (its `seq_pos`, `next_due`, `seq_stopped`, kept current by
`gtm.app.sequences.advance_sequences`) and the campaign's playbook, so listing a thousand
threads opens no checkpoint. Step names and counts come from `Playbook.sequences`, never from
code: a team that adds a follow-up to its playbook sees "step 2 of 4".

The texts are plain; the interfaces escape them (Rich markup in the terminal, HTML in the web),
since a stop reason can quote a reviewer or a reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from agents.steps import first_step
from gtm.app.ledger import ThreadRow
from gtm.domain.models import Step
from gtm.domain.playbook import Playbook

__all__ = ["PAST_FIRST_TOUCH", "SequenceStanding", "fmt_span", "sequence_standing"]

PAST_FIRST_TOUCH = "(seq_pos > 0 OR status = 'sent')"
"""The ledger rows `sequence_standing` has a standing for, as an SQL condition: listings read
these rows only, not every thread of a campaign."""

State = Literal[
    "scheduled",
    "waiting_accept",
    "unscheduled",
    "approval",
    "in_progress",
    "deferred",
    "ended",
    "stopped",
    "finished",
]

_RANK: dict[State, int] = {
    "scheduled": 0,
    "approval": 2,
    "in_progress": 3,
    "deferred": 4,
    "waiting_accept": 5,
    "unscheduled": 6,
    "ended": 7,
    "stopped": 8,
    "finished": 9,
}


def fmt_span(delta: timedelta) -> str:
    """A length of time as a person says it: `2d 3h`, `5h 10m`, `12m` (never negative)."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rem = divmod(minutes, 24 * 60)
    hours, mins = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins}m"
    return f"{mins}m"


def _utc(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class SequenceStanding:
    """One thread's place in its sequence: the step it is at, and what comes next (or why
    nothing does)."""

    row: ThreadRow
    step: int
    """1-based: step 1 is the first touch."""
    steps: int
    """The sequence's length in the campaign's playbook (first touch plus follow-ups)."""
    action: Step | None
    """The provider action of the current step; None when the playbook no longer has it."""
    state: State
    next_action: Step | None
    """The action of the next step, when the playbook has one."""
    due: datetime | None
    """When the next step is due, as the ledger last scheduled it."""
    reason: str
    """Why the sequence stopped (`seq_stopped`), or how its last step ended."""

    @property
    def position(self) -> str:
        """`step 2 of 3: linkedin_message`."""
        what = self.action or "no longer in the playbook"
        return f"step {self.step} of {self.steps}: {what}"

    @property
    def rank(self) -> tuple[int, float, int]:
        """Sort key: the soonest due first, then drafts waiting, then what waits for an event,
        finished sequences last."""
        return (_RANK[self.state], self.due.timestamp() if self.due else 0.0, self.row.id)

    def outlook(self, now: datetime) -> str:
        """What comes next, relative to `now` and in absolute UTC."""
        nxt = self.next_action
        if self.state == "stopped":
            return f"stopped: {self.reason}"
        if self.state == "finished":
            return "finished"
        if self.state == "ended":
            return f"ended: this step {self.reason}; no further step"
        if self.state == "approval":
            return "this step waits for approval"
        if self.state == "in_progress":
            return "this step is being drafted"
        if self.state == "deferred":
            return "this step is deferred (cap reached); it is sent once the cap allows"
        if self.state == "waiting_accept":
            return f"next: {nxt}, waiting for the connection to be accepted"
        if self.state == "unscheduled" or self.due is None:
            return f"next: {nxt}, not scheduled yet (the next gtm run or gtm serve schedules it)"
        if self.due <= now:
            return f"next: {nxt} due now (since {_utc(self.due)})"
        return f"next: {nxt} due in {fmt_span(self.due - now)} ({_utc(self.due)})"


def _action_at(row: ThreadRow, playbook: Playbook, position: int) -> Step | None:
    if position == 0:
        return first_step(row.channel)
    follow = playbook.sequences.follow_up(row.channel, position)
    return follow.step if follow is not None else None


_ENDED = {"rejected": "was rejected", "skipped": "was skipped", "failed": "failed"}


def sequence_standing(row: ThreadRow, playbook: Playbook) -> SequenceStanding | None:
    """Where `row`'s sequence stands under `playbook` (the campaign's own); None while its
    first touch has not been sent (the queue and the status table cover those)."""
    pos = row.seq_pos
    if pos == 0 and row.status != "sent":
        return None
    seq = playbook.sequences
    follow_ups = seq.linkedin if row.channel == "linkedin" else seq.email
    nxt = playbook.sequences.follow_up(row.channel, pos + 1)
    state: State
    reason = ""
    if row.seq_stopped is not None:
        state, reason = "stopped", row.seq_stopped
    elif row.status == "waiting_for_approval":
        state = "approval"
    elif row.status in ("queued", "running"):
        state = "in_progress"
    elif row.status == "deferred":
        state = "deferred"
    elif row.status != "sent":
        state, reason = "ended", _ENDED.get(row.status, row.status)
    elif nxt is None:
        state = "finished"
    elif row.next_due is not None:
        state = "scheduled"
    elif nxt.after == "accepted":
        state = "waiting_accept"
    else:
        state = "unscheduled"
    return SequenceStanding(
        row=row,
        step=pos + 1,
        steps=max(1 + len(follow_ups), pos + 1),
        action=_action_at(row, playbook, pos),
        state=state,
        next_action=nxt.step if nxt is not None else None,
        due=row.next_due if state == "scheduled" else None,
        reason=reason,
    )
