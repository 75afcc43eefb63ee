"""Read an Attio list for a campaign: the people on it, their companies, when Attio last saw an
email or meeting with them, and their open deals.

`GET /v2/lists/{list}` gives the list's `parent_object` (people or companies); entries come from
`POST /v2/lists/{list}/entries/query` (`limit`/`offset`, 500 a page), each naming its parent
record (`parent_record_id`); records from `GET /v2/objects/{object}/records/{record_id}`; a
company's people and a person's or company's deals from record queries (`company`,
`associated_people`, `associated_company`). Scopes: `list_entry:read` and
`list_configuration:read` besides `record_permission:read` and `object_configuration:read`.

"Recent activity" is the later of the person's `last_email_interaction` and
`last_calendar_interaction` (`interacted_at`; enriched attributes, absent on some plans). A deal
is open unless its `stage` status is Won or Lost (as the CRM client reads it) or a stage the
caller names as closed.

Product signals (`pql_properties`: signal -> company attribute slug, e.g. `signups:
product_signups`) come from the company record already read. Attio gives every attribute as an
array of values, each an object whose shape depends on the attribute's type: number, text and
rating values carry `value`, currency values `currency_value`, select values `option.title`,
status values `status.title`. The first non-empty one is kept with its source, "attio company
<record id> attribute product_signups".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from tools.crm import ListMember, normalise_linkedin
from tools.http import HttpClient, NotFoundError, ValidationError, collect_pages

__all__ = ["read_attio_list", "company_signals"]

PAGE = 500
MAX_PAGES = 200
_CLOSED = ("won", "lost")

Getter = Callable[[int, int], Awaitable[list[dict[str, Any]]]]


def _first(values: dict[str, Any], slug: str) -> dict[str, Any]:
    items = values.get(slug) or []
    return dict(items[0]) if items else {}


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value)
    if "." in text:  # Attio writes nanoseconds; Python reads at most microseconds
        head, _, tail = text.partition(".")
        digits = "".join(ch for ch in tail if ch.isdigit())
        text = f"{head}.{digits[:6]}{tail[len(digits) :]}"
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


_READABLE = (("value",), ("currency_value",), ("option", "title"), ("status", "title"))
"""Where a number, text, rating, currency, select or status value keeps what it says."""


def _plain(item: Mapping[str, Any]) -> str:
    """One attribute value as text, whichever of the readable types it is; "" for others."""
    for path in _READABLE:
        got: Any = item
        for key in path:
            got = got.get(key) if isinstance(got, dict) else None
        if isinstance(got, float) and got.is_integer():
            got = int(got)  # Attio's numbers are floats: 120.0 is "120"
        if isinstance(got, str | int | float):
            return " ".join(str(got).split())
    return ""


def company_signals(
    cid: str | None, values: Mapping[str, Any], signals: Mapping[str, str]
) -> tuple[tuple[str, str, str], ...]:
    """(signal, value, source) of each product-signal attribute (`signals`: signal -> slug) the
    company record's `values` hold a readable value in; a list's members and `find_company` read
    them alike."""
    out = []
    for sig, slug in signals.items():
        text = next((t for v in values.get(slug) or [] if (t := _plain(v))), "")
        if cid and text:
            out.append((sig, text, f"attio company {cid} attribute {slug}"))
    return tuple(out)


async def _all(what: str, get: Getter) -> list[dict[str, Any]]:
    async def page(offset: int | None) -> tuple[list[dict[str, Any]], int | None]:
        start = offset or 0
        items = list(await get(PAGE, start))
        return items, (start + len(items) if len(items) >= PAGE else None)

    return await collect_pages("attio", what, page, max_pages=MAX_PAGES)


class _Reader:
    def __init__(self, http: HttpClient, closed_stages: Sequence[str]) -> None:
        self.http = http
        self.closed = {s.strip().lower() for s in closed_stages}
        self.records: dict[tuple[str, str], dict[str, Any]] = {}

    async def record(self, obj: str, rid: str) -> dict[str, Any] | None:
        if (obj, rid) not in self.records:
            try:
                resp = await self.http.request(
                    "GET", f"/v2/objects/{obj}/records/{quote(rid, safe='')}", idempotent=True
                )
            except NotFoundError:  # deleted since it was put on the list
                return None
            self.records[(obj, rid)] = dict(resp.json()["data"].get("values") or {})
        return self.records[(obj, rid)]

    async def query(self, obj: str, flt: dict[str, Any]) -> list[dict[str, Any]]:
        async def get(limit: int, offset: int) -> list[dict[str, Any]]:
            resp = await self.http.request(
                "POST",
                f"/v2/objects/{obj}/records/query",
                json={"filter": flt, "limit": limit, "offset": offset},
                idempotent=True,
            )
            return list(resp.json().get("data") or [])

        return await _all(f"{obj} records", get)

    async def open_deals(self, attr: str, rid: str) -> set[str]:
        try:
            deals = await self.query("deals", {attr: {"target_record_id": {"$eq": rid}}})
        except NotFoundError:  # a workspace without the deals object
            return set()
        out = set()
        for d in deals:
            status = (_first(d.get("values") or {}, "stage").get("status")) or {}
            title = str(status.get("title", "")).strip().lower()
            if not title.startswith(_CLOSED) and title not in self.closed:
                out.add(str(d["id"]["record_id"]))
        return out


async def read_attio_list(
    http: HttpClient,
    slug: str,
    *,
    closed_stages: Sequence[str] = (),
    pql_properties: Mapping[str, str] | None = None,
) -> list[ListMember]:
    """Every person on the list (or at the companies on it), in the list's order."""
    path = f"/v2/lists/{quote(slug, safe='')}"
    info = (await http.request("GET", path, idempotent=True)).json().get("data") or {}
    parent = info.get("parent_object")
    parent = parent[0] if isinstance(parent, list) and parent else parent
    if parent not in ("people", "companies"):
        raise ValidationError("attio", f"list {slug} holds {parent or '?'}, not people/companies")

    async def get(limit: int, offset: int) -> list[dict[str, Any]]:
        resp = await http.request(
            "POST",
            f"{path}/entries/query",
            json={"limit": limit, "offset": offset},
            idempotent=True,
        )
        return list(resp.json().get("data") or [])

    entries = await _all(f"entries of list {slug}", get)
    r = _Reader(http, closed_stages)
    people: dict[str, str | None] = {}  # person id -> the listed company that brought them in
    for e in entries:
        rid = str(e["parent_record_id"])
        if parent == "people":
            people.setdefault(rid, None)
            continue
        for p in await r.query("people", {"company": {"target_record_id": {"$eq": rid}}}):
            pid = str(p["id"]["record_id"])
            r.records[("people", pid)] = dict(p.get("values") or {})
            people.setdefault(pid, rid)
    out = []
    for pid, via in people.items():
        v = await r.record("people", pid)
        if v is None:
            continue
        cid = via or _first(v, "company").get("target_record_id")
        c = (await r.record("companies", str(cid)) if cid else None) or {}
        deals = await r.open_deals("associated_people", pid)
        if cid:
            deals |= await r.open_deals("associated_company", str(cid))
        acts = [
            a
            for slug_ in ("last_email_interaction", "last_calendar_interaction")
            if (a := _when(_first(v, slug_).get("interacted_at")))
        ]
        segment = ", ".join(
            str((o.get("option") or {}).get("title", ""))
            for o in c.get("categories") or []
            if (o.get("option") or {}).get("title")
        )
        values = {
            "company": _first(c, "name").get("value"),
            "domain": _first(c, "domains").get("domain"),
            "segment": segment,
            "description": _first(c, "description").get("value"),
            "contact_name": _first(v, "name").get("full_name"),
            "contact_title": _first(v, "job_title").get("value"),
            "email": _first(v, "email_addresses").get("email_address"),
            "linkedin_url": normalise_linkedin(_first(v, "linkedin").get("value")),
        }
        out.append(
            ListMember(
                record=f"person {pid}",
                values={k: str(x).strip() for k, x in values.items() if x and str(x).strip()},
                last_activity=max(acts) if acts else None,
                open_deals=len(deals),
                pql=company_signals(str(cid) if cid else None, c, pql_properties or {}),
            )
        )
    return out
