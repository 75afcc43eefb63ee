"""Local servers that implement the providers' documented request and response shapes.

Each runs on a loopback port in a thread and speaks real HTTP. They check what the docs
require (auth, signatures, body shapes) and answer with the documented shapes and error codes.
`fail_next` injects an error response (status, headers) for the next request. `chaos(rate)` makes
a share of all requests fail at random: a 429, a 5xx before or after the request took effect, or
a response held back past the client's timeout (again before or after taking effect).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import random
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

Answer = tuple[int, dict[str, str], Any]


class _JoiningServer(ThreadingHTTPServer):
    """Closing the server waits for every request thread, so each connection is closed inside
    the test that opened it (a thread finishing later surfaces as an unraisable ResourceWarning
    in whichever test happens to be running)."""

    daemon_threads = False
    block_on_close = True


class FakeProvider:
    """Routing, auth, error injection and a request log; subclasses implement `route`."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[tuple[int, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.base_url = ""
        self._server: ThreadingHTTPServer | None = None
        self._chaos: tuple[float, random.Random, float] | None = None
        self.faults: Counter[str] = Counter()

    FAULTS = ("429", "500_before", "500_after", "timeout_before", "timeout_after")

    def chaos(self, rate: float, *, seed: int = 0, hold_s: float = 1.5) -> None:
        """Fail `rate` of requests at random from now on (see the module docstring)."""
        self._chaos = (rate, random.Random(seed), hold_s)

    def draw_fault(self) -> str | None:
        with self.lock:
            if self._chaos is None:
                return None
            rate, rng, _ = self._chaos
            if rng.random() >= rate:
                return None
            fault = rng.choice(self.FAULTS)
            self.faults[fault] += 1
            return fault

    def hold(self) -> None:
        time.sleep(self._chaos[2] if self._chaos else 0)

    def route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> Answer:
        raise NotImplementedError

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            self.requests.append(
                {
                    "method": method,
                    "path": parts.path,
                    "query": query,
                    "headers": headers,
                    "body": raw,
                }
            )
            if self.fail_next:
                status, extra = self.fail_next.pop(0)
                return status, extra, self.error_body(status)
            return self.route(method, parts.path, query, headers, raw)

    def error_body(self, status: int) -> Any:
        return {"status": "error", "message": f"injected {status}"}

    def __enter__(self) -> Self:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _do(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                fault = owner.draw_fault()
                if fault in ("timeout_before", "timeout_after"):
                    if fault == "timeout_after":
                        owner.handle(self.command, self.path, headers, raw)
                    owner.hold()  # the client gave up meanwhile
                    status, extra, body = 504, {}, owner.error_body(504)
                elif fault == "429":
                    status, extra, body = 429, {"Retry-After": "0"}, owner.error_body(429)
                elif fault == "500_before":
                    status, extra, body = 500, {}, owner.error_body(500)
                else:
                    status, extra, body = owner.handle(self.command, self.path, headers, raw)
                    if fault == "500_after":
                        status, extra, body = 500, {}, owner.error_body(500)
                data = (
                    body
                    if isinstance(body, bytes)
                    else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
                )
                try:
                    self.send_response(status)
                    ctype = "text/plain" if isinstance(body, str) else "application/json"
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _do
            timeout = 15  # a client that went away mid-request frees its thread

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _JoiningServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------- HubSpot


_HS_GATE = {"notes": "contacts", "tasks": "contacts"}  # engagements ride on the contacts scopes


_HS_ALSO = {  # a scope that `.read_write` also grants (HubSpot's v4 subscriptions guide)
    "communication_preferences.read": "communication_preferences.read_write",
    "communication_preferences.write": "communication_preferences.read_write",
}


class FakeHubSpot(FakeProvider):
    """CRM v3 objects (search, create, batch read), v4 associations, owners, token info, and
    the v4 communication preferences "unsubscribe from all" status (POST sets it, GET reads).

    As HubSpot does: every endpoint checks the private app's scopes and answers a missing one
    with 403 `MISSING_SCOPES` (the subscription endpoints take `communication_preferences.write`
    or `.read`, or `.read_write` for either); search pages at most 200, batch read takes at most
    100 inputs, association listings page 500 at a time with `paging.next.after`; a default
    association adds a link and leaves the contact's primary company as it was; unsubscribing
    an address from all email sets `hs_email_optout` on its contacts, and again changes nothing.
    Lists v3 (`crm.lists.read`): a list's definition (404 for an unknown id) and its memberships,
    sorted by record id, 100 a page by default and at most 250, with `paging.next.after`.
    """

    ASSOC_OK = {279, 1, 190, 202, 192, 204}
    ASSOC_PAGE = 500

    def __init__(self, token: str = "pat-test-token", scopes: list[str] | None = None) -> None:
        super().__init__()
        self.token = token
        self.scopes = scopes or [
            "crm.objects.companies.read",
            "crm.objects.companies.write",
            "crm.objects.contacts.read",
            "crm.objects.contacts.write",
            "crm.objects.deals.read",
            "crm.objects.owners.read",
            "communication_preferences.write",
            "crm.lists.read",
        ]
        self.lists: dict[str, dict[str, Any]] = {}  # listId -> objectTypeId, name, members
        self.unsubscribed_all: set[str] = set()  # addresses opted out of all email
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            t: {} for t in ("companies", "contacts", "notes", "tasks", "deals")
        }
        self.assoc: set[tuple[str, str, str, str]] = set()  # (from_type, from_id, to_type, to_id)
        self.owners = {"77": {"id": "77", "email": "owner@yourcompany.example"}}
        self._ids = itertools.count(1001)

    def error_body(self, status: int) -> Any:
        category = {429: "RATE_LIMITS", 401: "INVALID_AUTHENTICATION"}.get(status, "ERROR")
        return {"status": "error", "message": f"injected {status}", "category": category}

    def _err(self, status: int, message: str, category: str) -> Answer:
        return status, {}, {"status": "error", "message": message, "category": category}

    def _headers(self) -> dict[str, str]:
        return {"X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "97"}

    @staticmethod
    def needs(method: str, seg: list[str]) -> list[str]:
        """The scopes an endpoint requires (none for the token-info call)."""

        def scope(obj: str, access: str) -> str:
            return f"crm.objects.{_HS_GATE.get(obj, obj)}.{access}"

        if seg[:3] == ["crm", "v3", "owners"]:
            return ["crm.objects.owners.read"]
        if seg[:3] == ["crm", "v3", "lists"]:
            return ["crm.lists.read" if method == "GET" else "crm.lists.write"]
        if seg[:3] == ["crm", "v3", "objects"] and len(seg) > 3:
            reads = method == "GET" or seg[4:] in (["search"], ["batch", "read"])
            return [scope(seg[3], "read" if reads else "write")]
        if seg[:3] == ["crm", "v4", "objects"] and len(seg) > 6:
            if method == "GET":
                return [scope(seg[3], "read"), scope(seg[6], "read")]
            return [scope(seg[3], "write")]
        if seg[:2] == ["communication-preferences", "v4"]:
            return [f"communication_preferences.{'read' if method == 'GET' else 'write'}"]
        return []

    def granted(self, scope: str) -> bool:
        return scope in self.scopes or _HS_ALSO.get(scope) in self.scopes

    def _missing_scopes(self, need: list[str]) -> Answer:
        need = need + [_HS_ALSO[sc] for sc in need if sc in _HS_ALSO]  # "one or more of"
        return (
            403,
            {},
            {
                "status": "error",
                "message": "This app hasn't been granted all required scopes to make this call. "
                "Read more about required scopes here: https://developers.hubspot.com/scopes.",
                "correlationId": str(uuid.uuid4()),
                "errors": [
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": need},
                    }
                ],
                "links": {"scopes": "https://developers.hubspot.com/scopes"},
                "category": "MISSING_SCOPES",
            },
        )

    def _view(self, obj: str, oid: str, props: list[str] | None) -> dict[str, Any]:
        p = self.objects[obj][oid]
        shown = {k: p.get(k) for k in props} if props else dict(p)
        return {"id": oid, "properties": {**shown, "hs_object_id": oid}, "archived": False}

    def _link(self, a: str, aid: str, b: str, bid: str) -> None:
        self.assoc.add((a, aid, b, bid))
        self.assoc.add((b, bid, a, aid))

    # seeding, as a CRM admin would
    def set_company(self, domain: str, **kw: Any) -> str:
        cid = next(
            (i for i, p in self.objects["companies"].items() if p.get("domain") == domain), None
        )
        if cid is None:
            cid = str(next(self._ids))
            self.objects["companies"][cid] = {"name": domain, "domain": domain}
        if "lifecycle_stage" in kw:
            self.objects["companies"][cid]["lifecyclestage"] = kw["lifecycle_stage"]
        if "owner" in kw:
            self.objects["companies"][cid]["hubspot_owner_id"] = "77"
        for closed in [True] * kw.get("closed_deals", 0) + [False] * kw.get("open_deals", 0):
            did = str(next(self._ids))
            self.objects["deals"][did] = {"dealname": "x", "hs_is_closed": str(closed).lower()}
            self._link("companies", cid, "deals", did)
        return cid

    def add_contact(self, company_id: str | None = None, **props: Any) -> str:
        """A contact with these properties, its primary company `company_id`."""
        cid = str(next(self._ids))
        self.objects["contacts"][cid] = {k: str(v) for k, v in props.items()}
        if company_id:
            self.objects["contacts"][cid]["associatedcompanyid"] = company_id
            self._link("contacts", cid, "companies", company_id)
        return cid

    def add_deal(self, obj: str, oid: str, *, stage: str, closed: bool = False) -> str:
        did = str(next(self._ids))
        self.objects["deals"][did] = {"dealstage": stage, "hs_is_closed": str(closed).lower()}
        self._link(obj, oid, "deals", did)
        return did

    def add_list(self, object_type: str, members: list[str], name: str = "Q1 targets") -> str:
        """A list of contacts (`0-1`) or companies (`0-2`) holding these record ids."""
        lid = str(next(self._ids))
        self.lists[lid] = {"objectTypeId": object_type, "name": name, "members": list(members)}
        return lid

    def _lists(
        self, method: str, seg: list[str], query: dict[str, str], h: dict[str, str]
    ) -> Answer:
        lst = self.lists.get(seg[3]) if len(seg) > 3 else None
        if method != "GET" or len(seg) not in (4, 5) or (len(seg) == 5 and seg[4] != "memberships"):
            return self._err(404, f"no route {method} /{'/'.join(seg)}", "NOT_FOUND")
        if lst is None:
            return self._err(404, f"List {seg[3]} does not exist.", "OBJECT_NOT_FOUND")
        if len(seg) == 4:
            size = len(lst["members"])
            listed = {"listId": seg[3], "name": lst["name"], "objectTypeId": lst["objectTypeId"]}
            return 200, h, {"list": {**listed, "processingType": "MANUAL", "size": size}}
        limit = int(query.get("limit", 100))
        if not 0 < limit <= 250:
            return self._err(400, "limit must be between 1 and 250", "VALIDATION_ERROR")
        ids = sorted(lst["members"], key=int)
        after = query.get("after")
        rest = [i for i in ids if after is None or int(i) > int(after)]
        page = rest[:limit]
        out: dict[str, Any] = {
            "results": [{"recordId": i, "membershipTimestamp": _now()} for i in page],
            "total": len(ids),
        }
        if len(rest) > limit:
            out["paging"] = {"next": {"after": page[-1]}}
        return 200, h, out

    def set_opted_out(self, contact: Any) -> None:
        email = (contact.email or "").lower()
        found = [p for p in self.objects["contacts"].values() if p.get("email") == email]
        if not found:
            found = [{"email": email, "firstname": contact.name}]
            self.objects["contacts"][str(next(self._ids))] = found[0]
        for p in found:
            p["hs_email_optout"] = "true"

    def route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> Answer:
        if headers.get("authorization") != f"Bearer {self.token}":
            return self._err(401, "Authentication credentials not found.", "INVALID_AUTHENTICATION")
        seg = path.strip("/").split("/")
        need = [sc for sc in self.needs(method, seg) if not self.granted(sc)]
        if need:
            return self._missing_scopes(need)
        body = _json(raw)
        h = self._headers()
        if seg[:3] == ["communication-preferences", "v4", "statuses"] and len(seg) == 5:
            return self._unsubscribe_all(method, unquote(seg[3]).lower(), seg[4], query, h)
        if path == "/oauth/v2/private-apps/get/access-token-info" and method == "POST":
            return 200, h, {"userId": 1, "hubId": 42, "appId": 7, "scopes": self.scopes}
        if seg[:3] == ["crm", "v3", "lists"]:
            return self._lists(method, seg, query, h)
        if seg[:3] == ["crm", "v3", "owners"] and method == "GET":
            o = self.owners.get(seg[3])
            return (200, h, o) if o else self._err(404, "owner not found", "OBJECT_NOT_FOUND")
        if seg[:3] == ["crm", "v3", "objects"]:
            obj = seg[3]
            if obj not in self.objects:
                return self._err(404, f"unknown object {obj}", "OBJECT_NOT_FOUND")
            if len(seg) == 5 and seg[4] == "search" and method == "POST":
                return self._search(obj, body, h)
            if len(seg) == 6 and seg[4:] == ["batch", "read"] and method == "POST":
                ids = [str(i.get("id")) for i in (body or {}).get("inputs", [])]
                if len(ids) > 100:
                    return self._err(400, "at most 100 inputs per batch", "VALIDATION_ERROR")
                found = [
                    self._view(obj, i, body.get("properties"))
                    for i in ids
                    if i in self.objects[obj]
                ]
                return 200, h, {"status": "COMPLETE", "results": found}
            if len(seg) == 4 and method == "POST":
                return self._create(obj, body, h)
            if len(seg) == 4 and method == "GET":
                ids = list(self.objects[obj])[: int(query.get("limit", 10))]
                return 200, h, {"results": [self._view(obj, i, None) for i in ids]}
        if seg[:3] == ["crm", "v4", "objects"]:
            obj, oid = seg[3], seg[4]
            if oid not in self.objects.get(obj, {}):
                return self._err(404, f"{obj} {oid} not found", "OBJECT_NOT_FOUND")
            if len(seg) == 7 and seg[5] == "associations" and method == "GET":
                return 200, h, self.associations(obj, oid, seg[6], query)
            if len(seg) == 9 and seg[5:7] == ["associations", "default"] and method == "PUT":
                to, to_id = seg[7], seg[8]
                if to_id not in self.objects.get(to, {}):
                    return self._err(404, f"{to} {to_id} not found", "OBJECT_NOT_FOUND")
                self._link(obj, oid, to, to_id)
                if obj == "contacts" and to == "companies":  # the primary company stays
                    self.objects["contacts"][oid].setdefault("associatedcompanyid", to_id)
                return (
                    200,
                    h,
                    {"status": "COMPLETE", "results": [{"from": {"id": oid}, "to": {"id": to_id}}]},
                )
        return self._err(404, f"no route {method} {path}", "NOT_FOUND")

    def _unsubscribe_all(
        self, method: str, address: str, tail: str, query: dict[str, str], h: dict[str, str]
    ) -> Answer:
        """`{GET,POST} /communication-preferences/v4/statuses/{address}/unsubscribe-all`:
        channel EMAIL is required; results are listed only with `verbose=true`."""
        if tail != "unsubscribe-all" or method not in ("GET", "POST"):
            return self._err(404, f"no route {method} {tail}", "NOT_FOUND")
        if query.get("channel") != "EMAIL":
            return self._err(400, "channel must be EMAIL", "VALIDATION_ERROR")
        changed = method == "POST" and address not in self.unsubscribed_all
        if method == "POST":
            self.unsubscribed_all.add(address)
            for p in self.objects["contacts"].values():
                if str(p.get("email") or "").lower() == address:
                    p["hs_email_optout"] = "true"
        result = {
            "subscriberIdString": address,
            "channel": "EMAIL",
            "status": "UNSUBSCRIBED",
            "timestamp": _now(),
            **({"setStatusSuccessReason": "NO_STATUS_CHANGE"} if not changed else {}),
        }
        verbose = query.get("verbose") == "true"
        listed = [result] if verbose and address in self.unsubscribed_all else []
        now = _now()
        body = {"status": "COMPLETE", "results": listed, "requestedAt": now}
        return 200, h, {**body, "startedAt": now, "completedAt": now}

    def associations(self, obj: str, oid: str, to: str, query: dict[str, str]) -> dict[str, Any]:
        """One page of a v4 association listing: at most 500, `after` for the next page."""
        ids = sorted(
            (b for (a, aid, t, b) in self.assoc if a == obj and aid == oid and t == to), key=int
        )
        limit = min(int(query.get("limit", self.ASSOC_PAGE)), self.ASSOC_PAGE)
        start = int(query.get("after") or 0)
        out: dict[str, Any] = {
            "results": [
                {"toObjectId": int(i), "associationTypes": []} for i in ids[start : start + limit]
            ]
        }
        if start + limit < len(ids):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return out

    def _search(self, obj: str, body: Any, h: dict[str, str]) -> Answer:
        required = {"filterGroups", "sorts", "properties", "limit", "after"}
        if not isinstance(body, dict) or not required <= set(body):
            missing = sorted(required - set(body or {}))
            return self._err(400, f"Invalid search request: missing {missing}", "VALIDATION_ERROR")
        if not isinstance(body["limit"], int) or not 0 < body["limit"] <= 200:
            return self._err(400, "limit must be 1..200", "VALIDATION_ERROR")
        hits = []
        for oid, p in self.objects[obj].items():
            for group in body["filterGroups"]:
                ok = True
                for f in group["filters"]:
                    value = str(p.get(f["propertyName"]) or "")
                    if f["operator"] == "EQ":
                        ok &= value.lower() == str(f["value"]).lower()
                    elif f["operator"] == "CONTAINS_TOKEN":
                        ok &= str(f["value"]).lower() in value.lower().replace("·", " ").split()
                    else:
                        return self._err(400, f"operator {f['operator']}", "VALIDATION_ERROR")
                if ok:
                    hits.append(oid)
                    break
        start = int(body["after"] or 0)
        page = hits[start : start + body["limit"]]
        out: dict[str, Any] = {
            "total": len(hits),
            "results": [self._view(obj, i, body["properties"]) for i in page],
        }
        if start + body["limit"] < len(hits):
            out["paging"] = {"next": {"after": str(start + body["limit"])}}
        return 200, h, out

    def _create(self, obj: str, body: Any, h: dict[str, str]) -> Answer:
        if not isinstance(body, dict) or "properties" not in body or "associations" not in body:
            return self._err(
                400, "create body needs properties and associations", "VALIDATION_ERROR"
            )
        props = dict(body["properties"])
        if obj == "contacts" and props.get("email"):
            for oid, p in self.objects["contacts"].items():
                if p.get("email") == props["email"]:
                    return self._err(409, f"Contact already exists. Existing ID: {oid}", "CONFLICT")
        if obj == "notes" and not props.get("hs_timestamp"):
            return self._err(400, "hs_timestamp is required", "VALIDATION_ERROR")
        for a in body["associations"]:
            t = a["types"][0]
            if (
                t.get("associationCategory") != "HUBSPOT_DEFINED"
                or t.get("associationTypeId") not in self.ASSOC_OK
            ):
                return self._err(400, f"invalid association type {t}", "VALIDATION_ERROR")
            if not any(a["to"]["id"] in self.objects[k] for k in self.objects):
                return self._err(
                    404, f"association target {a['to']['id']} not found", "OBJECT_NOT_FOUND"
                )
        oid = str(next(self._ids))
        self.objects[obj][oid] = props
        for a in body["associations"]:
            to_type = next(k for k in self.objects if a["to"]["id"] in self.objects[k])
            self._link(obj, oid, to_type, a["to"]["id"])
            if obj == "contacts" and to_type == "companies":
                props["associatedcompanyid"] = a["to"]["id"]
        return 201, h, {**self._view(obj, oid, None), "createdAt": _now(), "updatedAt": _now()}


