"""Several people per account: which person each of an account's threads may write to.

With `Playbook.contacts_per_account` = N > 1, a campaign runs up to N threads per account, one
per person, in slots 0..N-1 (`gtm.domain.threads.thread_id_for`; slot 0 keeps the one-thread id).
Each new thread is handed the account with only the people it may pick, best ranked first
(`agents.eligibility.rank_contacts`), and without anyone another slot's thread already writes to:
its intake then picks the first eligible of them, exactly as a single thread does. So two
threads of a campaign never hold the same person (and if they did, their actions would share
idempotency keys: the outbox would refuse the second).

Slots are filled in order, one after the other, and a slot is only opened when every earlier
slot's checkpoint names its person: a slot whose intake found nobody (or whose first checkpoint
is not written yet) closes the account for this run. The replies of one person stop the others
through `agents.followup.colleague_stop_reason`, and those of someone at the account the
campaign never wrote to through `agents.same_account.unwritten_colleague_stop_reason`, not here.
"""

from __future__ import annotations

from agents.eligibility import rank_contacts, reachable
from gtm.app.checkpoints import thread_values
from gtm.app.workspace import Workspace
from gtm.domain.models import Account, Channel
from gtm.domain.threads import thread_id_for

__all__ = ["MAX_SLOTS", "slot_account"]

MAX_SLOTS = 5
"""The playbook's upper bound for `contacts_per_account`: every slot that may exist is read."""


async def slot_account(
    rt: Workspace, campaign: str, account: Account, channel: Channel, slot: int
) -> Account | None:
    """The account as slot `slot`'s thread is to be started with, or None: do not open it (nor
    any later slot) on this run. `account` is the list's row, people erased on request already
    removed. A thread with a checkpoint ignores its input (it keeps its person): it is returned
    as given. One whose ledger row exists without a checkpoint (a first leg that died) is new."""
    if await thread_values(rt, thread_id_for(campaign, account.account_id, slot)):
        return account  # started already: it keeps its person, and a run only resumes it
    held: set[str] = set()
    for other in range(MAX_SLOTS):
        if other == slot:
            continue
        values = await thread_values(rt, thread_id_for(campaign, account.account_id, other))
        contact = values.get("contact")
        if contact is not None:
            held.add(contact.key)
        elif other < slot:
            return None  # an earlier slot has not named its person (yet): nobody to exclude
    ranked = rank_contacts(account.contacts, rt.playbook_for(campaign))
    left = [c for c in ranked if c.key not in held]
    if slot > 0:
        left = [c for c in left if reachable(c, channel)]
        if not left:
            return None
    # Slot 0 always runs: with nobody left, its intake records why the account was skipped.
    return account.model_copy(update={"contacts": tuple(left)})
