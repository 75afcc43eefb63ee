"""Intake: decide whether an account is worth a message at all, and to whom.

Reads only (CRM, memory, suppression list, outbox); writes nothing. Every skip carries a reason
from `SkipReason` and a detail line a person can act on.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from langgraph.runtime import Runtime

from agents.context import Deps
from agents.state import State
from gtm.domain.models import Account, Channel, Contact, SkipReason

__all__ = ["intake", "reachable", "suppression_reason"]


def reachable(contact: Contact, channel: Channel) -> bool:
    return bool(contact.linkedin_url if channel == "linkedin" else contact.email)


def _skip(reason: SkipReason, detail: str) -> dict[str, Any]:
    return {
        "status": "skipped",
        "skip_reason": reason,
        "skip_detail": detail,
        "events": [f"intake: skipped ({reason}): {detail}"],
    }


async def suppression_reason(
    deps: Deps, account: Account, contact: Contact, campaign: str
) -> tuple[SkipReason, str] | None:
    """Why this person at this account must not be contacted now, or None.

    Called at intake and again right before each send.
    """
    if (c := deps.playbook.competitor_of(account)) is not None:
        return "competitor", f"{account.company} is a competitor ({c.name})"
    company = await deps.crm.find_company(account.domain)
    if company is not None:
        if company.is_customer:
            return "customer", f"CRM lifecycle stage is '{company.lifecycle_stage}'"
        if company.open_deals:
            return "open_deal", f"{company.open_deals} open deal(s) in the CRM"
    listed = deps.suppressions.check(contact, account)
    if listed:
        return "suppressed", listed
    record = await deps.crm.find_contact(contact)
    if record is not None:
        if record.opted_out:
            return "suppressed", f"{contact.name} opted out (CRM)"
        # The CRM may know this person under an identifier the list row lacks: an opt-out
        # recorded against their email also covers the LinkedIn-only row, and the reverse.
        listed = deps.suppressions.check_identifiers(
            email=record.email, linkedin_url=record.linkedin_url
        )
        if listed:
            return "suppressed", listed
    now = deps.clock()
    cooldown = deps.playbook.cooldown
    for entry in deps.outbox.sent_since(
        now - timedelta(days=max(cooldown.person_days, cooldown.account_days)),
        contact_key=contact.key,
        account_id=account.account_id,
    ):
        if entry.campaign == campaign:
            continue  # this campaign's own earlier step (the visit before a connect)
        age = now - entry.created_at
        if entry.contact_key == contact.key and age < timedelta(days=cooldown.person_days):
            return "cooldown", (
                f"{contact.name} was contacted {age.days} day(s) ago in campaign "
                f"{entry.campaign} (cooldown {cooldown.person_days} days)"
            )
        if entry.account_id == account.account_id and age < timedelta(days=cooldown.account_days):
            return "cooldown", (
                f"{account.company} was contacted {age.days} day(s) ago in campaign "
                f"{entry.campaign} (account cooldown {cooldown.account_days} days)"
            )
    for touch in await deps.memory.history(account.account_id, limit=200):
        if touch.kind != "send":
            continue
        age = now - touch.at
        if touch.contact == contact.name and age < timedelta(days=cooldown.person_days):
            return "cooldown", (
                f"{contact.name} was contacted {age.days} day(s) ago "
                f"(cooldown {cooldown.person_days} days)"
            )
        if age < timedelta(days=cooldown.account_days):
            return "cooldown", (
                f"{account.company} was contacted {age.days} day(s) ago "
                f"(account cooldown {cooldown.account_days} days)"
            )
    return None


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

    candidates = [c for c in account.contacts if reachable(c, state.channel)]
    if not candidates:
        field = "LinkedIn URL" if state.channel == "linkedin" else "email"
        return _skip("no_reachable_contact", f"no contact has a {field}")

    skipped: list[tuple[SkipReason, str]] = []
    for contact in candidates:
        blocked = await suppression_reason(deps, account, contact, state.campaign)
        if blocked is None:
            blocked = _already_in_campaign(deps, state.campaign, account, contact)
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


def _already_in_campaign(
    deps: Deps, campaign: str, account: Account, contact: Contact
) -> tuple[SkipReason, str] | None:
    """The same person reached through another account row of this campaign."""
    for entry in deps.outbox.entries(campaign=campaign):
        if entry.contact_key == contact.key and entry.account_id != account.account_id:
            return "duplicate", f"{contact.name} is already in this campaign via {entry.account_id}"
    return None