# ---------------------------------------------------------------------------------- Attio


def _attio_needs(method: str, seg: list[str]) -> list[str]:
    """The scopes Attio's reference lists for each endpoint the client uses."""
    records = ["object_configuration:read"]
    if seg[:2] == ["v2", "objects"] and len(seg) >= 4 and seg[3] == "records":
        reads = method == "GET" or seg[4:] == ["query"]
        return [f"record_permission:{'read' if reads else 'read-write'}", *records]
    if seg == ["v2", "notes"]:
        note = "note:read" if method == "GET" else "note:read-write"
        return [note, *records, "record_permission:read"]
    if seg == ["v2", "tasks"]:
        task = "task:read" if method == "GET" else "task:read-write"
        return [task, *records, "record_permission:read", "user_management:read"]
    if seg[:2] == ["v2", "lists"] and len(seg) == 3:
        return ["list_configuration:read"]
    if seg[:2] == ["v2", "lists"] and len(seg) == 4 and seg[3] == "entries":
        entry = "list_entry:read" if method == "GET" else "list_entry:read-write"
        return [entry, "list_configuration:read"]
    if seg[:2] == ["v2", "lists"] and seg[3:] == ["entries", "query"]:
        return ["list_entry:read", "list_configuration:read"]
    return []


class FakeAttio(FakeProvider):
    """REST v2: record query, assert and update, notes, tasks, list entries, /v2/self.

    As Attio does: every endpoint checks the token's scopes (a `read-write` scope grants its
    `read`) and answers a missing one with 403; queries page by `limit`/`offset` (500 by
    default), notes at most 50 a page (10 by default); an assert replaces every attribute it
    carries except the matching one, whose values it adds to; an update (`PATCH`) appends to
    multiselect attributes and replaces the others. A list has a parent object (companies unless
    `add_list` says otherwise); its entries are queried by `limit`/`offset`, each naming its
    parent record; a record is read by id (404 when there is none).
    """

    MULTISELECT = ("domains", "email_addresses")
    NOTES_MAX = 50

    def __init__(
        self, token: str = "attio-test-token", lists: tuple[str, ...] = ("outreach",)
    ) -> None:
        super().__init__()
        self.token = token
        self.records: dict[str, dict[str, dict[str, Any]]] = {
            "companies": {},
            "people": {},
            "deals": {},
        }
        self.notes: list[dict[str, Any]] = []
        self.tasks: list[dict[str, Any]] = []
        self.lists: dict[str, dict[str, Any]] = {name: {} for name in lists}
        self.list_parents: dict[str, str] = {name: "companies" for name in lists}
        self.scopes = [
            "record_permission:read-write",
            "object_configuration:read",
            "note:read-write",
            "task:read-write",
            "user_management:read",
            "list_entry:read-write",
            "list_configuration:read",
        ]

    def error_body(self, status: int) -> Any:
        return {
            "status_code": status,
            "type": "injected",
            "code": "injected",
            "message": f"injected {status}",
        }

    def _err(self, status: int, kind: str, code: str, message: str) -> Answer:
        return status, {}, {"status_code": status, "type": kind, "code": code, "message": message}

    def _invalid(self, message: str) -> Answer:
        return self._err(400, "invalid_request_error", "validation_type", message)

    def _granted(self, scope: str) -> bool:
        return scope in self.scopes or (
            scope.endswith(":read") and scope.replace(":read", ":read-write") in self.scopes
        )

    def _record(self, obj: str, rid: str) -> dict[str, Any]:
        return {
            "id": {"workspace_id": "ws1", "object_id": obj, "record_id": rid},
            "created_at": _now(),
            "values": self.records[obj][rid],
        }

    def set_company(self, domain: str, **kw: Any) -> str:
        rid = next(
            (
                r
                for r, v in self.records["companies"].items()
                if v["domains"][0]["domain"] == domain
            ),
            None,
        )
        if rid is None:
            rid = str(uuid.uuid4())
            self.records["companies"][rid] = {
                "domains": [{"domain": domain}],
                "name": [{"value": domain}],
            }
        if "lifecycle_stage" in kw:
            self.records["companies"][rid]["lifecycle_stage"] = [
                {"option": {"title": kw["lifecycle_stage"]}}
            ]
        stages = ["Won 🎉"] * kw.get("closed_deals", 0) + ["In Progress"] * kw.get("open_deals", 0)
        for stage in stages:
            self.records["deals"][str(uuid.uuid4())] = {
                "associated_company": [{"target_object": "companies", "target_record_id": rid}],
                "stage": [{"status": {"title": stage}}],
            }
        return rid

    def add_person(self, company_id: str | None = None, **values: Any) -> str:
        """A person record with these attribute values (each already an array of values)."""
        rid = str(uuid.uuid4())
        self.records["people"][rid] = dict(values)
        if company_id:
            ref = {"target_object": "companies", "target_record_id": company_id}
            self.records["people"][rid]["company"] = [ref]
        return rid

    def set_attribute(
        self, obj: str, rid: str, slug: str, attribute_type: str, **value: Any
    ) -> None:
        """One active value of an attribute, as Attio reads it back: the type's own keys (a
        number's or text's `value`, a select's `option`, a currency's `currency_value`) beside
        the keys every value has."""
        self.records[obj][rid][slug] = [
            {
                "active_from": _now(),
                "active_until": None,
                "created_by_actor": {"type": "api-token", "id": str(uuid.uuid4())},
                "attribute_type": attribute_type,
                **value,
            }
        ]

    def add_deal(self, stage: str, *, company: str | None = None, person: str | None = None) -> str:
        rid = str(uuid.uuid4())
        deal: dict[str, Any] = {"stage": [{"status": {"title": stage}}]}
        if company:
            deal["associated_company"] = [
                {"target_object": "companies", "target_record_id": company}
            ]
        if person:
            deal["associated_people"] = [{"target_object": "people", "target_record_id": person}]
        self.records["deals"][rid] = deal
        return rid

    def add_list(self, slug: str, parent: str, records: list[str]) -> None:
        """A list of `parent` records (people or companies) with an entry for each record."""
        self.list_parents[slug] = parent
        self.lists[slug] = {
            r: {
                "id": {"entry_id": str(uuid.uuid4())},
                "parent_record_id": r,
                "parent_object": parent,
            }
            for r in records
        }

    def set_opted_out(self, contact: Any) -> None:
        email = (contact.email or "").lower()
        if not any(
            e["email_address"] == email
            for v in self.records["people"].values()
            for e in v.get("email_addresses", [])
        ):
            self.records["people"][str(uuid.uuid4())] = {
                "email_addresses": [{"email_address": email}],
                "name": [{"full_name": contact.name}],
            }
        for v in self.records["people"].values():
            if any(
                e["email_address"] == (contact.email or "").lower()
                for e in v.get("email_addresses", [])
            ):
                v["opted_out"] = [{"value": True}]

    @staticmethod
    def _matches(values: dict[str, Any], flt: dict[str, Any]) -> bool:
        for slug, cond in flt.items():
            items = values.get(slug) or []
            if isinstance(cond, dict) and "$eq" in cond:
                want = str(cond["$eq"]).lower()
                if not any(str(i.get("value", "")).lower() == want for i in items):
                    return False
            elif isinstance(cond, dict):
                ((field, op),) = cond.items()
                want = str(op["$eq"]).lower()
                if not any(str(i.get(field, "")).lower() == want for i in items):
                    return False
            else:
                return False
        return True

    @staticmethod
    def _page(items: list[Any], limit: Any, offset: Any) -> list[Any]:
        start = int(offset or 0)
        return items[start : start + int(limit)]

    def _merge(self, held: dict[str, Any], values: dict[str, Any], adds: tuple[str, ...]) -> None:
        """Write `values` into the record: the `adds` attributes gain new values, others are
        replaced."""
        for slug, new in values.items():
            if slug in adds:
                held[slug] = [*held.get(slug, []), *(v for v in new if v not in held.get(slug, []))]
            else:
                held[slug] = new

    def route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> Answer:
        if headers.get("authorization") != f"Bearer {self.token}":
            return self._err(401, "auth_error", "unauthorized", "Invalid or missing API key.")
        body = _json(raw)
        seg = path.strip("/").split("/")
        missing = [sc for sc in _attio_needs(method, seg) if not self._granted(sc)]
        if missing:
            return self._err(
                403, "auth_error", "forbidden", f"Token is missing scopes: {', '.join(missing)}"
            )
        if path == "/v2/self" and method == "GET":
            return (
                200,
                {},
                {
                    "active": True,
                    "scope": " ".join(self.scopes),
                    "workspace_name": "Test workspace",
                },
            )
        if seg[:2] == ["v2", "objects"] and len(seg) >= 4 and seg[3] == "records":
            return self._records(method, seg, query, body)
        if seg == ["v2", "notes"]:
            return self._notes(method, query, body)
        if seg == ["v2", "tasks"]:
            return self._tasks(method, query, body)
        if seg[:2] == ["v2", "lists"] and len(seg) == 3 and method == "GET":
            if seg[2] not in self.lists:
                return self._err(404, "invalid_request_error", "not_found", "List not found.")
            parents = [self.list_parents.get(seg[2], "companies")]
            data = {"id": {"list_id": seg[2]}, "api_slug": seg[2], "parent_object": parents}
            return 200, {}, {"data": data}
        if seg[:2] == ["v2", "lists"] and seg[3:] == ["entries", "query"] and method == "POST":
            lst = self.lists.get(seg[2])
            if lst is None:
                return self._err(404, "invalid_request_error", "not_found", "List not found.")
            limit = (body or {}).get("limit", 500)
            if not isinstance(limit, int) or limit < 1:
                return self._invalid("limit must be a positive integer")
            return 200, {}, {"data": self._page(list(lst.values()), limit, body.get("offset"))}
        if seg[:2] == ["v2", "lists"] and len(seg) == 4 and seg[3] == "entries" and method == "PUT":
            lst = self.lists.get(seg[2])
            if lst is None:
                return self._err(
                    404, "invalid_request_error", "not_found", f"List {seg[2]} not found."
                )
            d = (body or {}).get("data") or {}
            entry = lst.setdefault(
                d["parent_record_id"], {"id": {"entry_id": str(uuid.uuid4())}, **d}
            )
            return 200, {}, {"data": entry}
        return self._err(404, "invalid_request_error", "not_found", f"no route {method} {path}")

    def _records(self, method: str, seg: list[str], query: dict[str, str], body: Any) -> Answer:
        obj = seg[2]
        if obj not in self.records:
            return self._err(404, "invalid_request_error", "not_found", f"Object {obj} not found.")
        if len(seg) == 5 and seg[4] == "query" and method == "POST":
            flt = (body or {}).get("filter") or {}
            hits = [
                self._record(obj, r) for r, v in self.records[obj].items() if self._matches(v, flt)
            ]
            return 200, {}, {"data": self._page(hits, body.get("limit", 500), body.get("offset"))}
        if len(seg) == 5 and method == "GET":
            if seg[4] not in self.records[obj]:
                return self._err(404, "invalid_request_error", "not_found", "Record not found.")
            return 200, {}, {"data": self._record(obj, seg[4])}
        if method not in ("PUT", "POST", "PATCH") or len(seg) not in (4, 5):
            return self._err(404, "invalid_request_error", "not_found", f"no route {method}")
        values = ((body or {}).get("data") or {}).get("values")
        if not isinstance(values, dict):
            return self._invalid("data.values is required")
        for slug, v in values.items():
            if not isinstance(v, list):
                return self._invalid(f"Attribute {slug} must be an array of values.")
        if len(seg) == 5 and method == "PATCH":
            if seg[4] not in self.records[obj]:
                return self._err(404, "invalid_request_error", "not_found", "Record not found.")
            self._merge(self.records[obj][seg[4]], values, self.MULTISELECT)
            return 200, {}, {"data": self._record(obj, seg[4])}
        if len(seg) == 4 and method == "POST":
            rid = str(uuid.uuid4())
            self.records[obj][rid] = values
            return 200, {}, {"data": self._record(obj, rid)}
        attr = query.get("matching_attribute")
        if len(seg) != 4 or method != "PUT" or attr not in ("domains", "email_addresses"):
            return self._invalid("matching_attribute must be a unique attribute")
        key = next(iter(values[attr][0].values()))
        for rid, v in self.records[obj].items():
            if any(next(iter(i.values())) == key for i in v.get(attr, [])):
                self._merge(v, values, (attr,))
                return 200, {}, {"data": self._record(obj, rid)}
        rid = str(uuid.uuid4())
        self.records[obj][rid] = values
        return 200, {}, {"data": self._record(obj, rid)}

    def note_page(self, query: dict[str, str]) -> Answer:
        """One page of `GET /v2/notes`: 10 by default, at most 50."""
        limit = int(query.get("limit", 10))
        if not 0 < limit <= self.NOTES_MAX:
            return self._invalid(f"limit must be between 1 and {self.NOTES_MAX}")
        hits = [
            n
            for n in self.notes
            if n["parent_object"] == query.get("parent_object")
            and n["parent_record_id"] == query.get("parent_record_id")
        ]
        return 200, {}, {"data": self._page(hits, limit, query.get("offset"))}

    def _notes(self, method: str, query: dict[str, str], body: Any) -> Answer:
        if method == "GET":
            return self.note_page(query)
        d = (body or {}).get("data") or {}
        if d.get("format") not in ("plaintext", "markdown") or not d.get("title"):
            return self._invalid("format and title are required")
        if d.get("parent_record_id") not in self.records.get(d.get("parent_object", ""), {}):
            return self._err(404, "invalid_request_error", "not_found", "Parent record not found.")
        note = {
            "id": {"workspace_id": "ws1", "note_id": str(uuid.uuid4())},
            "parent_object": d["parent_object"],
            "parent_record_id": d["parent_record_id"],
            "title": d["title"],
            "content_plaintext": d["content"],
            "created_at": d.get("created_at") or _now(),
        }
        self.notes.append(note)
        return 200, {}, {"data": note}

    def _tasks(self, method: str, query: dict[str, str], body: Any) -> Answer:
        if method == "GET":
            hits = [
                t
                for t in self.tasks
                if "linked_record_id" not in query
                or any(
                    r["target_record_id"] == query["linked_record_id"]
                    and r["target_object"] == query.get("linked_object")
                    for r in t["linked_records"]
                )
            ]
            return 200, {}, {"data": self._page(hits, query.get("limit", 500), query.get("offset"))}
        d = (body or {}).get("data") or {}
        if d.get("format") != "plaintext" or "deadline_at" not in d or "linked_records" not in d:
            return self._invalid("content, format, deadline_at, linked_records required")
        task = {
            "id": {"workspace_id": "ws1", "task_id": str(uuid.uuid4())},
            "content_plaintext": d["content"],
            "linked_records": d["linked_records"],
        }
        self.tasks.append(task)
        return 200, {}, {"data": task}


