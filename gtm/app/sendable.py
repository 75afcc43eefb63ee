"""Which review findings stop a pending draft being sent as written.

Apart from `gtm.app.runner` (which applies them to decisions and re-exports both names) so that
showing a draft (`gtm inbox`) does not load the runner's graph driving, loop and reply
classifier (issue 20).
"""

from __future__ import annotations

from gtm.domain.approval import ApprovalRequest

__all__ = ["EDIT_BLOCKERS", "unsendable"]

EDIT_BLOCKERS = frozenset({"length", "placeholders"})
"""Checks whose failure means the channel cannot carry the text: they refuse; others are notes."""


def unsendable(request: ApprovalRequest) -> list[str]:
    """The findings on a pending draft that stop it being sent as written."""
    return [f"{f.check}: {f.finding}" for f in request.findings if f.check in EDIT_BLOCKERS]
