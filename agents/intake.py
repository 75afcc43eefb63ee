"""Intake: decide whether an account is worth a message at all, and to whom.

Reads only (CRM, memory, suppression list, outbox); writes nothing. Every skip carries a reason
from `SkipReason` and a detail line a person can act on. Whether one person may be contacted is
`agents.eligibility`'s call; intake picks the first eligible contact, or skips the account.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agents.context import Deps
from agents.eligibility import already_in_campaign, reachable, suppression_reason
from agents.state import State
from gtm.domain.models import SkipReason

__all__ = ["intake"]


def _skip(reason: SkipReason, detail: str) -> dict[str, Any]:
    return {
        "status": "skipped",
        "skip_reason": reason,
        "skip_detail": detail,
        "events": [f"intake: skipped ({reason}): {detail}"],
    }


async def intake(state: State, runtime: Runtime[Deps]) -> dict[str, Any]:
    deps = runtime.context
    account = state.account
    playbook = deps.playbook

    if (c := playbook.competitor_of(account)) is not None:
        return _skip("competitor", f"{account.company} is a competitor ({c.name})")
    tier = playbook.tier_of(account)
    if tier is None and playbook.skip_out_of_tier:
        return _skip(
            "out_of_tier", f"'{account.segment or account.description}' matches no playbook tier"
        )

    if not account.contacts:  # the runner drops people erased on request from the list
        return _skip("suppressed", "every person the list names here was erased on request")
    candidates = [c for c in account.contacts if reachable(c, state.channel)]
    if not candidates:
        field = "LinkedIn URL" if state.channel == "linkedin" else "email"
        return _skip("no_reachable_contact", f"no contact has a {field}")

    skipped: list[tuple[SkipReason, str]] = []
    for contact in candidates:
        blocked = await suppression_reason(deps, account, contact, state.campaign)
        if blocked is None:
            blocked = already_in_campaign(deps, state.campaign, account, contact)
        if blocked is None:
            return {
                "status": "running",
                "tier": tier,
                "contact": contact,
                "events": [
                    f"intake: tier {tier.tier if tier else '-'} "
                    f"({tier.segment if tier else 'configured'}), writing to {contact.name}"
                ],
            }
        if blocked[0] in _ACCOUNT_LEVEL:
            return _skip(*blocked)
        skipped.append(blocked)
    return _skip(skipped[0][0], "; ".join(detail for _, detail in skipped))


_ACCOUNT_LEVEL: frozenset[SkipReason] = frozenset({"competitor", "customer", "open_deal"})