# ---------------------------------------------------------------------------------- Dux-Soup


class FakeDuxSoup(FakeProvider):
    """Remote control: signed queue commands and the queue size."""

    def __init__(self, user_id: str = "1234", key: str = "dux-remote-key") -> None:
        super().__init__()
        self.user_id, self.key = user_id, key
        self.queue: list[dict[str, Any]] = []

    def _signed(self, message: bytes, headers: dict[str, str]) -> bool:
        want = base64.b64encode(
            hmac.new(self.key.encode(), message, hashlib.sha1).digest()
        ).decode()
        return hmac.compare_digest(headers.get("x-dux-signature", ""), want)

    def route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> Answer:
        if path == f"/{self.user_id}/queue/size" and method == "GET":
            if not self._signed(f"{self.base_url}{path}".encode(), headers):
                return 403, {}, {"error": "invalid signature"}
            return 200, {}, {"size": len(self.queue)}
        if path == f"/{self.user_id}/queue" and method == "POST":
            if not self._signed(raw, headers):
                return 403, {}, {"error": "invalid signature"}
            body = _json(raw) or {}
            problems = [
                k
                for k in ("command", "targeturl", "userid", "timestamp", "params")
                if k not in body
            ]
            if (
                problems
                or body["targeturl"] != f"{self.base_url}{path}"
                or body["userid"] != self.user_id
            ):
                return 400, {}, {"error": f"bad envelope {problems}"}
            if (
                body["command"] not in ("visit", "connect", "message")
                or "profile" not in body["params"]
            ):
                return 400, {}, {"error": "unknown command or missing profile"}
            if body["command"] == "message" and not body["params"].get("messagetext"):
                return 400, {}, {"error": "messagetext required"}
            mid = str(uuid.uuid4())
            self.queue.append({**body, "messageid": mid})
            return 200, {}, {"messageid": mid}
        return 404, {}, {"error": "not found"}


