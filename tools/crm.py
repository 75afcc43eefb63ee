"""The CRM seam: what the pipeline needs from a CRM, whichever one a team runs.

The local SQLite CRM (`tools.local_crm`) is the embedded default; HubSpot and Attio clients
implement the same Protocol. Every write is idempotent on a caller-supplied key so a resumed
run never logs a touch twice. A contact is matched by email first, then by its LinkedIn URL in
the one form `normalise_linkedin` gives it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from gtm.domain.crm_lists import CrmName
from gtm.domain.identity import profile_url
from gtm.domain.models import Account, Contact
from tools.provider import HoldsPeople

__all__ = [
    "CRM",
    "CRMLists",
    "CompanyRecord",
    "CompanySignals",
    "ListMember",
    "ContactRecord",
    "Activity",
    "Task",
    "normalise_linkedin",
    "still_held",
]


def normalise_linkedin(url: str | None) -> str | None:
    """A profile URL as every CRM stores and matches it: `gtm.domain.identity.profile_url`'s
    form, so `de.linkedin.com/in/x/` and `https://www.linkedin.com/in/X` are one person. A
    value that is no member profile (a company page, junk a CRM holds) names no one; it is
    kept trimmed and lower-cased, without query or trailing slash, as before."""
    if not url or not url.strip():
        return None
    return profile_url(url) or url.strip().lower().split("?", 1)[0].rstrip("/")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CompanyRecord(_Record):
    id: str = Field(description="The CRM's id for the company.")
    domain: str
    name: str
    lifecycle_stage: str | None = Field(default=None, description="e.g. 'lead', 'customer'.")
    owner: str | None = Field(default=None, description="Account owner (email or name).")
    open_deals: int = Field(default=0, ge=0, description="Deals not closed won or lost.")
    pql: tuple[tuple[str, str, str], ...] = Field(
        default=(),
        description="(signal, value, source) of each product signal read from the record's "
        "properties the playbook names (`CompanySignals`); empty unless asked for.",
    )

    @property
    def is_customer(self) -> bool:
        return (self.lifecycle_stage or "").lower() in {"customer", "evangelist"}


class ContactRecord(_Record):
    id: str
    company_id: str | None
    name: str
    title: str = ""
    email: str | None = None
    linkedin_url: str | None = None
    opted_out: bool = Field(default=False, description="Asked not to be contacted, any channel.")


ActivityKind = Literal["linkedin_visit", "linkedin_connect", "linkedin_message", "email", "note"]


class Activity(_Record):
    """A touch logged on the company (and the contact, when there is one)."""

    key: str = Field(description="Idempotency key: logging the same key twice is a no-op.")
    company_id: str
    contact_id: str | None = None
    kind: ActivityKind
    subject: str | None = None
    body: str
    at: datetime


class Task(_Record):
    key: str = Field(description="Idempotency key.")
    company_id: str
    contact_id: str | None = None
    title: str
    due_at: datetime
    owner: str | None = None


class ListMember(_Record):
    """One person on a CRM list, as the list's campaign needs them: the account list's columns
    (our names, e.g. `company`, `domain`, `contact_name`, `email`) read from the person's record
    and their company's, and what the CRM says about recent contact and open deals."""

    record: str = Field(description="How messages name the record, e.g. 'contact 501'.")
    values: dict[str, str] = Field(description="Account-list columns, by our column names.")
    last_activity: datetime | None = Field(
        default=None, description="Latest activity the CRM records on the person (any user)."
    )
    open_deals: int = Field(
        default=0, ge=0, description="Open deals of the person or their company."
    )
    pql: tuple[tuple[str, str, str], ...] = Field(
        default=(),
        description="(signal, value, source) of each product signal read from the company's "
        "record, e.g. ('signups', '120', 'hubspot company 9 property product_signups').",
    )


@runtime_checkable
class CRMLists(Protocol):
    """A CRM whose lists can start a campaign (`gtm run --from PROVIDER:list/ID`)."""

    async def list_members(
        self,
        list_id: str,
        *,
        closed_stages: Sequence[str] = (),
        pql_properties: Mapping[str, str] | None = None,
    ) -> list[ListMember]:
        """Every person on the list, read to the last page: a list of people gives them, a list
        of companies gives each company's people. A deal counts as open unless the CRM marks it
        closed or its stage (id or title, any case) is in `closed_stages`. `pql_properties`
        (signal -> company property) names the product signals read into `ListMember.pql`.
        Raises `tools.http.NotFoundError` for a list that does not exist."""
        ...


@runtime_checkable
class CompanySignals(Protocol):
    """A CRM whose company records can hold product signals (HubSpot properties, Attio
    attributes). Research asks for them with the campaign's own playbook, so a campaign run
    under another playbook than the command's reads the properties it names."""

    async def find_company_with_signals(
        self, domain: str, pql_properties: Mapping[CrmName, Mapping[str, str]]
    ) -> CompanyRecord | None:
        """`find_company`, also reading this CRM's entry of `pql_properties` (CRM -> signal ->
        company property, the playbook's `crm_lists.pql_properties`) into the record's `pql`,
        each sourced like "hubspot company 123 property product_signups". With no entry for
        this CRM, exactly `find_company`."""
        ...


@runtime_checkable
class CRM(HoldsPeople, Protocol):
    """Find-or-create records, read suppression facts, and log touches."""

    async def find_company(self, domain: str) -> CompanyRecord | None: ...

    async def upsert_company(self, account: Account) -> CompanyRecord:
        """Find the company by domain, or create it. Never creates a second one."""
        ...

    async def find_contact(self, contact: Contact) -> ContactRecord | None:
        """Match by email first, then LinkedIn URL."""
        ...

    async def upsert_contact(self, contact: Contact, company_id: str) -> ContactRecord: ...

    async def log_activity(self, activity: Activity) -> str:
        """Record a touch; returns the CRM's id. Same key twice returns the first id."""
        ...

    async def create_task(self, task: Task) -> str: ...

    async def mark_opted_out(self, contact: Contact) -> bool:
        """Write an opt-out back to the person's record, where this CRM has a place for it.
        True when the CRM now holds it; False when it has no such field or no such person
        (the suppression list, not the CRM, is what keeps them from being contacted)."""
        ...

    async def activities(self, company_id: str) -> list[Activity]:
        """Touches logged on the company, oldest first."""
        ...


async def still_held(
    crm: CRM, emails: Sequence[str], urls: Sequence[str], *, how: str
) -> int | str:
    """`erase_person` for a hosted CRM, which keeps the contact: a note naming the contact and
    `how` to erase it there, or 0 when the CRM holds no such person."""
    probes = [Contact(name="", email=e) for e in emails]
    probes += [Contact(name="", linkedin_url=u) for u in urls]
    for probe in probes:
        found = await crm.find_contact(probe)
        if found is not None:
            return (
                f"the CRM ({type(crm).__name__}) still holds contact {found.id}: "
                f"erase it there ({how})"
            )
    return 0
