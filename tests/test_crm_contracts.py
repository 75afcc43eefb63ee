"""The CRM clients against their vendors' published contracts (issue 14, last paragraph).

The fake servers (`tests.support.providers`) check scopes per endpoint, page and cap pages,
and merge on update as HubSpot's and Attio's references say; these tests hold the clients to
that, and hold `gtm doctor` to reaching what a run will need (scopes, the model endpoint).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gtm.app.doctor import Finding, diagnose
from gtm.app.settings import Settings
from gtm.domain.models import Account, Contact
from tests.support.cli import run_gtm
from tests.support.providers import FakeAttio, FakeHubSpot, free_port
from tools.attio import AttioCRM
from tools.crm import Activity, Task
from tools.http import AuthError, HttpClient, PagingError, ScopeError
from tools.hubspot import HubSpotCRM
from tools.local_crm import LocalCRM

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
ACME = Account(account_id="acme.ai", company="Acme", domain="acme.ai")
DANA = Contact(
    name="Dana Ruiz",
    title="VP Engineering",
    email="dana@acme.ai",
    linkedin_url="https://www.linkedin.com/in/dana-ruiz",
)


def _http(fake: Any, provider: str) -> HttpClient:
    """A client as the factory builds it, minus the documented rate limit (tests page a lot)."""
    token = fake.token
    return HttpClient(
        provider, fake.base_url, headers={"Authorization": f"Bearer {token}"}, rate=(1000, 1.0)
    )


def _raw(fake: Any) -> httpx.AsyncClient:
    """Plain HTTP to a fake, to look at its answers as they are."""
    return httpx.AsyncClient(
        base_url=fake.base_url, headers={"Authorization": f"Bearer {fake.token}"}
    )


def _without(scopes: list[str], *gone: str) -> list[str]:
    return [s for s in scopes if s not in gone]


# ------------------------------------------------------------------ scopes, per endpoint


async def test_attio_list_writes_need_list_configuration_read_and_doctor_says_so() -> None:
    with FakeAttio() as fake:
        fake.scopes = _without(fake.scopes, "list_configuration:read")
        # The server refuses exactly the endpoints that need the scope, in Attio's error shape.
        async with _raw(fake) as http:
            assert (await http.get("/v2/self")).status_code == 200
            entry = {"data": {"parent_record_id": "x", "parent_object": "companies"}}
            refused = await http.put("/v2/lists/outreach/entries", json=entry)
            assert refused.status_code == 403
            body = refused.json()
            assert (body["status_code"], body["type"]) == (403, "auth_error")
            assert "list_configuration:read" in body["message"]
            assert (await http.get("/v2/lists/outreach")).status_code == 403
            query = await http.post("/v2/objects/companies/records/query", json={"filter": {}})
            assert query.status_code == 200
        # The client's check names the scope before a run (not after the message was sent).
        crm = AttioCRM.connect(fake.base_url, fake.token, list_id="outreach")
        seen = len(fake.requests)
        with pytest.raises(ScopeError, match="list_configuration:read"):
            await crm.check()
        assert [r["path"] for r in fake.requests[seen:]] == ["/v2/self"]
        await crm.aclose()
        # Without a list the scope is not needed, and everything else still works.
        plain = AttioCRM.connect(fake.base_url, fake.token)
        assert "scopes ok" in await plain.check()
        co = await plain.upsert_company(ACME)
        await plain.log_activity(
            Activity(key="k", company_id=co.id, kind="email", body="hi", at=T0)
        )
        await plain.aclose()


async def test_attio_tasks_need_user_management_read() -> None:
    with FakeAttio() as fake:
        fake.scopes = _without(fake.scopes, "user_management:read")
        crm = AttioCRM.connect(fake.base_url, fake.token)
        with pytest.raises(ScopeError, match="user_management:read"):
            await crm.check()
        co = await crm.upsert_company(ACME)  # records and notes do not need it
        with pytest.raises(AuthError, match="403"):
            await crm.create_task(Task(key="t", company_id=co.id, title="Call", due_at=T0))
        await crm.aclose()


async def test_a_read_write_scope_grants_its_read() -> None:
    with FakeAttio() as fake:
        fake.scopes = [
            s.replace(":read", ":read-write") if s.endswith(":read") else s for s in fake.scopes
        ]
        crm = AttioCRM.connect(fake.base_url, fake.token, list_id="outreach")
        assert "scopes ok" in await crm.check()
        assert await crm.upsert_company(ACME)
        await crm.aclose()


async def test_hubspot_owner_scope_is_checked_by_doctor_not_met_at_intake(tmp_path: Path) -> None:
    with FakeHubSpot() as hub:
        hub.scopes = _without(hub.scopes, "crm.objects.owners.read")
        hub.set_company("acme.ai", owner=True)
        crm = HubSpotCRM.connect(hub.base_url, hub.token)
        # What intake would meet: the owner lookup is refused in HubSpot's shape.
        with pytest.raises(AuthError, match="403: .*required scopes"):
            await crm.find_company("acme.ai")
        await crm.aclose()
        s = Settings(
            data_dir=tmp_path, crm="hubspot", hubspot_base_url=hub.base_url, hubspot_token=hub.token
        )
        (crm_finding,) = [f for f in await diagnose(s) if f.component == "crm: hubspot"]
    assert not crm_finding.ok and "crm.objects.owners.read" in crm_finding.detail
    assert "private app" in crm_finding.fix and hub.token not in crm_finding.detail


async def test_hubspot_refuses_exactly_the_endpoints_a_scope_gates() -> None:
    with FakeHubSpot() as hub:
        hub.scopes = _without(hub.scopes, "crm.objects.deals.read")
        cid = hub.set_company("acme.ai", open_deals=1)
        search = {"filterGroups": [], "sorts": [], "properties": [], "limit": 1, "after": "0"}
        async with _raw(hub) as http:
            ok = await http.post("/crm/v3/objects/companies/search", json=search)
            assert ok.status_code == 200
            for refused in [
                await http.get(f"/crm/v4/objects/companies/{cid}/associations/deals"),
                await http.post("/crm/v3/objects/deals/batch/read", json={"inputs": []}),
            ]:
                body = refused.json()
                assert refused.status_code == 403 and body["category"] == "MISSING_SCOPES"
                assert body["errors"][0]["context"]["requiredGranularScopes"] == [
                    "crm.objects.deals.read"
                ]


async def test_hubspot_opt_out_needs_communication_preferences_write(tmp_path: Path) -> None:
    with FakeHubSpot() as hub:
        hub.scopes = _without(hub.scopes, "communication_preferences.write")
        # The server refuses the subscription write alone, in HubSpot's shape, naming both
        # scopes that grant it; the CRM calls go on.
        async with _raw(hub) as http:
            refused = await http.post(
                "/communication-preferences/v4/statuses/dana@acme.ai/unsubscribe-all",
                params={"channel": "EMAIL"},
            )
            body = refused.json()
            assert refused.status_code == 403 and body["category"] == "MISSING_SCOPES"
            assert body["errors"][0]["context"]["requiredGranularScopes"] == [
                "communication_preferences.write",
                "communication_preferences.read_write",
            ]
        crm = HubSpotCRM.connect(hub.base_url, hub.token)
        co = await crm.upsert_company(ACME)
        await crm.upsert_contact(DANA, co.id)
        with pytest.raises(AuthError, match="403: .*required scopes"):
            await crm.mark_opted_out(DANA)
        assert hub.unsubscribed_all == set()
        # Doctor names the scope before an opt-out ever has to be written back.
        with pytest.raises(ScopeError, match="communication_preferences.write"):
            await crm.check()
        s = Settings(
            data_dir=tmp_path, crm="hubspot", hubspot_base_url=hub.base_url, hubspot_token=hub.token
        )
        (finding,) = [f for f in await diagnose(s) if f.component == "crm: hubspot"]
        assert not finding.ok and "communication_preferences.write" in finding.detail
        # HubSpot's guide: `.read_write` grants the write too.
        hub.scopes.append("communication_preferences.read_write")
        assert "scopes ok" in await crm.check()
        assert await crm.mark_opted_out(DANA) is True
        assert hub.unsubscribed_all == {"dana@acme.ai"}
        await crm.aclose()


# ------------------------------------------------------------------ the opt-out write-back


@pytest.fixture(params=["local", "hubspot", "attio"])
async def crm(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """The embedded CRM and the hosted clients against servers speaking their APIs."""
    if request.param == "local":
        local = LocalCRM(tmp_path / "crm.sqlite")
        yield local
        await local.aclose()
        return
    fake: Any = FakeHubSpot() if request.param == "hubspot" else FakeAttio()
    with fake:
        client: Any = (
            HubSpotCRM.connect(fake.base_url, fake.token)
            if request.param == "hubspot"
            else AttioCRM.connect(fake.base_url, fake.token)
        )
        yield client
        await client.aclose()


async def test_crm_mark_opted_out_contract(crm: Any) -> None:
    """`mark_opted_out`, as escalations use it: True exactly when the person's record now reads
    opted out; repeating it changes nothing; an unknown person gets False and no record is
    made to hold the flag; nobody else is touched."""
    co = await crm.upsert_company(ACME)
    await crm.upsert_contact(DANA, co.id)
    bob = Contact(name="Bob Lee", title="CTO", email="bob@acme.ai")
    await crm.upsert_contact(bob, co.id)
    stranger = Contact(name="Zed", email="zed@acme.ai")
    assert await crm.mark_opted_out(stranger) is False
    assert await crm.find_contact(stranger) is None
    for _ in range(2):
        assert await crm.mark_opted_out(DANA) is True
        by_email = await crm.find_contact(Contact(name="x", email="dana@acme.ai"))
        by_profile = await crm.find_contact(Contact(name="x", linkedin_url=DANA.linkedin_url))
        assert by_email is not None and by_email.opted_out
        assert by_profile is not None and by_profile.opted_out and by_profile.id == by_email.id
    other = await crm.find_contact(bob)
    assert other is not None and not other.opted_out
    # Known by profile alone: where the CRM has no place for it (HubSpot's opt-out is an email
    # subscription status), False, and the record says the same.
    cara = Contact(name="Cara Diaz", linkedin_url="https://www.linkedin.com/in/cara-diaz")
    await crm.upsert_contact(cara, co.id)
    held = await crm.mark_opted_out(cara)
    record = await crm.find_contact(cara)
    assert record is not None and record.opted_out is held
    assert held is not isinstance(crm, HubSpotCRM)


# ------------------------------------------------------------------ paging, bounded


class _EndlessHubSpot(FakeHubSpot):
    """A server that always says there is another page (`repeat`: with the same cursor)."""

    def __init__(self, *, repeat: bool) -> None:
        super().__init__()
        self.repeat = repeat

    def associations(self, obj: str, oid: str, to: str, query: dict[str, str]) -> dict[str, Any]:
        after = "1" if self.repeat else str(int(query.get("after") or 0) + 1)
        return {"results": [], "paging": {"next": {"after": after}}}


@pytest.mark.parametrize("repeat", [False, True])
async def test_hubspot_association_paging_ends(repeat: bool) -> None:
    with _EndlessHubSpot(repeat=repeat) as hub:
        hub.set_company("acme.ai")
        crm = HubSpotCRM(_http(hub, "hubspot"), token=hub.token)
        with pytest.raises(PagingError, match="deals associated with companies"):
            await asyncio.wait_for(crm.find_company("acme.ai"), timeout=20)
        pages = [r for r in hub.requests if "/associations/" in r["path"]]
        assert len(pages) == (2 if repeat else 100)
        await crm.aclose()


async def test_hubspot_reads_every_page_of_associations() -> None:
    with FakeHubSpot() as hub:
        hub.set_company("acme.ai", closed_deals=600, open_deals=1)
        crm = HubSpotCRM(_http(hub, "hubspot"), token=hub.token)
        co = await crm.find_company("acme.ai")
        assert co is not None and co.open_deals == 1
        assert [r["query"].get("after") for r in hub.requests if "/associations/" in r["path"]] == [
            None,
            "500",
        ]
        await crm.aclose()


async def test_attio_counts_open_deals_on_every_page() -> None:
    with FakeAttio() as fake:
        rid = fake.set_company("acme.ai")
        link = [{"target_object": "companies", "target_record_id": rid}]
        for i, stage in enumerate(["Lost"] * 600 + ["Negotiation"]):  # the open one comes last
            fake.records["deals"][f"d{i}"] = {
                "associated_company": link,
                "stage": [{"status": {"title": stage}}],
            }
        crm = AttioCRM(_http(fake, "attio"))
        co = await crm.find_company("acme.ai")
        assert co is not None and co.open_deals == 1
        await crm.aclose()


async def test_attio_note_dedup_reads_past_the_first_50_notes() -> None:
    with FakeAttio() as fake:
        crm = AttioCRM(_http(fake, "attio"))
        co = await crm.upsert_company(ACME)
        for i in range(60):  # notes people wrote before ours
            fake.notes.append(
                {
                    "id": {"note_id": f"human-{i}"},
                    "parent_object": "companies",
                    "parent_record_id": co.id,
                    "title": "call",
                    "content_plaintext": f"Call notes {i}",
                    "created_at": "2026-01-01T00:00:00Z",
                }
            )
        act = Activity(key="k-61", company_id=co.id, kind="email", body="hi", at=T0)
        first = await crm.log_activity(act)
        assert await crm.log_activity(act) == first
        assert sum("gtm ref" in n["content_plaintext"] for n in fake.notes) == 1
        assert [a.key for a in await crm.activities(co.id)] == ["k-61"]
        listed = [r for r in fake.requests if r["method"] == "GET" and r["path"] == "/v2/notes"]
        limits = {r["query"]["limit"] for r in listed}
        assert limits == {"50"}  # Attio's maximum; the server refuses more
        await crm.aclose()


async def test_attio_task_dedup_reads_every_page() -> None:
    with FakeAttio() as fake:
        crm = AttioCRM(_http(fake, "attio"))
        co = await crm.upsert_company(ACME)
        linked = [{"target_object": "companies", "target_record_id": co.id}]
        fake.tasks += [
            {"id": {"task_id": f"t{i}"}, "content_plaintext": "x", "linked_records": linked}
            for i in range(500)
        ]
        task = Task(key="t-501", company_id=co.id, title="Book the meeting", due_at=T0)
        assert await crm.create_task(task) == await crm.create_task(task)
        assert sum("gtm ref" in t["content_plaintext"] for t in fake.tasks) == 1
        await crm.aclose()


class _EndlessAttio(FakeAttio):
    def note_page(self, query: dict[str, str]) -> Any:
        note = {"id": {"note_id": "n"}, "content_plaintext": "someone's note"}
        return 200, {}, {"data": [note] * int(query["limit"])}


async def test_attio_note_paging_ends() -> None:
    with _EndlessAttio() as fake:
        crm = AttioCRM(_http(fake, "attio"))
        co = await crm.upsert_company(ACME)
        act = Activity(key="k", company_id=co.id, kind="email", body="hi", at=T0)
        with pytest.raises(PagingError, match="notes on companies"):
            await asyncio.wait_for(crm.log_activity(act), timeout=60)
        assert not any(r["method"] == "POST" and r["path"] == "/v2/notes" for r in fake.requests)
        await crm.aclose()


# ------------------------------------------------------------------ never overwrite the CRM


async def test_attio_server_merges_as_attio_does() -> None:
    """Update (PATCH): multiselect attributes gain values, the others are replaced. Assert: the
    matching attribute keeps its values and gains new ones, every other one is replaced."""
    with FakeAttio() as fake:
        rid = fake.set_company("acme.ai")
        held = fake.records["companies"][rid]
        async with _raw(fake) as http:
            patch = {"domains": [{"domain": "acme.io"}], "name": [{"value": "Patched"}]}
            done = await http.patch(
                f"/v2/objects/companies/records/{rid}", json={"data": {"values": patch}}
            )
            assert done.status_code == 200
            assert [d["domain"] for d in held["domains"]] == ["acme.ai", "acme.io"]
            assert held["name"] == [{"value": "Patched"}]
            asserted = {"domains": [{"domain": "acme.ai"}], "name": [{"value": "Asserted"}]}
            done = await http.put(
                "/v2/objects/companies/records",
                params={"matching_attribute": "domains"},
                json={"data": {"values": asserted}},
            )
            assert done.status_code == 200 and done.json()["data"]["id"]["record_id"] == rid
            assert [d["domain"] for d in held["domains"]] == ["acme.ai", "acme.io"]
            assert held["name"] == [{"value": "Asserted"}]
            notes = {"parent_object": "companies", "parent_record_id": rid, "limit": "51"}
            assert (await http.get("/v2/notes", params=notes)).status_code == 400


async def test_attio_never_overwrites_what_the_crm_holds() -> None:
    with FakeAttio() as fake:
        rid = fake.set_company("acme.ai")
        fake.records["companies"][rid]["name"] = [{"value": "Acme Robotics, Inc."}]
        other = fake.set_company("acme-holdings.example")
        pid = "p-dana"
        fake.records["people"][pid] = {
            "email_addresses": [{"email_address": "dana@acme.ai"}],
            "name": [{"first_name": "Dana", "last_name": "R.", "full_name": "Dr. Dana R."}],
            "job_title": [{"value": "CTO"}],
            "company": [{"target_object": "companies", "target_record_id": other}],
        }
        before = json.dumps(fake.records, sort_keys=True)
        crm = AttioCRM(_http(fake, "attio"), list_id="outreach")
        for _ in range(2):  # every logged touch upserts both again
            co = await crm.upsert_company(ACME)
            person = await crm.upsert_contact(DANA, co.id)
        held = fake.records["people"][pid]
        assert co.id == rid and co.name == "Acme Robotics, Inc." and person.id == pid
        assert (person.name, person.title, person.company_id) == ("Dr. Dana R.", "CTO", other)
        # The one empty field (the profile URL) is filled; nothing else changed.
        assert held.pop("linkedin") == [{"value": "https://www.linkedin.com/in/dana-ruiz"}]
        assert json.dumps(fake.records, sort_keys=True) == before
        await crm.aclose()


async def test_attio_fills_a_new_person_from_the_list() -> None:
    with FakeAttio() as fake:
        crm = AttioCRM(_http(fake, "attio"))
        co = await crm.upsert_company(ACME)
        person = await crm.upsert_contact(DANA, co.id)
        assert (person.name, person.title, person.company_id) == (
            "Dana Ruiz",
            "VP Engineering",
            co.id,
        )
        assert person.email == "dana@acme.ai" and person.linkedin_url == DANA.linkedin_url
        assert co.name == "Acme"
        # An assert carries the matching attribute alone: on a record that exists it would
        # replace whatever else it carried.
        asserts = [
            json.loads(r["body"])["data"]["values"]
            for r in fake.requests
            if r["query"].get("matching_attribute")
        ]
        assert [set(v) for v in asserts] == [{"domains"}, {"email_addresses"}]
        await crm.aclose()


# ------------------------------------------------------------------ doctor reaches the model


KEY = "sk-SECRET-doctor-91f3"


class _ModelServer:
    """`GET /v1/models` as OpenAI answers it: the list for the right key, 401 (echoing the key,
    as OpenAI does) for a wrong one; `html` serves a web page instead (a wrong base URL)."""

    def __init__(self, *, html: bool = False) -> None:
        self.html = html
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                sent = self.headers.get("Authorization", "")
                if owner.html:
                    status, ctype, body = 200, "text/html", b"<html>Welcome</html>"
                elif self.path != "/v1/models":
                    status, ctype, body = 404, "application/json", b'{"error": {}}'
                elif sent != f"Bearer {KEY}":
                    msg = f"Incorrect API key provided: {sent.removeprefix('Bearer ')}"
                    status, ctype = 401, "application/json"
                    body = json.dumps({"error": {"message": msg}}).encode()
                else:
                    status, ctype = 200, "application/json"
                    body = json.dumps({"object": "list", "data": [{"id": "gpt-x"}]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def model() -> Iterator[_ModelServer]:
    srv = _ModelServer()
    yield srv
    srv.close()


async def _model_finding(tmp_path: Path, **kw: Any) -> Finding:
    s = Settings(data_dir=tmp_path, model="gpt-x", **kw)
    (finding,) = [f for f in await diagnose(s) if f.component == "model"]
    assert KEY not in finding.detail + finding.fix
    return finding


async def test_doctor_reaches_the_model_endpoint(tmp_path: Path, model: _ModelServer) -> None:
    ok = await _model_finding(tmp_path, model_base_url=model.url, model_api_key=KEY)
    assert ok.ok and "answers" in ok.detail and "not among" not in ok.detail
    wrong = await _model_finding(tmp_path, model_base_url=model.url, model_api_key=KEY + "x")
    assert not wrong.ok and "401" in wrong.detail and "GTM_MODEL_API_KEY" in wrong.fix
    root = await _model_finding(tmp_path, model_base_url=model.url[:-3], model_api_key=KEY)
    assert not root.ok and "API root" in root.fix
    embedded = await _model_finding(tmp_path)
    assert embedded.ok and "embedded" in embedded.detail


async def test_doctor_fails_a_closed_port_or_a_web_page(tmp_path: Path) -> None:
    closed = await _model_finding(
        tmp_path, model_base_url=f"http://127.0.0.1:{free_port()}/v1", model_api_key=KEY
    )
    assert not closed.ok and "ConnectError" in closed.detail
    assert "GTM_MODEL_BASE_URL" in closed.fix
    page = _ModelServer(html=True)
    try:
        web = await _model_finding(tmp_path, model_base_url=page.url, model_api_key=KEY)
    finally:
        page.close()
    assert not web.ok and "OpenAI-compatible" in web.fix


async def test_doctor_gives_up_on_a_silent_endpoint_quickly(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://user:{KEY}@127.0.0.1:{silent.getsockname()[1]}/v1?api-key={KEY}"
        start = time.monotonic()
        finding = await _model_finding(tmp_path, model_base_url=url)
    assert time.monotonic() - start < 15
    assert not finding.ok and "timed out" in finding.detail


def test_gtm_doctor_prints_fail_for_an_unreachable_model(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "COLUMNS": "200",
        "GTM_DATA_DIR": str(tmp_path / "data"),
        "GTM_MODEL_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "GTM_MODEL_API_KEY": KEY,
    }
    done = run_gtm(env, "doctor", timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"model\s.*FAIL", done.stdout) and "GTM_MODEL_BASE_URL" in done.stdout
    assert KEY not in done.stdout + done.stderr


# ------------------------------------------------------------------ the README says it all


def test_readme_lists_every_scope_the_clients_check() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Real CRM, LinkedIn, email and Slack", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z_.]+(?::[a-z-]+|\.read|\.write|\.read/write))`", section))
    listed |= {s.replace("read/write", a) for s in listed for a in ("read", "write")}
    wanted = {*HubSpotCRM.REQUIRED_SCOPES, *AttioCRM.REQUIRED_SCOPES, *AttioCRM.LIST_SCOPES}
    assert wanted <= listed, sorted(wanted - listed)
