"""Eligibility: whether a person may be contacted at all, now, in this campaign.

Reads only (CRM, suppression list, outbox, memory). The intake node asks it for every candidate
contact, and the send node asks again right before each send, so an opt-out or a new deal that
arrives while a draft waits for approval still stops it. At send time the outbox's cooldown is
not read here but decided by `Outbox.reserve`, in the transaction that reserves the action: a
read here and a reservation later would let two campaigns both pass the check.

A campaign may reach several people of one account (`Playbook.contacts_per_account`): they are
ranked here (`rank_contacts`), and they share one sequence, so a reply, opt-out, bounce or
meeting from anyone the campaign wrote to at the account stops everyone else's sends there
(`agents.followup.colleague_stop_reason`, asked at every send and, with several people per
account, at intake), and so does one from someone there the campaign never wrote to
(`agents.same_account.unwritten_colleague_stop_reason`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from agents.context import Deps
from agents.followup import colleague_stop_reason
from agents.same_account import unwritten_colleague_stop_reason
from gtm.domain.models import Account, Channel, Contact, SkipReason
from gtm.domain.playbook import Playbook
from tools.outbox import CooldownHit, Cooldowns

__all__ = [
    "already_in_campaign",
    "cooldown_detail",
    "cooldowns",
    "rank_contacts",
    "reachable",
    "suppression_reason",
]


def reachable(contact: Contact, channel: Channel) -> bool:
    """Whether the contact has an address on the channel."""
    return bool(contact.linkedin_url if channel == "linkedin" else contact.email)


def rank_contacts(contacts: Sequence[Contact], playbook: Playbook) -> list[Contact]:
    """The contacts in the order a campaign reaches them when it reaches several per account:
    champion titles first, then the economic buyer (the title words of the playbook's
    `qualification:` section, whole words, any case), then the rest; list order within each."""
    rules = playbook.qualification

    def rank(c: Contact) -> int:
        title = c.title or ""
        if any(p.search(title) for p in rules.champion.patterns):
            return 0
        if any(p.search(title) for p in rules.economic_buyer.patterns):
            return 1
        return 2

    return sorted(contacts, key=rank)  # stable: list order breaks ties


def cooldowns(playbook: Playbook) -> Cooldowns:
    """The playbook's rest periods after an action of another campaign."""
    return Cooldowns(
        person=timedelta(days=playbook.cooldown.person_days),
        account=timedelta(days=playbook.cooldown.account_days),
    )


def cooldown_detail(hit: CooldownHit, account: Account, contact: Contact) -> str:
    """Why a cooldown applies, in words, naming the campaign that contacted them."""
    e, days = hit.entry, hit.window.days
    if hit.scope == "person":
        return (
            f"{contact.name} was contacted {hit.age.days} day(s) ago in campaign "
            f"{e.campaign} (cooldown {days} days)"
        )
    return (
        f"{account.company} was contacted {hit.age.days} day(s) ago in campaign "
        f"{e.campaign} (account cooldown {days} days)"
    )


async def suppression_reason(
    deps: Deps,
    account: Account,
    contact: Contact,
    campaign: str,
    *,
    outbox_cooldown: bool = True,
) -> tuple[SkipReason, str] | None:
    """Why this person at this account must not be contacted now, or None.

    Called at intake and again right before each send. The send node passes
    `outbox_cooldown=False`: its reservation decides the outbox's cooldown under the write lock.
    At send time, and at intake when the playbook reaches several people per account, a stop
    from a colleague this campaign wrote to at the account blocks too ("sequence_stopped").
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
    if not outbox_cooldown or deps.playbook.contacts_per_account > 1:
        # Both answers look only at this campaign's actions at this account.
        entries = deps.outbox.entries(campaign=campaign, account_id=account.account_id)
        why = colleague_stop_reason(
            deps.events, entries, account.account_id, contact.key
        ) or await unwritten_colleague_stop_reason(deps.events, deps.crm, entries, account, contact)
        if why is not None:
            return "sequence_stopped", why
    if outbox_cooldown:
        hit = deps.outbox.cooldown_hit(
            campaign=campaign,
            contact_key=contact.key,
            account_id=account.account_id,
            cooldown=cooldowns(deps.playbook),
        )
        if hit is not None:
            return "cooldown", cooldown_detail(hit, account, contact)
    now = deps.clock()
    cooldown = deps.playbook.cooldown
    for touch in await deps.memory.history(account.account_id, limit=200):
        if touch.kind != "send" or touch.campaign == campaign:
            continue  # as in the outbox, the campaign's own earlier touches are exempt
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


def already_in_campaign(
    deps: Deps, campaign: str, account: Account, contact: Contact
) -> tuple[SkipReason, str] | None:
    """The same person reached through another account row of this campaign."""
    for entry in deps.outbox.entries(campaign=campaign, contact_key=contact.key):
        if entry.account_id != account.account_id:
            return "duplicate", f"{contact.name} is already in this campaign via {entry.account_id}"
    return None
