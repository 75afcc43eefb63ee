"""Campaigns from a CRM list: `gtm run --from hubspot:list/ID` or `--from attio:list/SLUG`.

The list's people become accounts and contacts exactly as the rows of an account list CSV do:
each person's columns (`tools.crm.ListMember.values`) pass the same checks as a CSV row
(`gtm.app.accounts`), so a bad record is rejected with the CRM record named where a CSV names
its row, and people are grouped into accounts by domain the same way.

Before anything is drafted, a person the CRM shows recent activity with (the playbook's
`crm_lists.recent_activity_days`), or with an open deal (theirs or their company's, by the
playbook's `crm_lists.closed_deal_stages`), is held back with the reason. An account whose every
person is held back is recorded in the campaign as skipped, like intake's skips; otherwise it
runs with the people left. Accounts the campaign already holds a thread for are not screened
again: a re-run resumes them, and our own notes in the CRM must not count as someone else's
activity.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from gtm.app import stores
from gtm.app.accounts import _Bad, _merge, _person_keys, _validate
from gtm.app.ledger import Ledger
from gtm.app.list_columns import RowValues
from gtm.app.providers import ProviderConfigError, open_crm
from gtm.app.settings import Settings
from gtm.domain.models import Account, Channel
from gtm.domain.playbook import Playbook
from gtm.domain.threads import thread_id_for
from tools.crm import CRM, CRMLists, ListMember
from tools.http import AuthError, NotFoundError, ProviderError

__all__ = [
    "CrmListError",
    "CrmList",
    "Held",
    "HOLD_REASONS",
    "ListSource",
    "RecordError",
    "describe",
    "hold_back",
    "load_crm_list",
    "parse_source",
    "pull_list",
    "record_held",
    "screened_accounts",
]

Provider = Literal["hubspot", "attio"]
HoldReason = Literal["open_deal", "recent_activity"]
HOLD_REASONS: frozenset[str] = frozenset({"open_deal", "recent_activity"})
_SOURCE = re.compile(r"^(hubspot|attio):list/([A-Za-z0-9][A-Za-z0-9_.-]{0,127})$")
_NAMES = {"hubspot": "HubSpot", "attio": "Attio"}
_SCOPES = {
    "hubspot": "crm.lists.read, crm.objects.contacts.read, crm.objects.companies.read, "
    "crm.objects.deals.read",
    "attio": "list_entry:read, list_configuration:read, record_permission:read, "
    "object_configuration:read",
}


class CrmListError(ValueError):
    """The list cannot be used: a bad source, the wrong CRM, an unknown list, a missing scope,
    an unreachable CRM. The message is one line that names the source."""


@dataclass(frozen=True)
class ListSource:
    provider: Provider
    list_id: str

    def __str__(self) -> str:
        return f"{self.provider}:list/{self.list_id}"

    @property
    def campaign_name(self) -> str:
        """The campaign's name when none is given, as a CSV's file name gives it."""
        return f"{self.provider}-list-{self.list_id}"


@dataclass(frozen=True)
class RecordError:
    """A person on the list rejected by the account-list checks; like a CSV's `RowError`, with
    the CRM record where a CSV has its row number."""

    source: str
    record: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.record}:{self.field}: {self.reason}"


@dataclass(frozen=True)
class Held:
    """A person held back before drafting, and why."""

    source: str
    record: str
    account: Account
    contact: str
    reason: HoldReason
    detail: str

    def __str__(self) -> str:
        return f"{self.source}:{self.record}: {self.reason}: {self.detail}"


@dataclass
class CrmList:
    """What `load_accounts` gives for a CSV, for a CRM list (the CLI treats both alike)."""

    source: str
    accounts: list[Account] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    members_read: int = 0

    @property
    def held_accounts(self) -> list[Account]:
        """Accounts none of whose people are left to write to: recorded as skipped."""
        running = {a.account_id for a in self.accounts}
        out: dict[str, Account] = {}
        for h in self.held:
            if h.account.account_id not in running:
                out.setdefault(h.account.account_id, h.account)
        return list(out.values())


def parse_source(text: str) -> ListSource:
    """`hubspot:list/<id>` or `attio:list/<slug>`."""
    m = _SOURCE.match(text.strip())
    if m is None:
        raise CrmListError(
            f"--from {text!r}: expected hubspot:list/<list id> or attio:list/<list slug or id>"
        )
    provider: Provider = "hubspot" if m.group(1) == "hubspot" else "attio"
    return ListSource(provider, m.group(2))


def _same_provider(source: ListSource, configured: str) -> None:
    if configured != source.provider:
        raise CrmListError(
            f"{source}: this workspace's CRM is {configured}; set GTM_CRM={source.provider} "
            f"(and its token) to run a campaign from a {_NAMES[source.provider]} list"
        )


def _check_crm(crm: CRM, source: ListSource, configured: str) -> CRMLists:
    _same_provider(source, configured)
    if not isinstance(crm, CRMLists):
        raise CrmListError(f"{source}: the configured CRM cannot read lists")
    return crm


async def _members(crm: CRMLists, source: ListSource, playbook: Playbook) -> list[ListMember]:
    name = _NAMES[source.provider]
    try:
        return await crm.list_members(
            source.list_id,
            closed_stages=playbook.crm_lists.closed_deal_stages,
            pql_properties=playbook.crm_lists.pql_for(source.provider),
        )
    except NotFoundError:
        raise CrmListError(f"{source}: {name} has no such list") from None
    except AuthError as exc:
        raise CrmListError(
            f"{source}: {name} refused to read the list ({exc}); the token needs the scopes "
            f"{_SCOPES[source.provider]}"
        ) from None
    except ProviderError as exc:
        raise CrmListError(f"{source}: cannot read the list from {name} ({exc})") from None


def hold_back(
    member: ListMember, playbook: Playbook, now: datetime
) -> tuple[HoldReason, str] | None:
    """Why a person on the list is not written to in this campaign, or None."""
    if member.open_deals:
        return (
            "open_deal",
            f"{member.open_deals} open deal(s) in the CRM (theirs or their company's)",
        )
    days = playbook.crm_lists.recent_activity_days
    at = member.last_activity
    if days and at is not None and now - at < timedelta(days=days):
        ago = max(0, (now - at).days)
        return "recent_activity", (
            f"last CRM activity {ago} day(s) ago ({at:%Y-%m-%d}; the playbook's "
            f"crm_lists.recent_activity_days is {days})"
        )
    return None


def screened_accounts(ledger: Ledger, campaign: str) -> set[str]:
    """Accounts the campaign holds a thread for (other than one held back from a list), which a
    re-run resumes instead of screening again."""
    return {
        r.account_id
        for r in ledger.rows(campaign=campaign)
        if not (r.status == "skipped" and r.skip_reason in HOLD_REASONS)
    }


def _values(member: ListMember) -> RowValues:
    """The person's columns as a CSV row gives them; the company's product signals (the
    playbook's `crm_lists.pql_properties`) as a row's PQL cells, each naming its record."""
    return RowValues(values=dict(member.values), facts=(), multiline=set(), pql=member.pql)


async def load_crm_list(
    crm: CRM,
    source: ListSource,
    playbook: Playbook,
    *,
    configured: str,
    now: datetime,
    screened: Collection[str] = (),
) -> CrmList:
    """The accounts of a CRM list, its rejected records and the people held back. `configured`
    is the workspace's CRM setting; `screened` the accounts a re-run resumes unscreened."""
    reader = _check_crm(crm, source, configured)
    members = await _members(reader, source, playbook)
    label = str(source)
    result = CrmList(source=label, members_read=len(members))
    groups: dict[str, dict[str, Any]] = {}
    held: dict[str, dict[str, Any]] = {}
    seen: dict[str, str] = {}
    for position, member in enumerate(members, 1):
        try:
            contact, fields = _validate(dict(member.values), _values(member))
        except _Bad as bad:
            result.errors.append(RecordError(label, member.record, bad.field, bad.reason))
            continue
        first = next((seen[k] for k in _person_keys(contact) if k in seen), None)
        if first is not None:
            why = f"duplicate contact (first seen as {first})"
            result.errors.append(RecordError(label, member.record, "email", why))
            continue
        for k in _person_keys(contact):
            seen[k] = member.record
        contact = contact.model_copy(update={"row": position})
        blocked = None if fields["domain"] in screened else hold_back(member, playbook, now)
        if blocked is None:
            _merge(groups, fields, contact, position, label, result.warnings)
            continue
        _merge(held, fields, contact, position, label, [])
        result.held.append(
            Held(
                label,
                member.record,
                _account(held[fields["domain"]], label),
                contact.name,
                *blocked,
            )
        )
    result.accounts = [_account(g, label) for g in groups.values()]
    return result


def _account(group: dict[str, Any], source: str) -> Account:
    g = dict(group)
    facts = tuple(f.model_copy(update={"id": f"l{i}"}) for i, f in enumerate(g.pop("facts"), 1))
    return Account(**g, source=source, facts=facts)


def record_held(
    ledger: Ledger, campaign: str, channel: Channel, listing: CrmList
) -> dict[str, int]:
    """Write each account none of whose people is left as a skipped thread of the campaign,
    with the first reason and every detail; returns the count per reason. A later run, once
    the activity is old enough, runs it like any new account.

    The list was screened before the campaign's lock was taken: an account the campaign holds
    any thread for by now (its first person's, or a later one's `#2..` with
    `contacts_per_account` > 1) is another run's, and its threads are left as they are."""
    counts: dict[str, int] = {}
    started = screened_accounts(ledger, campaign)
    for account in listing.held_accounts:
        if account.account_id in started:
            continue
        why = [h for h in listing.held if h.account.account_id == account.account_id]
        ledger.ensure(campaign, account, channel)
        ledger.update(
            thread_id_for(campaign, account.account_id),
            status="skipped",
            skip_reason=why[0].reason,
            detail="; ".join(f"{h.contact}: {h.detail}" for h in why),
        )
        counts[why[0].reason] = counts.get(why[0].reason, 0) + 1
    return counts


def describe(held: Sequence[Held]) -> list[str]:
    """One line per person held back, for the terminal."""
    return [f"{h} ({h.contact}, {h.account.company})" for h in held]


async def pull_list(
    settings: Settings,
    source: ListSource,
    given: Playbook,
    campaign: str,
    *,
    adopt: bool,
    now: datetime,
) -> CrmList:
    """`load_crm_list` with the workspace's own CRM, the playbook the campaign runs under (the
    one it recorded, unless `adopt` switches it to `given`) and the accounts it already holds."""
    _same_provider(source, settings.crm)
    book = stores.campaign_book(settings)
    try:
        record = book.get(campaign)
    finally:
        book.close()
    playbook = record.playbook if record is not None and not adopt else given
    threads = stores.ledger(settings)
    try:
        screened = screened_accounts(threads, campaign)
    finally:
        threads.close()
    try:
        crm = open_crm(settings)
    except ProviderConfigError as exc:
        raise CrmListError(f"{source}: {exc}") from None
    try:
        return await load_crm_list(
            crm, source, playbook, configured=settings.crm, now=now, screened=screened
        )
    finally:
        await crm.aclose()
