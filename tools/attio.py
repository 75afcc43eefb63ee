"""Attio CRM client (REST v2) behind the `CRM` Protocol.

Auth: an API key or access token (`GTM_ATTIO_TOKEN`) as a Bearer token, with scopes
`record_permission:read-write`, `object_configuration:read`, `note:read-write`,
`task:read-write`, and `list_entry:read-write` when `GTM_ATTIO_LIST` is set.

- Companies and people are *asserted*: `PUT .../records?matching_attribute=domains` (or
  `email_addresses`), which finds or creates in one idempotent call. Attribute values are
  always arrays.
- Touches are plaintext notes on the company and on the person. Tasks link both. Each carries
  a `gtm<hash>` token (`tools.crm_notes`); writing lists the parent's notes or tasks and skips
  a token already there, because Attio has no idempotency keys.
- Optional attributes, read when the workspace has them: `lifecycle_stage` (select) and
  `owner` (actor reference) on companies, `opted_out` (checkbox) on people. Open deals come
  from the standard deals object (`associated_company`, `stage` not Won or Lost).
- Limits: 100 reads and 25 writes per second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiolimiter import AsyncLimiter

from gtm.domain.models import Account, Contact
from tools.crm import (
    Activity,
    CompanyRecord,
    ContactRecord,
    Task,
    normalise_linkedin,
    still_held,
)
from tools.crm_notes import decode_note, encode_note, encode_task, token_for, utc_z
from tools.http import HttpClient, NotFoundError, ScopeError

__all__ = ["AttioCRM"]

_CLOSED = ("won", "lost")


def _first(values: dict[str, Any], slug: str) -> dict[str, Any] | None:
    items = values.get(slug) or []
    return items[0] if items else None


class AttioCRM:
    def __init__(self, client: HttpClient, *, list_id: str | None = None) -> None:
        self._http = client
        self._writes = AsyncLimiter(25, 1.0)
        self._list = list_id

    @classmethod
    def connect(
        cls, base_url: str, token: str, *, list_id: str | None = None, timeout: float = 20.0
    ) -> AttioCRM:
        client = HttpClient(
            "attio",
            base_url,
            headers={"Authorization": f"Bearer {token}"},
            secrets=[token],
            rate=(100, 1.0),
            timeout=timeout,
        )
        return cls(client, list_id=list_id)

    async def aclose(self) -> None:
        await self._http.aclose()

    REQUIRED_SCOPES = (
        "record_permission:read-write",
        "object_configuration:read",
        "note:read-write",
        "task:read-write",
    )

    async def check(self) -> str:
        """Token, scopes and the configured list, reading only."""
        me = (await self._http.request("GET", "/v2/self", idempotent=True)).json()
        if not me.get("active"):
            raise ScopeError("attio", "the token is not active")
        scopes = set(str(me.get("scope", "")).split())
        need = [*self.REQUIRED_SCOPES, *(["list_entry:read-write"] if self._list else [])]
        missing = [sc for sc in need if sc not in scopes]
        if missing:
            raise ScopeError("attio", f"the token lacks scopes: {', '.join(missing)}")
        if self._list:
            await self._http.request("GET", f"/v2/lists/{self._list}", idempotent=True)
        return f"token active for {me.get('workspace_name', 'the workspace')}, scopes ok"

    async def erase_person(self, emails: Sequence[str], urls: Sequence[str]) -> int | str:
        """Nothing is erased here: Attio keeps the person record, and a person must delete it."""
        return await still_held(self, emails, urls, how="Attio: delete the person record")

    async def _write(self, method: str, url: str, body: dict[str, Any], **kw: Any) -> Any:
        async with self._writes:
            resp = await self._http.request(method, url, json=body, **kw)
        return resp.json()

    async def _query(self, obj: str, flt: dict[str, Any], limit: int = 1) -> list[dict[str, Any]]:
        resp = await self._http.request(
            "POST",
            f"/v2/objects/{obj}/records/query",
            json={"filter": flt, "limit": limit},
            idempotent=True,
        )
        return list(resp.json().get("data") or [])

    async def _company(self, raw: dict[str, Any]) -> CompanyRecord:
        rid = raw["id"]["record_id"]
        v = raw.get("values") or {}
        domain = (_first(v, "domains") or {}).get("domain", "")
        stage = ((_first(v, "lifecycle_stage") or {}).get("option") or {}).get("title")
        owner = (_first(v, "owner") or {}).get("referenced_actor_id")
        try:
            deals = await self._query(
                "deals", {"associated_company": {"target_record_id": {"$eq": rid}}}, limit=100
            )
        except NotFoundError:  # a workspace without the deals object
            deals = []
        open_deals = 0
        for d in deals:
            status = (_first(d.get("values") or {}, "stage") or {}).get("status") or {}
            title = str(status.get("title", "")).lower()
            open_deals += not title.startswith(_CLOSED)
        return CompanyRecord(
            id=rid,
            domain=str(domain).lower(),
            name=(_first(v, "name") or {}).get("value", ""),
            lifecycle_stage=stage,
            owner=owner,
            open_deals=open_deals,
        )

    @staticmethod
    def _person(raw: dict[str, Any]) -> ContactRecord:
        v = raw.get("values") or {}
        name = _first(v, "name") or {}
        company = (_first(v, "company") or {}).get("target_record_id")
        return ContactRecord(
            id=raw["id"]["record_id"],
            company_id=company,
            name=name.get("full_name") or "",
            title=(_first(v, "job_title") or {}).get("value", "") or "",
            email=(_first(v, "email_addresses") or {}).get("email_address"),
            linkedin_url=normalise_linkedin((_first(v, "linkedin") or {}).get("value")),
            opted_out=bool((_first(v, "opted_out") or {}).get("value", False)),
        )

    # ------------------------------------------------------------------ CRM Protocol

    async def find_company(self, domain: str) -> CompanyRecord | None:
        found = await self._query(
            "companies", {"domains": {"domain": {"$eq": domain.strip().lower()}}}
        )
        return await self._company(found[0]) if found else None

    async def upsert_company(self, account: Account) -> CompanyRecord:
        body = {
            "data": {
                "values": {
                    "domains": [{"domain": account.domain.lower()}],
                    "name": [{"value": account.company}],
                }
            }
        }
        data = await self._write(
            "PUT",
            "/v2/objects/companies/records",
            body,
            params={"matching_attribute": "domains"},
            idempotent=True,
        )
        record = await self._company(data["data"])
        if self._list:
            await self._write(
                "PUT",
                f"/v2/lists/{self._list}/entries",
                {
                    "data": {
                        "parent_record_id": record.id,
                        "parent_object": "companies",
                        "entry_values": {},
                    }
                },
                idempotent=True,
            )
        return record

    async def find_contact(self, contact: Contact) -> ContactRecord | None:
        found: list[dict[str, Any]] = []
        if contact.email:
            found = await self._query(
                "people",
                {"email_addresses": {"email_address": {"$eq": contact.email.strip().lower()}}},
            )
        url = normalise_linkedin(contact.linkedin_url)
        if not found and url:
            found = await self._query("people", {"linkedin": {"$eq": url}})
        return self._person(found[0]) if found else None

    async def upsert_contact(self, contact: Contact, company_id: str) -> ContactRecord:
        first, _, last = contact.name.partition(" ")
        values: dict[str, Any] = {
            "name": [{"first_name": first, "last_name": last, "full_name": contact.name}],
            "company": [{"target_object": "companies", "target_record_id": company_id}],
        }
        if contact.title:
            values["job_title"] = [{"value": contact.title}]
        if contact.linkedin_url:
            values["linkedin"] = [{"value": normalise_linkedin(contact.linkedin_url)}]
        if contact.email:
            values["email_addresses"] = [{"email_address": contact.email.strip().lower()}]
            data = await self._write(
                "PUT",
                "/v2/objects/people/records",
                {"data": {"values": values}},
                params={"matching_attribute": "email_addresses"},
                idempotent=True,
            )
            return self._person(data["data"])
        found = await self.find_contact(contact)
        if found:
            return found
        data = await self._write(
            "POST", "/v2/objects/people/records", {"data": {"values": values}}, idempotent=False
        )
        return self._person(data["data"])

    async def _notes(self, parent: str, record_id: str) -> list[dict[str, Any]]:
        resp = await self._http.request(
            "GET",
            "/v2/notes",
            params={"parent_object": parent, "parent_record_id": record_id, "limit": 50},
            idempotent=True,
        )
        return list(resp.json().get("data") or [])

    async def _note(self, parent: str, record_id: str, activity: Activity) -> str:
        token = token_for(activity.key)
        for n in await self._notes(parent, record_id):
            if token in (n.get("content_plaintext") or ""):
                return str(n["id"]["note_id"])
        data = await self._write(
            "POST",
            "/v2/notes",
            {
                "data": {
                    "parent_object": parent,
                    "parent_record_id": record_id,
                    "title": f"{activity.kind.replace('_', ' ')} (gtm)",
                    "format": "plaintext",
                    "content": encode_note(activity),
                    "created_at": utc_z(activity.at),
                }
            },
            idempotent=False,
        )
        return str(data["data"]["id"]["note_id"])

    async def log_activity(self, activity: Activity) -> str:
        note_id = await self._note("companies", activity.company_id, activity)
        if activity.contact_id:
            await self._note("people", activity.contact_id, activity)
        return note_id

    async def create_task(self, task: Task) -> str:
        token = token_for(task.key)
        resp = await self._http.request(
            "GET",
            "/v2/tasks",
            params={"linked_object": "companies", "linked_record_id": task.company_id},
            idempotent=True,
        )
        for t in resp.json().get("data") or []:
            if token in (t.get("content_plaintext") or ""):
                return str(t["id"]["task_id"])
        linked = [{"target_object": "companies", "target_record_id": task.company_id}]
        if task.contact_id:
            linked.append({"target_object": "people", "target_record_id": task.contact_id})
        data = await self._write(
            "POST",
            "/v2/tasks",
            {
                "data": {
                    "content": encode_task(task),
                    "format": "plaintext",
                    "deadline_at": utc_z(task.due_at),
                    "is_completed": False,
                    "linked_records": linked,
                    "assignees": [],
                }
            },
            idempotent=False,
        )
        return str(data["data"]["id"]["task_id"])

    async def activities(self, company_id: str) -> list[Activity]:
        out = []
        for n in await self._notes("companies", company_id):
            text = n.get("content_plaintext") or ""
            activity = decode_note(text, company_id=company_id, at=str(n.get("created_at")))
            if activity is not None:
                out.append(activity)
        return sorted(out, key=lambda a: a.at)
