"""Read a HubSpot list (HubSpot now calls them segments) for a campaign: the people on it, their
companies, when the CRM last saw activity with them, and their open deals.

Lists API v3: `GET /crm/v3/lists/{listId}` gives the list's `objectTypeId` (`0-1` contacts,
`0-2` companies); `GET /crm/v3/lists/{listId}/memberships` gives the member record ids, sorted by
id, at most 250 a page with `paging.next.after` cursors. Records come from
`POST /crm/v3/objects/{type}/batch/read` (100 ids a call); a company's contacts and the deals of a
contact or company from v4 association listings (500 a page). Scopes: `crm.lists.read` besides
the objects' read scopes (contacts, companies, deals).

"Recent activity" is the later of the contact's `notes_last_updated` (HubSpot's "Last Activity
Date": the last call, email, meeting, note or task logged on the record) and
`notes_last_contacted` ("Last Contacted"). A deal is open unless `hs_is_closed` is true or its
`dealstage` is one the caller names as closed.

Product signals (`pql_properties`: signal -> company property, e.g. `signups: product_signups`)
are read in the same company batch read, which returns only the properties it is asked for; each
non-empty value is kept with its source, "hubspot company 123 property product_signups".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from tools.crm import ListMember, normalise_linkedin
from tools.http import HttpClient, ValidationError, collect_pages

__all__ = ["read_hubspot_list", "company_signals", "LIST_CONTACT_PROPS", "LIST_COMPANY_PROPS"]

CONTACTS, COMPANIES = "0-1", "0-2"
LIST_CONTACT_PROPS = [
    "email",
    "firstname",
    "lastname",
    "jobtitle",
    "hs_linkedin_url",
    "associatedcompanyid",
    "notes_last_updated",
    "notes_last_contacted",
]
LIST_COMPANY_PROPS = ["name", "domain", "website", "industry", "description"]
MEMBERS_PAGE = 250  # the memberships endpoint's maximum
MAX_PAGES = 400  # 100,000 members: past any list a campaign is run from


def _when(value: Any) -> datetime | None:
    """A HubSpot datetime property: ISO 8601 in v3, epoch milliseconds in older payloads."""
    if value in (None, ""):
        return None
    text = str(value)
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, UTC)
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _unique(ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ids))


async def _members(http: HttpClient, list_id: str) -> list[str]:
    async def page(after: str | None) -> tuple[list[str], str | None]:
        resp = await http.request(
            "GET",
            f"/crm/v3/lists/{quote(list_id, safe='')}/memberships",
            params={"limit": MEMBERS_PAGE, **({"after": after} if after else {})},
            idempotent=True,
        )
        data = resp.json()
        ids = [str(r["recordId"]) for r in data.get("results") or []]
        nxt = ((data.get("paging") or {}).get("next") or {}).get("after")
        return ids, (str(nxt) if nxt else None)

    return await collect_pages("hubspot", f"members of list {list_id}", page, max_pages=MAX_PAGES)


async def _associated(http: HttpClient, obj: str, obj_id: str, to: str) -> list[str]:
    async def page(after: str | None) -> tuple[list[str], str | None]:
        resp = await http.request(
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


async def _read(
    http: HttpClient, obj: str, ids: Sequence[str], props: list[str]
) -> dict[str, dict[str, Any]]:
    """Properties of each record found, by id (a deleted member is simply absent)."""
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 100):
        resp = await http.request(
            "POST",
            f"/crm/v3/objects/{obj}/batch/read",
            json={"properties": props, "inputs": [{"id": x} for x in ids[i : i + 100]]},
            idempotent=True,
        )
        for r in resp.json().get("results") or []:
            out[str(r["id"])] = r.get("properties") or {}
    return out


def company_signals(
    firm: str | None, props: Mapping[str, Any], signals: Mapping[str, str]
) -> tuple[tuple[str, str, str], ...]:
    """(signal, value, source) of each product-signal property (`signals`: signal -> property)
    the company's `props` have a value in; a list's members and `find_company` read them alike."""
    out = []
    for sig, name in signals.items():
        value = props.get(name)
        text = "" if value is None else " ".join(str(value).split())
        if firm and text:
            out.append((sig, text, f"hubspot company {firm} property {name}"))
    return tuple(out)


async def read_hubspot_list(
    http: HttpClient,
    list_id: str,
    *,
    closed_stages: Sequence[str] = (),
    pql_properties: Mapping[str, str] | None = None,
) -> list[ListMember]:
    """Every contact on the list (or at the companies on it), in the list's order."""
    info = (
        await http.request("GET", f"/crm/v3/lists/{quote(list_id, safe='')}", idempotent=True)
    ).json()
    kind = str((info.get("list") or {}).get("objectTypeId") or "")
    if kind not in (CONTACTS, COMPANIES):
        raise ValidationError(
            "hubspot", f"list {list_id} holds objects of type {kind or '?'}, not contacts/companies"
        )
    ids = await _members(http, list_id)
    via: dict[str, str] = {}  # contact id -> the listed company that brought them in
    if kind == COMPANIES:
        for co in ids:
            for person in await _associated(http, "companies", co, "contacts"):
                via.setdefault(person, co)
        ids = list(via)
    contacts = await _read(http, "contacts", _unique(ids), LIST_CONTACT_PROPS)
    company_of = {
        cid: via.get(cid) or str(p.get("associatedcompanyid") or "") or None
        for cid, p in contacts.items()
    }
    company_ids = _unique([c for c in company_of.values() if c])
    signals = dict(pql_properties or {})
    props = _unique([*LIST_COMPANY_PROPS, *signals.values()])
    companies = await _read(http, "companies", company_ids, props)
    deals_of: dict[str, list[str]] = {}
    for obj, oids in (("companies", company_ids), ("contacts", list(contacts))):
        for oid in oids:
            deals_of[f"{obj}/{oid}"] = await _associated(http, obj, oid, "deals")
    all_deals = _unique([d for ds in deals_of.values() for d in ds])
    deals = await _read(http, "deals", all_deals, ["dealstage", "hs_is_closed"])
    closed = {s.strip().lower() for s in closed_stages}
    open_ids = {
        d
        for d, p in deals.items()
        if str(p.get("hs_is_closed") or "").lower() != "true"
        and str(p.get("dealstage") or "").lower() not in closed
    }
    out = []
    for cid in _unique(ids):
        p = contacts.get(cid)
        if p is None:
            continue
        firm = company_of.get(cid)
        c = companies.get(firm or "", {})
        mine = {*deals_of.get(f"contacts/{cid}", []), *deals_of.get(f"companies/{firm}", [])}
        acts = [a for k in ("notes_last_updated", "notes_last_contacted") if (a := _when(p.get(k)))]
        values = {
            "company": c.get("name"),
            "domain": c.get("domain"),
            "website": c.get("website"),
            "segment": c.get("industry"),
            "description": c.get("description"),
            "contact_name": " ".join(x for x in (p.get("firstname"), p.get("lastname")) if x),
            "contact_title": p.get("jobtitle"),
            "email": p.get("email"),
            "linkedin_url": normalise_linkedin(p.get("hs_linkedin_url")),
        }
        out.append(
            ListMember(
                record=f"contact {cid}",
                values={k: str(v).strip() for k, v in values.items() if v and str(v).strip()},
                last_activity=max(acts) if acts else None,
                open_deals=len(mine & open_ids),
                pql=company_signals(firm, c, signals),
            )
        )
    return out