# ---------------------------------------------------------------------------------- Slack


class FakeSlack(FakeProvider):
    """An incoming webhook at /services/T000/B000/XXXX."""

    PATH = "/services/T000/B000/secretXXXX"

    def __init__(self) -> None:
        super().__init__()
        self.posted: list[str] = []

    @property
    def webhook_url(self) -> str:
        return self.base_url + self.PATH

    def error_body(self, status: int) -> Any:
        return "rate_limited" if status == 429 else "injected"

    def route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> Answer:
        if path != self.PATH:
            return 404, {}, "no_service"
        body = _json(raw)
        if not isinstance(body, dict):
            return 400, {}, "invalid_payload"
        if not body.get("text"):
            return 400, {}, "no_text"
        self.posted.append(body["text"])
        return 200, {}, "ok"


# ---------------------------------------------------------------------------------- SMTP


class SmtpInbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content)
        return "250 OK"


@contextlib.contextmanager
def smtp_server(
    cert: Path, key: Path, *, user: str = "alex", password: str = "s3cret"
) -> Iterator[tuple[Any, SmtpInbox]]:
    """An aiosmtpd server on loopback that requires STARTTLS and AUTH with `user`/`password`."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    def auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False)

    inbox = SmtpInbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=ctx,
        require_starttls=True,
        authenticator=auth,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
