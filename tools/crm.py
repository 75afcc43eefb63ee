"""The CRM seam: what the pipeline needs from a CRM, whichever one a team runs.

The local SQLite CRM (`tools.local_crm`) is the embedded default; HubSpot and Attio clients
implement the same Protocol. Every write is idempotent on a caller-supplied key so a resumed
run never logs a touch twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from gtm.domain.models import Account, Contact

__all__ = ["CRM", "CompanyRecord", "ContactRecord", "Activity", "Task"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CompanyRecord(_Record):
    id: str = Field(description="The CRM's id for the company.")
    domain: str
    name: str
    lifecycle_stage: str | None = Field(default=None, description="e.g. 'lead', 'customer'.")
    owner: str | None = Field(default=None, description="Account owner (email or name).")
    open_deals: int = Field(default=0, ge=0, description="Deals not closed won or lost.")

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


@runtime_checkable
class CRM(Protocol):
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

    async def activities(self, company_id: str) -> list[Activity]:
        """Touches logged on the company, oldest first."""
        ...
