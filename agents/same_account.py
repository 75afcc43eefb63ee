"""One account never gets the same message twice: the review's rule for several people there.

When a campaign reaches several people of one account (`Playbook.contacts_per_account`), each
has a thread of their own. A draft may not share its skeleton with a draft already written for a
colleague at the same account in the same campaign, however short, and whatever the
campaign-wide near-duplicate threshold allows: the colleagues compare notes. The drafts are
read from memory, where each thread keeps its own keys (`memory_thread`).
"""

from __future__ import annotations

from langgraph.config import get_config

from agents.context import Deps
from agents.state import State
from evals.checks import jaccard
from evals.text import longest_common_run, shingles, skeleton
from gtm.domain.models import CheckResult, Review, Touch
from gtm.domain.playbook import Playbook
from gtm.domain.threads import thread_id_for

__all__ = ["memory_thread", "same_account_duplicate", "with_colleagues"]


def memory_thread(state: State) -> str:
    """The prefix of this thread's draft keys in memory: the account's thread id, as always; for
    the thread of a further person at the account, that thread's own id, so colleagues' drafts
    do not overwrite each other's. Outside a graph run, the account's thread id."""
    base = thread_id_for(state.campaign, state.account.account_id)
    try:
        tid = str(get_config().get("configurable", {}).get("thread_id") or "")
    except RuntimeError:  # not inside a graph run
        return base
    return tid if tid.startswith(f"{base}#") else base


def same_account_duplicate(
    text: str, colleagues: list[Touch], playbook: Playbook
) -> CheckResult | None:
    """A failed `near_duplicates` verdict if `text` shares its skeleton with a colleague's draft:
    the same words once names and numbers are masked, or a masked-shingle overlap at the
    playbook's `near_duplicate_shingle` with no minimum length. None if it shares none."""
    mine = skeleton(text)
    worst: tuple[float, Touch] | None = None
    for t in colleagues:
        same = bool(mine) and mine == skeleton(t.text)
        sim = 1.0 if same else jaccard(shingles(text), shingles(t.text))
        if sim >= playbook.guardrails.near_duplicate_shingle and (worst is None or sim > worst[0]):
            worst = (sim, t)
    if worst is None:
        return None
    sim, peer = worst
    who = peer.contact or "a colleague"
    shared = longest_common_run(text, peer.text)
    return CheckResult(
        check="near_duplicates",
        passed=False,
        score=1 - sim,
        finding=f"same skeleton as the draft for {who} at this account (shingle overlap "
        f"{sim:.0%}): one account never gets the same message twice",
        spans=(shared,) if shared.strip() else (text[:60],),
        instruction=f"This reads like the message to {who} at the same company. Write to this "
        "person's own role with a different opening, angle and structure.",
    )


async def with_colleagues(deps: Deps, state: State, text: str, verdict: Review) -> Review:
    """`verdict` with the same-account rule applied to `text`. The colleagues' drafts are this
    campaign's drafts in memory for someone else at the account."""
    me = state.contact.name if state.contact else ""
    colleagues = [
        t
        for t in await deps.memory.history(state.account.account_id, limit=200)
        if t.kind == "draft" and t.campaign == state.campaign and t.contact != me
    ]
    failed = same_account_duplicate(text, colleagues, deps.playbook)
    if failed is None or any(r.check == "near_duplicates" for r in verdict.failures):
        return verdict  # nothing found, or already failed on another account's draft
    kept = tuple(r for r in verdict.results if r.check != "near_duplicates")
    return Review(results=(*kept, failed))
