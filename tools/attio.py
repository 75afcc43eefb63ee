"""Attio CRM client (REST v2) behind the `CRM` Protocol.

Auth: an API key or access token (`GTM_ATTIO_TOKEN`) as a Bearer token, with the scopes in
`REQUIRED_SCOPES` (Attio's reference lists them per endpoint: tasks also need
`user_management:read`), plus `list_entry:read-write` and `list_configuration:read` when
`GTM_ATTIO_LIST` is set (reading the list and asserting its entries need both). A `read-write`
scope grants its `read`. `gtm doctor` names any that is missing before a run.

- Companies and people are found by their unique attribute (`domains`, `email_addresses`) and
  created, when missing, by asserting that attribute alone (`PUT .../records?matching_attribute=`),
  which finds or creates in one idempotent call. An assert *replaces* every other attribute it
  carries, so it never carries any: name, job title, LinkedIn and company are then written with
  `PATCH` only where the record has no value. What the CRM already holds always wins over the
  account list. Attribute values are always arrays.
- Touches are plaintext notes on the company and on the person. Tasks link both. Each carries
  a `gtm<hash>` token (`tools.crm_notes`); writing lists the parent's notes or tasks *to the
  last page* and skips a token already there, because Attio has no idempotency keys.
- Optional attributes, read when the workspace has them: `lifecycle_stage` (select) and
  `owner` (actor reference) on companies, `opted_out` (checkbox) on people. Open deals come
  from the standard deals object (`associated_company`, `stage` not Won or Lost), every page.
- Product signals: research asks `find_company_with_signals` for the company attributes the
  playbook's `crm_lists.pql_properties.attio` names, read from the record found, value by value
  as a list campaign reads them (`tools.attio_lists.company_signals`).
- Paging: notes 50 a page (Attio's maximum), tasks and records 500, by `offset`, up to
  `MAX_PAGES`; a listing that does not end is a `PagingError`, never a partial answer.
- Limits: 100 reads and 25 writes per second.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiolimiter import AsyncLimiter

from gtm.domain.crm_lists import CrmName
from gtm.domain.models import Account, Contact
from tools.attio_lists import company_signals, read_attio_list
from tools.crm import (
    Activity,
    CompanyRecord,
    ContactRecord,
    ListMember,
    Task,
    normalise_linkedin,
    still_held,
)
from tools.crm_notes import decode_note, encode_note, encode_task, token_for, utc_z
from tools.http import HttpClient, NotFoundError, ScopeError, ValidationError, collect_pages

__all__ = ["AttioCRM"]

_CLOSED = ("won", "lost")
_MULTISELECT = ("domains", "email_addresses")  # PATCH appends to these instead of replacing
MAX_PAGES = 200  # 10,000 notes, 100,000 tasks or deals on one record: past any real one
_PAGE = {"notes": 50, "tasks": 500, "records": 500}


_FILLED = ("value", "full_name", "first_name", "last_name", "email_address", "domain")


def _first(values: dict[str, Any], slug: str) -> dict[str, Any] | None:
    items = values.get(slug) or []
    return items[0] if items else None


def _has(values: dict[str, Any], slug: str) -> bool:
    """Whether the record holds a value for the attribute (an empty name counts as none)."""
    return any(
        any(item.get(k) for k in (*_FILLED, "target_record_id")) for item in values.get(slug) or []
    )


def _granted(scopes: set[str], need: str) -> bool:
    return need in scopes or (
        need.endswith(":read") and f"{need.removesuffix(':read')}:read-write" in scopes
    )


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
        "user_management:read",
    )
    LIST_SCOPES = ("list_entry:read-write", "list_configuration:read")
    READ_LIST_SCOPES = ("list_entry:read", "list_configuration:read")
    """Needed only to run a campaign from an Attio list (`gtm run --from attio:list/SLUG`)."""

    async def check(self) -> str:
        """Token, scopes and the configured list, reading only."""
        me = (await self._http.request("GET", "/v2/self", idempotent=True)).json()
        if not me.get("active"):
            raise ScopeError("attio", "the token is not active")
        scopes = set(str(me.get("scope", "")).split())
        need = [*self.REQUIRED_SCOPES, *(self.LIST_SCOPES if self._list else ())]
        missing = [sc for sc in need if not _granted(scopes, sc)]
        if missing:
            raise ScopeError("attio", f"the token lacks scopes: {', '.join(missing)}")
        if self._list:
            await self._http.request("GET", f"/v2/lists/{self._list}", idempotent=True)
        lists = [sc for sc in self.READ_LIST_SCOPES if not _granted(scopes, sc)]
        note = f"; campaigns from lists also need {', '.join(lists)}" if lists else ""
        return f"token active for {me.get('workspace_name', 'the workspace')}, scopes ok{note}"

    async def list_members(
        self,
        list_id: str,
        *,
        closed_stages: Sequence[str] = (),
        pql_properties: Mapping[str, str] | None = None,
    ) -> list[ListMember]:
        """The people on an Attio list (`tools.attio_lists`)."""
        return await read_attio_list(
            self._http, list_id, closed_stages=closed_stages, pql_properties=pql_properties or {}
        )

    async def erase_person(self, emails: Sequence[str], urls: Sequence[str]) -> int | str:
        """Nothing is erased here: Attio keeps the person record, and a person must delete it."""
        return await still_held(self, emails, urls, how="Attio: delete the person record")

    # ------------------------------------------------------------------ plumbing

    async def _write(self, method: str, url: str, body: dict[str, Any], **kw: Any) -> Any:
        async with self._writes:
            resp = await self._http.request(method, url, json=body, **kw)
        return resp.json()

    async def _query(self, obj: str, flt: dict[str, Any]) -> dict[str, Any] | None:
        resp = await self._http.request(
            "POST",
            f"/v2/objects/{obj}/records/query",
            json={"filter": flt, "limit": 1},
            idempotent=True,
        )
        found = resp.json().get("data") or []
        return dict(found[0]) if found else None

    async def _listing(
        self, what: str, kind: str, get: Callable[[int, int], Awaitable[list[dict[str, Any]]]]
    ) -> list[dict[str, Any]]:
        """Every item of an offset-paged listing; `get(limit, offset)` returns one page."""
        size = _PAGE[kind]

        async def page(offset: int | None) -> tuple[list[dict[str, Any]], int | None]:
            start = offset or 0
            items = list(await get(size, start))
            return items, (start + len(items) if len(items) >= size else None)

        return await collect_pages("attio", what, page, max_pages=MAX_PAGES)

    async def _query_all(self, obj: str, flt: dict[str, Any]) -> list[dict[str, Any]]:
        async def get(limit: int, offset: int) -> list[dict[str, Any]]:
            resp = await self._http.request(
                "POST",
                f"/v2/objects/{obj}/records/query",
                json={"filter": flt, "limit": limit, "offset": offset},
                idempotent=True,
            )
            return list(resp.json().get("data") or [])

        return await self._listing(f"{obj} records", "records", get)

    async def _assert(self, obj: str, attr: str, key: list[dict[str, Any]]) -> dict[str, Any]:
        """Find or create the record holding `key` in its unique attribute `attr`, carrying
        nothing else: an assert would replace any other attribute of a record that exists."""
        data = await self._write(
            "PUT",
            f"/v2/objects/{obj}/records",
            {"data": {"values": {attr: key}}},
            params={"matching_attribute": attr},
            idempotent=True,
        )
        return dict(data["data"])

    async def _fill(self, obj: str, raw: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
        """Write only the attributes the record has no value for; the CRM's own values stay."""
        held = raw.get("values") or {}
        gaps = {slug: v for slug, v in wanted.items() if v and not _has(held, slug)}
        if not gaps:
            return raw
        data = await self._write(
            "PATCH",
            f"/v2/objects/{obj}/records/{raw['id']['record_id']}",
            {"data": {"values": gaps}},
            # PATCH appends to multiselect attributes: a blind repeat could add a value twice.
            idempotent=not any(slug in _MULTISELECT for slug in gaps),
        )
        return dict(data["data"])

    async def _company(
        self, raw: dict[str, Any], signals: Mapping[str, str] | None = None
    ) -> CompanyRecord:
        rid = raw["id"]["record_id"]
        v = raw.get("values") or {}
        domain = (_first(v, "domains") or {}).get("domain", "")
        stage = ((_first(v, "lifecycle_stage") or {}).get("option") or {}).get("title")
        owner = (_first(v, "owner") or {}).get("referenced_actor_id")
        try:
            deals = await self._query_all(
                "deals", {"associated_company": {"target_record_id": {"$eq": rid}}}
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
            pql=company_signals(str(rid), v, signals or {}),
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

    async def _find_person(self, contact: Contact) -> dict[str, Any] | None:
        found = None
        if contact.email:
            found = await self._query(
                "people",
                {"email_addresses": {"email_address": {"$eq": contact.email.strip().lower()}}},
            )
        url = normalise_linkedin(contact.linkedin_url)
        if found is None and url:
            found = await self._query("people", {"linkedin": {"$eq": url}})
        return found

    # ------------------------------------------------------------------ CRM Protocol

    async def find_company(self, domain: str) -> CompanyRecord | None:
        return await self.find_company_with_signals(domain, {})

    async def find_company_with_signals(
        self, domain: str, pql_properties: Mapping[CrmName, Mapping[str, str]]
    ) -> CompanyRecord | None:
        """The company, with the product-signal attributes `pql_properties["attio"]` names
        read from the record's values (a record query returns every attribute)."""
        found = await self._query(
            "companies", {"domains": {"domain": {"$eq": domain.strip().lower()}}}
        )
        signals = pql_properties.get("attio") or {}
        return await self._company(found, signals) if found else None

    async def upsert_company(self, account: Account) -> CompanyRecord:
        domain = account.domain.strip().lower()
        raw = await self._query("companies", {"domains": {"domain": {"$eq": domain}}})
        if raw is None:
            raw = await self._assert("companies", "domains", [{"domain": domain}])
        name = [{"value": account.company}] if account.company.strip() else None
        raw = await self._fill("companies", raw, {"name": name})
        record = await self._company(raw)
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
        found = await self._find_person(contact)
        return self._person(found) if found else None

    async def upsert_contact(self, contact: Contact, company_id: str) -> ContactRecord:
        """Find the person by email, then profile URL; create them only when neither matches.
        A person found keeps every value the CRM holds (name, title, profile, company): only
        the empty ones are filled from the account list."""
        first, _, last = contact.name.partition(" ")
        email = contact.email.strip().lower() if contact.email else None
        url = normalise_linkedin(contact.linkedin_url)
        wanted: dict[str, Any] = {
            "name": [{"first_name": first, "last_name": last, "full_name": contact.name}]
            if contact.name.strip()
            else None,
            "job_title": [{"value": contact.title}] if contact.title else None,
            "linkedin": [{"value": url}] if url else None,
            "company": [{"target_object": "companies", "target_record_id": company_id}],
        }
        raw = await self._find_person(contact)
        if raw is None and email:
            raw = await self._assert("people", "email_addresses", [{"email_address": email}])
        if raw is None:  # no email to assert on, and nobody with that profile URL
            values = {slug: v for slug, v in wanted.items() if v}
            data = await self._write(
                "POST", "/v2/objects/people/records", {"data": {"values": values}}, idempotent=False
            )
            return self._person(data["data"])
        if email:
            wanted["email_addresses"] = [{"email_address": email}]
        return self._person(await self._fill("people", raw, wanted))

    async def _notes(self, parent: str, record_id: str) -> list[dict[str, Any]]:
        """Every note on the record: Attio gives at most 50 a page."""

        async def get(limit: int, offset: int) -> list[dict[str, Any]]:
            params = {"parent_object": parent, "parent_record_id": record_id}
            resp = await self._http.request(
                "GET",
                "/v2/notes",
                params={**params, "limit": limit, "offset": offset},
                idempotent=True,
            )
            return list(resp.json().get("data") or [])

        return await self._listing(f"notes on {parent} {record_id}", "notes", get)

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

        async def get(limit: int, offset: int) -> list[dict[str, Any]]:
            resp = await self._http.request(
                "GET",
                "/v2/tasks",
                params={
                    "linked_object": "companies",
                    "linked_record_id": task.company_id,
                    "limit": limit,
                    "offset": offset,
                },
                idempotent=True,
            )
            return list(resp.json().get("data") or [])

        for t in await self._listing(f"tasks on companies {task.company_id}", "tasks", get):
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

    async def mark_opted_out(self, contact: Contact) -> bool:
        """Tick the optional `opted_out` checkbox this client reads (Attio has no standard
        opt-out attribute); False when the person or the attribute is not in the workspace."""
        raw = await self._find_person(contact)
        if raw is None:
            return False
        path = f"/v2/objects/people/records/{raw['id']['record_id']}"
        body = {"data": {"values": {"opted_out": [{"value": True}]}}}
        try:
            await self._write("PATCH", path, body, idempotent=True)
        except (NotFoundError, ValidationError):  # no such attribute here
            return False
        return True

    async def activities(self, company_id: str) -> list[Activity]:
        out = []
        for n in await self._notes("companies", company_id):
            text = n.get("content_plaintext") or ""
            activity = decode_note(text, company_id=company_id, at=str(n.get("created_at")))
            if activity is not None:
                out.append(activity)
        return sorted(out, key=lambda a: a.at)
