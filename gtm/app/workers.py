"""Several workers on one campaign: each account taken through a lease, worked once.

With `GTM_DATABASE_URL` set, `gtm run` does not take the campaign's lock file; it works the
accounts it can lease (`tools.pg_leases.AccountLeases`), so any number of `gtm run` processes,
on one machine or many, split a campaign between them. A worker goes down its ranked list and
leases the next free account; one another worker holds now is put aside and asked for again
later, until it was finished (then skipped) or its lease ran out (its worker was killed: then
taken over). A worker ends when every account of its list was worked by it or another worker.

While it works, a worker renews its leases at a third of their length. The end-of-run pass (what
came back, due follow-ups, red flags) is leased too, under a key no account can have, so two
workers never advance the same follow-ups at once; the first worker to get there does it and a
later one skips it. `gtm serve` on Postgres takes the same lease for each campaign's follow-ups
every tick (`end_of_run_lease`), so a server on one machine and workers on others never run
that pass of one campaign at the same time either.

A worker stopped longer than its lease (a paused machine, a blocked process) may find its
account taken over when it gets back: it then gives nothing back and marks nothing finished
(`AccountLeases.release` matches its own take only), and says so in one warning line; the
worker that took it over works it from its last checkpoint.

What a takeover may repeat: an account a killed worker was in the middle of is worked again
from its last checkpoint. Its first leg (research to the approval pause) checkpoints only when it
pauses, so those model calls are made again; a leg after a decision checkpoints every step and
resumes where it stopped, its sends guarded by the outbox as always.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from gtm.app.campaigns import CampaignBusy
from gtm.domain.models import Account

if TYPE_CHECKING:  # psycopg is loaded only by a run on Postgres (the runner imports this)
    from tools.pg_leases import AccountLeases

__all__ = ["END_OF_RUN", "UNWIND_S", "Lanes", "all_or_none", "end_of_run_lease", "poll_interval"]

log = logging.getLogger("gtm.workers")

END_OF_RUN = "(end of run)"
"""The lease key of a campaign's end-of-run pass: account ids are lower-cased domains, so no
account has it."""


def poll_interval(leases: AccountLeases) -> float:
    """How long a worker waits before asking again for accounts other workers hold."""
    return max(0.1, min(2.0, leases.lease_for.total_seconds() / 10))


class Lanes:
    """One worker's leases on one campaign while it runs: taking, renewing, releasing."""

    def __init__(self, leases: AccountLeases, campaign: str) -> None:
        self.leases = leases
        self.campaign = campaign
        self._held: set[str] = set()
        self.lost: set[str] = set()
        """Leases taken over by another worker while this one still worked them (it was
        stopped longer than the lease: a paused machine, a blocked process)."""

    async def _renew_forever(self) -> None:
        every = self.leases.lease_for.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            if not self._held:
                continue
            asking = set(self._held)
            try:
                kept = await asyncio.to_thread(self.leases.renew, self.campaign, asking)
            except Exception as exc:  # noqa: BLE001 - a database blip: the next renewal tries again
                first = str(exc).strip().split("\n", 1)[0]
                log.warning("could not renew the leases of campaign %s: %s", self.campaign, first)
                continue
            if gone := (asking & self._held) - kept - self.lost:
                self.lost |= gone
                log.warning(
                    "campaign %s: lease(s) on %s ran out and were taken over by another worker;"
                    " this worker will not mark them finished",
                    self.campaign,
                    ", ".join(sorted(gone)),
                )

    async def run(
        self,
        accounts: Iterable[Account],
        work: Callable[[Account], Awaitable[None]],
        *,
        lanes: int,
        tail: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Work each account of `accounts` (in order) that this worker can lease, `lanes` at a
        time; return when none is left; then run `tail` under the end-of-run lease."""
        queue: deque[Account] = deque(accounts)
        later: list[Account] = []
        picking = asyncio.Lock()
        wait = poll_interval(self.leases)

        async def next_account() -> Account | None:
            async with picking:
                while True:
                    while queue:
                        account = queue.popleft()
                        got = self.leases.take(self.campaign, account.account_id)
                        if got == "taken":
                            self._held.add(account.account_id)
                            return account
                        if got == "held":
                            later.append(account)
                    if not later:
                        return None
                    await asyncio.sleep(wait)  # held elsewhere: finished, or run out, soon
                    queue.extend(later)
                    later.clear()

        async def lane() -> None:
            while (account := await next_account()) is not None:
                await self._worked(account.account_id, work(account))

        renewing = self.renewing()
        try:
            await all_or_none([asyncio.create_task(lane()) for _ in range(max(1, lanes))])
            if tail is not None:
                while (got := self.leases.take(self.campaign, END_OF_RUN)) == "held":
                    await asyncio.sleep(wait)
                if got == "taken":
                    self._held.add(END_OF_RUN)
                    await self._worked(END_OF_RUN, tail())
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _worked(self, key: str, step: Awaitable[None]) -> None:
        """Run `step` under the lease on `key`: finished when it returns, given back free for
        another worker when it raises or is cancelled (Ctrl-C)."""
        done = False
        try:
            await step
            done = True
        finally:
            self._held.discard(key)
            self.give_back(key, done=done)

    def give_back(self, key: str, *, done: bool) -> bool:
        """Release this worker's lease on `key`; False, said in one line (once), when another
        worker took it over meanwhile: then nothing is released and nothing marked finished."""
        if self.leases.release(self.campaign, key, done=done):
            return True
        if key not in self.lost:
            self.lost.add(key)
            log.warning(
                "campaign %s: the lease on %s ran out while this worker was on it and another "
                "worker took it over; left to that worker, not marked finished here",
                self.campaign,
                key,
            )
        return False

    def renewing(self) -> asyncio.Task[None]:
        """Start renewing this worker's held leases (until the task is cancelled)."""
        return asyncio.create_task(self._renew_forever())


@contextlib.asynccontextmanager
async def end_of_run_lease(leases: AccountLeases, campaign: str) -> AsyncIterator[Lanes]:
    """Hold `campaign`'s end-of-run lease for the block (renewed while it runs), or raise
    `CampaignBusy` when another worker or server holds it now. For a pass run again and again
    (`gtm serve`'s follow-ups each tick): taken even when a worker finished it earlier, and
    given back unfinished, so a `gtm run` worker still runs its own end-of-run pass after."""
    got = await asyncio.to_thread(leases.take, campaign, END_OF_RUN, again=True)
    if got != "taken":
        who = await asyncio.to_thread(leases.holders, campaign, [END_OF_RUN])
        raise CampaignBusy(
            f"campaign {campaign!r}: its replies and follow-ups are being worked by "
            f"{who.get(END_OF_RUN, 'another worker')}"
        )
    lanes = Lanes(leases, campaign)
    lanes._held.add(END_OF_RUN)
    renewing = lanes.renewing()
    try:
        yield lanes
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        lanes._held.discard(END_OF_RUN)
        await asyncio.to_thread(lanes.give_back, END_OF_RUN, done=False)


UNWIND_S = 5.0
"""How long a stopped run waits for its accounts in flight to unwind before it goes on."""


async def all_or_none(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for every task (a run's lanes or workers); if one fails, or the caller is cancelled
    (Ctrl-C), cancel the others and raise once they have unwound (a lane gives its lease back
    unfinished; none works on with stores its caller is about to close), or after `UNWIND_S`
    at most: a step that does not answer its cancellation (a model request LangGraph waits
    for) must not hold Ctrl-C up; closing the workspace then ends it."""
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=UNWIND_S)
        raise
