"""One process of the crash harness's loop trials: first touches, then day after day of what
comes back, follow-ups and approvals, until the simulated campaign is over.

Each round moves the simulated clock (`tests.crash.loop_events.SimClock`) a day forward, takes
in the events a simulated Dux-Soup reports (through `gtm.app.loop.ingest`, Dux-Soup's webhook
path, or the drop folder and `gtm.app.loop.sync`), runs the escalation pass (the scripted model
classifies replies), advances the campaign's sequences under the campaign lock as `gtm run` and
`gtm serve` do, and approves the follow-ups that wait. The harness kills it with SIGKILL from
outside, or from inside (`--kill kind:n`) at:

- `provider_before:n` / `provider_after:n`: the n-th LinkedIn call (any step);
- `message_before:n` / `message_after:n`: the n-th LinkedIn message (the follow-ups);
- `decision:n`, `checkpoint:n`: as in `tests.crash.worker`;
- `ingest:n`: right after the n-th new event is written to the event store;
- `escalate:n`: between the n-th round's ingest and its escalation pass.

Journaled (fsync'd) before they happen: every provider call with the simulated time and every
decision; right after it: every new event store write. So the harness can order a follow-up's
send attempt against the stopping event that should have prevented it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from gtm.app.accounts import load_accounts
from gtm.app.campaigns import campaign_lock
from gtm.app.checkpoints import thread_values
from gtm.app.escalation_pass import escalate_pending
from gtm.app.loop import drop_folder, ingest, sync
from gtm.app.runner import decide, pending_request, run_campaign
from gtm.app.sequences import advance_sequences
from gtm.app.settings import Settings
from gtm.app.workspace import Workspace, open_workspace
from gtm.domain.events import Event
from gtm.domain.identity import profile_url
from gtm.domain.models import Decision, Receipt
from tests.crash.loop_events import START, SimClock, due_events, load_plan, write_atomic
from tests.crash.worker import Journal, JournalingLinkedIn, Killer, choice
from tools.channels import LinkedInChannel
from tools.local_outbox import LocalLinkedInOutbox

CAMPAIGN = "loop"
DAYS = 13
"""Simulated days a wave runs: both follow-ups of the latest accept (3.5 days after the
request, then 2 and 5 days of waiting) fall inside them."""


@dataclasses.dataclass
class TimedLinkedIn(JournalingLinkedIn):
    """The journaling LinkedIn channel, with the simulated time on each attempt and kill
    points on messages (the follow-ups) of their own."""

    clock: Any = None

    async def _call(self, kind: str, url: str, key: str, call: Any) -> Receipt:
        self.journal.write(
            ev="attempt", kind=kind, url=url, key=key, campaign=self.campaign, at=self._now()
        )
        self.killer.tick("provider_before")
        if kind == "message":
            self.killer.tick("message_before")
        receipt: Receipt = await call
        self.killer.tick("provider_after")
        if kind == "message":
            self.killer.tick("message_after")
        return receipt

    def _now(self) -> str:
        now: datetime = self.clock()
        return now.isoformat()


def arm(rt: Workspace, journal: Journal, killer: Killer) -> None:
    """Kill points after decision writes, checkpoint writes and new event-store writes."""
    record = rt.ledger.record_decision

    def record_then_maybe_die(row_id: int, **kw: Any) -> None:
        record(row_id, **kw)
        killer.tick("decision")

    rt.ledger.record_decision = record_then_maybe_die  # type: ignore[method-assign]
    saver = rt.graph.checkpointer
    assert saver is not None and not isinstance(saver, bool)
    for name in ("aput", "aput_writes"):
        original = getattr(saver, name)

        async def put_then_maybe_die(*a: Any, _o: Any = original, **kw: Any) -> Any:
            result = await _o(*a, **kw)
            killer.tick("checkpoint")
            return result

        setattr(saver, name, put_then_maybe_die)
    store = rt.events
    stored = store.ingest

    def ingest_then_maybe_die(event: Event, *, outbox_key: str | None = None) -> bool:
        new = stored(event, outbox_key=outbox_key)
        if new:
            journal.write(
                ev="stored", key=event.key, kind=event.kind, outbox_key=outbox_key,
                url=profile_url(event.linkedin_url or "") or "", at=event.at.isoformat(),
            )  # fmt: skip
            killer.tick("ingest")
        return new

    store.ingest = ingest_then_maybe_die  # type: ignore[method-assign]


def done_decisions(journal_path: Path) -> set[tuple[str, int]]:
    """(thread, sequence position) of every acknowledged decision in the journal."""
    from tests.crash.common import read_journal

    return {(e["thread"], int(e["pos"])) for e in read_journal(journal_path) if e["ev"] == "acked"}


async def approve_waiting(rt: Workspace, journal: Journal, journal_path: Path) -> None:
    """Decide every draft that waits, as the reviewer's fixed habit says (`worker.choice`)."""
    done = done_decisions(journal_path)
    for row in rt.ledger.rows(campaign=CAMPAIGN, status="waiting_for_approval"):
        asked = await pending_request(rt, row.thread_id)
        if asked is None:
            continue
        pos = int((await thread_values(rt, row.thread_id)).get("sequence_position") or 0)
        if (row.thread_id, pos) in done:
            journal.write(ev="lost", thread=row.thread_id, pos=pos)
        action = choice(f"{row.account_id}:{pos}")
        decision = Decision(
            action=action,
            text=asked.draft.body.replace("Would you", "Would you perhaps")
            if action == "edit"
            else None,
            reason="not a fit this quarter" if action == "reject" else None,
            reviewer="harness",
            at=rt.deps.clock(),
        )
        journal.write(ev="deciding", thread=row.thread_id, pos=pos, action=action)
        await decide(rt, row.id, decision)
        journal.write(ev="acked", thread=row.thread_id, pos=pos, action=action)


