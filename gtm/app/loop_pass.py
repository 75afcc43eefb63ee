"""The pass over what came back that ends every run, and what a run reports.

`gtm run` ends with `end_of_run`: take in the drop folder, act on the replies (escalations),
advance the due follow-ups, then evaluate the playbook's red flags. `gtm serve`'s tick and
`gtm sync` end with `red_flag_pass` too, so wherever the outcomes are taken in, the funnel is
checked against the playbook and a crossed flag alerts once (`gtm.app.red_flags` keeps each
flag, week and campaign once).

Evaluating the red flags never fails the pass it ends: a flag is a warning about the numbers,
not part of the work, so an error (a store that cannot be read, an alert channel that raises)
is logged and the next pass tries again. The funnel over 100,000 events takes about a second.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gtm.app.escalation_pass import escalate_pending
from gtm.app.loop import drop_folder, sync
from gtm.app.red_flags import StoredFlag, raise_red_flags
from gtm.app.workspace import Workspace

if TYPE_CHECKING:  # `sequences` drives threads with the runner, which imports this module
    from gtm.app.sequences import SequenceReport

__all__ = ["RunSummary", "end_of_run", "red_flag_pass"]

log = logging.getLogger("gtm.loop")


@dataclass
class RunSummary:
    """What one `gtm run` did, for its summary table."""

    campaign: str
    total: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    flagged: int = 0
    already_done: int = 0
    resumed: int = 0
    failures: list[str] = field(default_factory=list)
    needs_human: int = 0
    """Outbox actions found pending from a dead process at the start, now `unknown`."""
    events_ingested: int = 0
    """New events taken in from the drop folder before the sequences were advanced."""
    escalations: int = 0
    """Escalations raised from what came back (alerts, CRM tasks, suppressions)."""
    sequences: SequenceReport | None = None
    """What advancing the sequences did (`gtm.app.sequences.SequenceReport`)."""
    red_flags: list[StoredFlag] = field(default_factory=list)
    """Red flags that fired on this run (each flag, week and campaign alerts once, ever)."""


async def red_flag_pass(ws: Workspace) -> list[StoredFlag]:
    """Evaluate the red flags of the last two ISO weeks and alert each new one; the flags that
    fired now (none on a repeat). Never raises: a failure is logged, and the next pass
    evaluates again (a flag that could not be alerted is retried then)."""
    try:
        return await raise_red_flags(ws)
    except Exception:  # noqa: BLE001 - a warning about the numbers must not stop the work
        log.exception("red flags not evaluated this time; the next pass tries again")
        return []


async def end_of_run(rt: Workspace, campaign: str, summary: RunSummary) -> None:
    """What came back first, so a reply that arrived since the last run stops its sequence;
    then every follow-up that is due; then the red flags over the numbers as they now stand."""
    from gtm.app.sequences import advance_sequences

    if drop_folder(rt.settings.data_dir).is_dir():
        summary.events_ingested = sync(rt).ingested.new
    if not rt.events.empty():  # replies classified, escalations acted on (each event once)
        summary.escalations = len((await escalate_pending(rt)).escalations)
    summary.sequences = await advance_sequences(rt, campaign)
    summary.red_flags = await red_flag_pass(rt)
