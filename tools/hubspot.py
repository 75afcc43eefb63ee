"""HubSpot CRM client (CRM v3 objects, v4 associations) behind the `CRM` Protocol.

Auth: a private-app access token (`GTM_HUBSPOT_TOKEN`), sent as a Bearer token. Scopes used
(`REQUIRED_SCOPES`, checked by `gtm doctor`): `crm.objects.companies.read/write`,
`crm.objects.contacts.read/write` (notes and tasks are engagements HubSpot gates with the
contacts scopes), `crm.objects.deals.read` (open deals), `crm.objects.owners.read` (the
account owner, read at intake) and `communication_preferences.write` (the opt-out write-back;
HubSpot's v4 subscriptions guide: `.write` or `communication_preferences.read_write` grants it).
A campaign from a HubSpot list also needs `crm.lists.read` (`LIST_SCOPES`; `check` names it).

- Find-or-create: search (`filterGroups`/`sorts`/`properties`/`limit`/`after`) by domain or
  email, create only if nothing matches. Creates carry `associations`. A record that exists is
  never updated: what the CRM holds wins over the account list.
- Touches are notes associated with the company and the contact; tasks likewise.
- Product signals: research asks `find_company_with_signals` for the company properties the
  playbook's `crm_lists.pql_properties.hubspot` names; they join the search's `properties`, so
  nothing more is requested when none are named (`tools.hubspot_lists.company_signals`).
- HubSpot has no idempotency keys, so each note and task carries a `gtm<hash>` token
  (`tools.crm_notes`), and writing searches for the token first. Search is eventually
  consistent (a few seconds); the outbox is the first guard against a second write, this is
  the second.
- Associations (deals and notes of a company) are read page by page (500 a page, `after`
  cursors) up to `MAX_PAGES`; a listing that does not end is a `PagingError`, never a partial
  answer.
- Limits: 100 requests per 10 s per private app, and 5 search requests per second per account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from aiolimiter import AsyncLimiter

from gtm.domain.crm_lists import CrmName
from gtm.domain.models import Account, Contact
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
from tools.http import HttpClient, ScopeError, UnavailableError, collect_pages
from tools.hubspot_lists import company_signals, read_hubspot_list

__all__ = ["HubSpotCRM", "ASSOC"]

# HUBSPOT_DEFINED association type ids (v4 associations documentation).
ASSOC = {
    ("contacts", "companies"): 279,
    ("notes", "companies"): 190,
    ("notes", "contacts"): 202,
    ("tasks", "companies"): 192,
    ("tasks", "contacts"): 204,
}
COMPANY_PROPS = ["name", "domain", "lifecyclestage", "hubspot_owner_id"]
CONTACT_PROPS = [
    "email",
    "firstname",
    "lastname",
    "jobtitle",
    "hs_linkedin_url",
    "hs_email_optout",
    "associatedcompanyid",
]
MAX_PAGES = 100  # of 500 associations: 50,000 deals or notes on one company is not a real one


def _assoc(to_id: str, type_id: int) -> dict[str, Any]:
    return {
        "to": {"id": to_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    }


class HubSpotCRM:
    def __init__(self, client: HttpClient, *, token: str = "") -> None:
        self._http = client
        self._token = token
        self._search = AsyncLimiter(4, 1.0)
        self._owners: dict[str, str] = {}

    @classmethod
    def connect(cls, base_url: str, token: str, *, timeout: float = 20.0) -> HubSpotCRM:
        return cls(
            HttpClient(
                "hubspot",
                base_url,
                headers={"Authorization": f"Bearer {token}"},
                secrets=[token],
                rate=(100, 10.0),
                timeout=timeout,
            ),
            token=token,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ plumbing

    async def _search_one(
        self, obj: str, prop: str, value: str, props: list[str], operator: str = "EQ"
    ) -> dict[str, Any] | None:
        body = {
            "filterGroups": [
                {"filters": [{"propertyName": prop, "operator": operator, "value": value}]}
            ],
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "properties": props,
            "limit": 1,
            "after": "0",
        }
        async with self._search:
            resp = await self._http.request(
                "POST", f"/crm/v3/objects/{obj}/search", json=body, idempotent=True
            )
        results = resp.json().get("results") or []
        return results[0] if results else None

    async def _create(self, obj: str, props: dict[str, Any], assoc: list[dict[str, Any]]) -> str:
        resp = await self._http.request(
            "POST",
            f"/crm/v3/objects/{obj}",
            json={"properties": props, "associations": assoc},
            idempotent=False,
        )
        return str(resp.json()["id"])

    async def _find_or_create(
        self, find: Callable[[], Awaitable[str | None]], create: Callable[[], Awaitable[str]]
    ) -> str:
        """Create a record unless `find` sees it. A create that broke off after HubSpot may have
        acted (5xx, timeout) is never blindly repeated: look again first, then create."""
        for attempt in range(4):
            if attempt and (found := await find()) is not None:
                return found
            try:
                return await create()
            except UnavailableError as exc:
                if not exc.maybe_applied or attempt == 3:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _associated(self, obj: str, obj_id: str, to: str) -> list[str]:
        """Ids of every `to` record associated with the record, read to the last page."""

        async def page(after: str | None) -> tuple[list[str], str | None]:
            resp = await self._http.request(
                "GET",
                f"/crm/v4/objects/{obj}/{obj_id}/associations/{to}",
                params={"limit": 500, **({"after": after} if after else {})},
                idempotent=True,
            )
            data = resp.json()
            ids = [str(r["toObjectId"]) for r in data.get("results") or []]
            nxt = ((data.get("paging") or {}).get("next") or {}).get("after")
            return ids, (str(nxt) if nxt else None)

        return await collect_pages(
            "hubspot", f"{to} associated with {obj} {obj_id}", page, max_pages=MAX_PAGES
        )

    async def _batch_read(self, obj: str, ids: list[str], props: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(0, len(ids), 100):
            resp = await self._http.request(
                "POST",
                f"/crm/v3/objects/{obj}/batch/read",
                json={"properties": props, "inputs": [{"id": x} for x in ids[i : i + 100]]},
                idempotent=True,
            )
            out += resp.json().get("results", [])
        return out

    async def _owner(self, owner_id: str | None) -> str | None:
        if not owner_id:
            return None
        if owner_id not in self._owners:
            resp = await self._http.request("GET", f"/crm/v3/owners/{owner_id}", idempotent=True)
            self._owners[owner_id] = str(resp.json().get("email") or owner_id)
        return self._owners[owner_id]

    async def _company(
        self, raw: dict[str, Any], signals: Mapping[str, str] | None = None
    ) -> CompanyRecord:
        p = raw.get("properties") or {}
        deal_ids = await self._associated("companies", str(raw["id"]), "deals")
        deals = await self._batch_read("deals", deal_ids, ["hs_is_closed", "dealstage"])
        open_deals = sum(
            (d.get("properties") or {}).get("hs_is_closed") not in ("true", True) for d in deals
        )
        return CompanyRecord(
            id=str(raw["id"]),
            domain=(p.get("domain") or "").lower(),
            name=p.get("name") or "",
            lifecycle_stage=p.get("lifecyclestage") or None,
            owner=await self._owner(p.get("hubspot_owner_id")),
            open_deals=open_deals,
            pql=company_signals(str(raw["id"]), p, signals or {}),
        )

    @staticmethod
    def _contact(raw: dict[str, Any]) -> ContactRecord:
        p = raw.get("properties") or {}
        name = " ".join(x for x in (p.get("firstname"), p.get("lastname")) if x)
        company = p.get("associatedcompanyid")
        return ContactRecord(
            id=str(raw["id"]),
            company_id=str(company) if company else None,
            name=name or (p.get("email") or ""),
            title=p.get("jobtitle") or "",
            email=(p.get("email") or None),
            linkedin_url=p.get("hs_linkedin_url") or None,
            opted_out=str(p.get("hs_email_optout") or "").lower() == "true",
        )

    REQUIRED_SCOPES = (
        "crm.objects.companies.read",
        "crm.objects.companies.write",
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.objects.deals.read",
        "crm.objects.owners.read",
        "communication_preferences.write",
    )
    LIST_SCOPES = ("crm.lists.read",)
    """Needed only to run a campaign from a HubSpot list (`gtm run --from hubspot:list/ID`)."""
    ALSO_GRANTED_BY = {"communication_preferences.write": "communication_preferences.read_write"}
    """A scope another one grants too (HubSpot lists either for the v4 subscription writes)."""

    async def check(self) -> str:
        """Auth, scopes and rate-limit headroom, reading only. The token's scopes are compared
        with `REQUIRED_SCOPES` first, so a missing one is named rather than met later as a 403
        on whichever call needs it (an owner lookup at intake, a note after a send)."""
        resp = await self._http.request(
            "POST",
            "/oauth/v2/private-apps/get/access-token-info",
            json={"tokenKey": self._token},
            idempotent=True,
        )
        scopes = set(resp.json().get("scopes") or [])
        missing = [
            sc
            for sc in self.REQUIRED_SCOPES
            if sc not in scopes and self.ALSO_GRANTED_BY.get(sc) not in scopes
        ]
        if missing:
            raise ScopeError("hubspot", f"the private app lacks scopes: {', '.join(missing)}")
        await self._http.request(
            "GET", "/crm/v3/objects/companies", params={"limit": 1}, idempotent=True
        )
        h = self._http.last_headers
        headroom = (
            f"{h.get('X-HubSpot-RateLimit-Remaining')}/{h.get('X-HubSpot-RateLimit-Max')} "
            "requests left in the window"
            if "X-HubSpot-RateLimit-Max" in h
            else "no rate-limit headers"
        )
        lists = [sc for sc in self.LIST_SCOPES if sc not in scopes]
        note = f"; campaigns from lists also need {', '.join(lists)}" if lists else ""
        return f"token valid, scopes ok, {headroom}{note}"

    async def list_members(
        self,
        list_id: str,
        *,
        closed_stages: Sequence[str] = (),
        pql_properties: Mapping[str, str] | None = None,
    ) -> list[ListMember]:
        """The people on a HubSpot list (`tools.hubspot_lists`)."""
        return await read_hubspot_list(
            self._http, list_id, closed_stages=closed_stages, pql_properties=pql_properties or {}
        )

    async def erase_person(self, emails: Sequence[str], urls: Sequence[str]) -> int | str:
        """Nothing is erased here: HubSpot keeps the contact, and a person must delete it."""
        return await still_held(self, emails, urls, how="HubSpot: the contact's GDPR delete")

    # ------------------------------------------------------------------ CRM Protocol

    async def find_company(self, domain: str) -> CompanyRecord | None:
        return await self.find_company_with_signals(domain, {})

    async def find_company_with_signals(
        self, domain: str, pql_properties: Mapping[CrmName, Mapping[str, str]]
    ) -> CompanyRecord | None:
        """The company, with the product-signal properties `pql_properties["hubspot"]` names
        read in the same search (which returns only the properties it asks for)."""
        signals = dict(pql_properties.get("hubspot") or {})
        props = list(dict.fromkeys([*COMPANY_PROPS, *signals.values()]))
        raw = await self._search_one("companies", "domain", domain.strip().lower(), props)
        return await self._company(raw, signals) if raw else None

    async def upsert_company(self, account: Account) -> CompanyRecord:
        found = await self.find_company(account.domain)
        if found:
            return found

        async def again() -> str | None:
            hit = await self.find_company(account.domain)
            return hit.id if hit else None

        cid = await self._find_or_create(
            again,
            lambda: self._create(
                "companies", {"name": account.company, "domain": account.domain.lower()}, []
            ),
        )
        return CompanyRecord(id=cid, domain=account.domain.lower(), name=account.company)

    async def find_contact(self, contact: Contact) -> ContactRecord | None:
        raw = None
        if contact.email:
            raw = await self._search_one(
                "contacts", "email", contact.email.strip().lower(), CONTACT_PROPS
            )
        url = normalise_linkedin(contact.linkedin_url)
        if raw is None and url:
            raw = await self._search_one("contacts", "hs_linkedin_url", url, CONTACT_PROPS)
        return self._contact(raw) if raw else None

    async def upsert_contact(self, contact: Contact, company_id: str) -> ContactRecord:
        found = await self.find_contact(contact)
        if found is None:
            first, _, last = contact.name.partition(" ")
            props = {
                "firstname": first,
                "lastname": last,
                "jobtitle": contact.title,
                **({"email": contact.email.strip().lower()} if contact.email else {}),
                **(
                    {"hs_linkedin_url": normalise_linkedin(contact.linkedin_url)}
                    if contact.linkedin_url
                    else {}
                ),
            }

            async def again() -> str | None:
                hit = await self.find_contact(contact)
                return hit.id if hit else None

            cid = await self._find_or_create(
                again,
                lambda: self._create(
                    "contacts", props, [_assoc(company_id, ASSOC[("contacts", "companies")])]
                ),
            )
            found = ContactRecord(
                id=cid,
                company_id=company_id,
                name=contact.name,
                title=contact.title,
                email=props.get("email"),
                linkedin_url=props.get("hs_linkedin_url"),
            )
        # v4 default association: idempotent, so an existing contact is linked too.
        await self._http.request(
            "PUT",
            f"/crm/v4/objects/contacts/{found.id}/associations/default/companies/{company_id}",
            idempotent=True,
        )
        return found.model_copy(update={"company_id": company_id})

    async def _keyed(self, obj: str, body_prop: str, key: str) -> str | None:
        hit = await self._search_one(
            obj, body_prop, token_for(key), ["hs_object_id"], "CONTAINS_TOKEN"
        )
        return str(hit["id"]) if hit else None

    async def log_activity(self, activity: Activity) -> str:
        existing = await self._keyed("notes", "hs_note_body", activity.key)
        if existing:
            return existing
        body = encode_note(activity)
        assoc = [_assoc(activity.company_id, ASSOC[("notes", "companies")])]
        if activity.contact_id:
            assoc.append(_assoc(activity.contact_id, ASSOC[("notes", "contacts")]))
        return await self._find_or_create(
            lambda: self._keyed("notes", "hs_note_body", activity.key),
            lambda: self._create(
                "notes", {"hs_timestamp": utc_z(activity.at), "hs_note_body": body}, assoc
            ),
        )

    async def create_task(self, task: Task) -> str:
        existing = await self._keyed("tasks", "hs_task_body", task.key)
        if existing:
            return existing
        props: dict[str, Any] = {
            "hs_timestamp": utc_z(task.due_at),
            "hs_task_subject": task.title,
            "hs_task_body": encode_task(task),
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH",
        }
        assoc = [_assoc(task.company_id, ASSOC[("tasks", "companies")])]
        if task.contact_id:
            assoc.append(_assoc(task.contact_id, ASSOC[("tasks", "contacts")]))
        return await self._find_or_create(
            lambda: self._keyed("tasks", "hs_task_body", task.key),
            lambda: self._create("tasks", props, assoc),
        )

    async def mark_opted_out(self, contact: Contact) -> bool:
        """Unsubscribe the person's address from all email. `hs_email_optout` is HubSpot's own
        record of that and is read-only; the communication preferences API (v4
        `POST statuses/{address}/unsubscribe-all`, channel EMAIL; scope
        `communication_preferences.write` or `.read_write`, in `REQUIRED_SCOPES` so `gtm doctor`
        names it before an opt-out has to be written) is what sets it. Repeating it leaves the
        same state. False when HubSpot has no such contact or no address for them: HubSpot
        keeps no LinkedIn opt-out."""
        found = await self.find_contact(contact)
        if found is None or not found.email:
            return False
        await self._http.request(
            "POST",
            f"/communication-preferences/v4/statuses/{quote(found.email, safe='@')}"
            "/unsubscribe-all",
            params={"channel": "EMAIL"},
            idempotent=True,
        )
        return True

    async def activities(self, company_id: str) -> list[Activity]:
        ids = await self._associated("companies", company_id, "notes")
        notes = await self._batch_read("notes", ids, ["hs_note_body", "hs_timestamp"])
        out = []
        for n in notes:
            p = n.get("properties") or {}
            body = p.get("hs_note_body") or ""
            activity = decode_note(body, company_id=company_id, at=str(p.get("hs_timestamp")))
            if activity is not None:  # else a note a person wrote, not one of ours
                out.append(activity)
        return sorted(out, key=lambda a: a.at)