async def deliver(
    rt: Workspace, inner: LocalLinkedInOutbox, plan: Any, cursor: Path, journal: Journal
) -> None:
    """Take in what the simulated Dux-Soup reports since the last finished delivery: through
    the webhook's path (`ingest`) or a file in the drop folder and `sync`. The cursor moves
    only after, so a kill re-delivers (a duplicate, which must change nothing)."""
    now = rt.deps.clock()
    since = datetime.fromisoformat(cursor.read_text().strip()) if cursor.exists() else START
    connects: dict[str, datetime] = {}
    for a in inner.actions():
        if a.kind == "connect":
            connects.setdefault(profile_url(a.profile_url) or a.profile_url, a.at)
    events = due_events(plan, connects, now, since - timedelta(seconds=1))
    real = dataclasses.replace(rt, deps=dataclasses.replace(rt.deps, linkedin=inner))
    incoming = drop_folder(rt.settings.data_dir)
    incoming.mkdir(parents=True, exist_ok=True)
    for ev, via in events:
        if via == "ingest":
            ingest(real, [ev])
        else:
            write_atomic(incoming / f"{ev.key.replace(':', '_')}.json", ev.model_dump_json())
    if any(via == "folder" for _, via in events):
        sync(real)
    journal.write(ev="delivered", n=len(events))
    write_atomic(cursor, now.isoformat())


async def main(args: argparse.Namespace) -> int:
    args.data_dir.mkdir(parents=True, exist_ok=True)
    clock = SimClock(args.data_dir / "simclock")
    settings = Settings(
        data_dir=args.data_dir, model_base_url=args.model_url, model="scripted", model_temperature=0
    )
    listing = load_accounts(args.accounts)
    plan = load_plan(args.plan)
    journal, killer = Journal(args.journal), Killer(args.kill)
    journal.write(ev="start", at=clock().isoformat())
    cursor = args.data_dir / "loop-cursor"
    async with open_workspace(settings, with_model=True, clock=clock) as rt:
        inner = rt.deps.linkedin
        assert isinstance(inner, LocalLinkedInOutbox)
        rt.deps = dataclasses.replace(
            rt.deps,
            linkedin=cast(
                LinkedInChannel, TimedLinkedIn(inner, journal, killer, CAMPAIGN, clock=clock)
            ),
        )
        arm(rt, journal, killer)
        with campaign_lock(args.data_dir, CAMPAIGN):  # first touches, resumes, due follow-ups
            await run_campaign(rt, listing.accounts, campaign=CAMPAIGN, channel="linkedin")
        await approve_waiting(rt, journal, args.journal)
        while clock.day() < DAYS:
            journal.write(ev="clock", at=clock.step(timedelta(days=1)).isoformat())
            await deliver(rt, inner, plan, cursor, journal)
            killer.tick("escalate")
            await escalate_pending(rt)
            # Yesterday's drafts first: a reply taken in today reaches a follow-up that waits
            # for approval, and the send node must stop it (`skipped` at send time).
            await approve_waiting(rt, journal, args.journal)
            with campaign_lock(args.data_dir, CAMPAIGN):
                await advance_sequences(rt, CAMPAIGN)
        await approve_waiting(rt, journal, args.journal)
    journal.write(ev="finished", at=clock().isoformat())
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--accounts", type=Path, required=True)
    p.add_argument("--plan", type=Path, required=True)
    p.add_argument("--journal", type=Path, required=True)
    p.add_argument("--model-url", required=True)
    p.add_argument("--kill", default=None)
    raise SystemExit(asyncio.run(main(p.parse_args())))
