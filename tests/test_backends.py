"""One contract per seam, run against the embedded default and its in-memory twin."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.utils import format_datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from gtm.domain.models import Account, Contact, Touch
from memory.chroma import ChromaMemory
from memory.in_memory import InMemoryMemory
from tests.support.providers import FakeAttio, FakeDuxSoup, FakeHubSpot, SmtpInbox, free_port
from tools.alerts import LocalAlerts
from tools.attio import AttioCRM
from tools.crm import CRM, Activity, Task
from tools.duxsoup import DuxSoupLinkedIn
from tools.fakes import InMemoryCRM, InMemoryEmail, InMemoryLinkedIn
from tools.hubspot import HubSpotCRM
from tools.local_crm import LocalCRM
from tools.local_outbox import LocalEmailOutbox, LocalLinkedInOutbox
from tools.outbox import Limit, Outbox, iso_week_start
from tools.smtp import SmtpEmail
from tools.suppression import SuppressionList

T0 = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
ACCOUNT = Account(account_id="acme.ai", company="Acme", domain="acme.ai")
DANA = Contact(
    name="Dana Ruiz", email="Dana@Acme.ai", linkedin_url="https://www.linkedin.com/in/dana-ruiz"
)


@pytest.fixture(params=["local", "memory", "hubspot", "attio"])
async def crm(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """The embedded CRM, its twin, and the real clients against servers speaking their APIs.

    `set_company` / `set_opted_out` seed what a CRM admin would have entered.
    """
    if request.param in ("local", "memory"):
        c = LocalCRM(tmp_path / "crm.sqlite") if request.param == "local" else InMemoryCRM()
        yield c
        await c.aclose()
        return
    fake: Any = FakeHubSpot() if request.param == "hubspot" else FakeAttio()
    with fake:
        client: Any = (
            HubSpotCRM.connect(fake.base_url, fake.token)
            if request.param == "hubspot"
            else AttioCRM.connect(fake.base_url, fake.token, list_id="outreach")
        )
        client.set_company = fake.set_company
        client.set_opted_out = fake.set_opted_out
        yield client
        await client.aclose()


async def test_crm_find_or_create_is_idempotent(crm: Any) -> None:
    assert isinstance(crm, CRM)
    assert await crm.find_company("acme.ai") is None
    a = await crm.upsert_company(ACCOUNT)
    b = await crm.upsert_company(ACCOUNT)
    assert a.id == b.id and a.domain == "acme.ai"
    p1 = await crm.upsert_contact(DANA, a.id)
    # Same person by email, or by profile URL with different case and a trailing slash.
    p2 = await crm.upsert_contact(Contact(name="D. Ruiz", email="dana@acme.ai"), a.id)
    p3 = await crm.upsert_contact(
        Contact(name="Dana", linkedin_url="https://www.linkedin.com/in/Dana-Ruiz/"), a.id
    )
    assert p1.id == p2.id == p3.id


async def test_crm_activities_and_tasks_are_keyed(crm: Any) -> None:
    co = await crm.upsert_company(ACCOUNT)
    act = Activity(key="k1", company_id=co.id, kind="email", body="hi", at=T0)
    first = await crm.log_activity(act)
    assert await crm.log_activity(act) == first
    await crm.log_activity(act.model_copy(update={"key": "k2", "at": T0 + timedelta(1)}))
    assert [a.key for a in await crm.activities(co.id)] == ["k1", "k2"]
    task = Task(key="t1", company_id=co.id, title="Book the meeting", due_at=T0)
    assert await crm.create_task(task) == await crm.create_task(task)


async def test_crm_checks_and_erases_a_person_or_says_where_they_remain(crm: Any) -> None:
    assert await crm.check()
    co = await crm.upsert_company(ACCOUNT)
    person = await crm.upsert_contact(DANA, co.id)
    await crm.log_activity(
        Activity(key="k1", company_id=co.id, contact_id=person.id, kind="email", body="hi", at=T0)
    )
    erased = await crm.erase_person(["dana@acme.ai"], ["https://www.linkedin.com/in/dana-ruiz"])
    if isinstance(crm, LocalCRM):  # the embedded CRM and its twin erase the contact and touch
        assert erased == 2 and await crm.find_contact(DANA) is None
    else:  # a hosted CRM keeps the contact: a person must erase it there
        assert isinstance(erased, str) and person.id in erased
    assert await crm.erase_person(["nobody@acme.ai"], []) == 0


async def test_crm_suppression_facts(crm: Any) -> None:
    crm.set_company("acme.ai", lifecycle_stage="customer", open_deals=2)
    co = await crm.find_company("acme.ai")
    assert co.is_customer and co.open_deals == 2
    crm.set_opted_out(DANA)
    person = await crm.find_contact(Contact(name="x", email="dana@acme.ai"))
    assert person is not None and person.opted_out


@pytest.fixture(params=["local", "memory", "duxsoup"])
async def linkedin(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "duxsoup":
        with FakeDuxSoup() as fake:
            dux: Any = DuxSoupLinkedIn.open(
                fake.base_url, fake.user_id, fake.key, ledger=tmp_path / "dux.sqlite"
            )
            dux.actions = lambda: [
                SimpleNamespace(kind=q["command"], text=q["params"].get("messagetext", ""))
                for q in fake.queue
            ]
            yield dux
            await dux.aclose()
        return
    c = (
        LocalLinkedInOutbox(tmp_path / "li.sqlite", sender="seat")
        if request.param == "local"
        else InMemoryLinkedIn(sender="seat")
    )
    yield c
    await c.aclose()


async def test_linkedin_same_key_is_performed_once(linkedin: Any) -> None:
    url = "https://www.linkedin.com/in/dana-ruiz"
    r1 = await linkedin.connect(url, "note", key="k")
    r2 = await linkedin.connect(url, "other note", key="k")
    r3 = await linkedin.visit(url, key="k2")
    assert r1 == r2 and r3.provider_id != r1.provider_id
    assert [(a.kind, a.text) for a in linkedin.actions()] == [("connect", "note"), ("visit", "")]


async def test_linkedin_checks_and_erases_local_copies_only(linkedin: Any) -> None:
    assert await linkedin.check()
    url = "https://www.linkedin.com/in/dana-ruiz"
    await linkedin.visit(url, key="k")
    await linkedin.connect(url + "/?trk=x", "note", key="k2")
    # The local twins hold the actions; Dux-Soup's ledger holds hashed keys only.
    assert await linkedin.erase_person([], [url]) == (0 if linkedin.live else 2)
    if not linkedin.live:
        assert linkedin.actions() == []


@pytest.fixture(params=["local", "memory", "smtp"])
async def email(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "smtp":
        inbox = SmtpInbox()
        controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
        controller.start()
        mail = SmtpEmail(
            sender="me@vectorly.example",
            sender_name="Me",
            host="127.0.0.1",
            port=controller.port,
            starttls=False,
            ledger=tmp_path / "smtp.sqlite",
        )
        yield mail
        await mail.aclose()
        controller.stop()
        assert len(inbox.messages) == 2  # k and k2: the repeated key was not sent again
        return
    c = (
        LocalEmailOutbox(tmp_path / "mail", sender="me@vectorly.example")
        if request.param == "local"
        else InMemoryEmail(sender="me@vectorly.example")
    )
    yield c
    await c.aclose()


async def test_email_same_key_is_sent_once(email: Any) -> None:
    kw = {
        "to": "dana@acme.ai",
        "to_name": "Dana Ruiz",
        "subject": "Retrieval at Acme",
        "body": "Hi Dana",
    }
    r1 = await email.send(**kw, key="k")
    r2 = await email.send(**{**kw, "body": "changed"}, key="k")
    r3 = await email.send(**kw, key="k2")
    assert r1.provider_id == r2.provider_id != r3.provider_id
    assert await email.check()  # SMTP: a session up to NOOP, nothing sent
    # The local twins hold the messages; SMTP's ledger holds hashed keys only.
    assert await email.erase_person(["dana@acme.ai"], []) == (0 if email.live else 2)


async def test_local_email_is_a_parseable_eml(tmp_path: Path) -> None:
    box = LocalEmailOutbox(tmp_path / "mail", sender="me@vectorly.example")
    r = await box.send(
        to="dana@acme.ai",
        to_name="Dana Ruiz",
        subject="Retrieval at Acme",
        body="Hi Dana,\nOne question.",
        key="abc",
    )
    (path,) = box.messages()
    msg = message_from_bytes(path.read_bytes())
    assert msg["To"] == "Dana Ruiz <dana@acme.ai>" and msg["Message-ID"] == r.provider_id
    assert msg["X-GTM-Idempotency-Key"] == "abc" and "One question." in msg.get_payload()


@pytest.fixture(params=["chroma", "memory"])
def memory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    m = ChromaMemory(tmp_path / "chroma") if request.param == "chroma" else InMemoryMemory()
    yield m
    m.close()


async def test_memory_contract(memory: Any) -> None:
    def touch(text: str, days: int, account: str = "acme.ai") -> Touch:
        return Touch(account_id=account, kind="send", text=text, at=T0 + timedelta(days=days))

    await memory.remember(touch("We discussed their Pinecone migration costs", 0), key="a")
    await memory.remember(touch("They are hiring bakers for a new shop", 1), key="b")
    await memory.remember(touch("We discussed their Pinecone migration costs", 0), key="a")
    await memory.remember(touch("unrelated account", 2, "other.ai"), key="c")
    history = await memory.history("acme.ai")
    assert [t.text[:8] for t in history] == ["They are", "We discu"]
    assert len(await memory.history("acme.ai", limit=1)) == 1
    (best,) = await memory.recall("acme.ai", "what did we say about the Pinecone migration", k=1)
    assert "Pinecone" in best.text
    assert await memory.forget_account("acme.ai") == 2
    assert await memory.history("acme.ai") == [] and len(await memory.history("other.ai")) == 1


async def test_chroma_recall_is_semantic(tmp_path: Path) -> None:
    m = ChromaMemory(tmp_path / "chroma")
    for key, text in (
        ("a", "We discussed their Pinecone migration costs"),
        ("b", "They are hiring bakers for a new shop"),
    ):
        await m.remember(Touch(account_id="x", kind="send", text=text, at=T0), key=key)
    (best,) = await m.recall("x", "moving off a vector database vendor", k=1)
    assert "Pinecone" in best.text


async def test_chroma_memory_persists_across_processes_opening_it(tmp_path: Path) -> None:
    first = ChromaMemory(tmp_path / "chroma")
    await first.remember(Touch(account_id="a", kind="fact", text="x", at=T0), key="k")
    again = ChromaMemory(tmp_path / "chroma")
    assert [t.text for t in await again.history("a")] == ["x"]


def test_outbox_states_and_weekly_counts(tmp_path: Path) -> None:
    now = [T0]
    box = Outbox(tmp_path / "o.sqlite", clock=lambda: now[0])
    kw: dict[str, Any] = {
        "campaign": "c",
        "account_id": "a",
        "contact_key": "p",
        "channel": "linkedin",
        "sender": "seat",
    }
    got = box.reserve(key="k1", step="linkedin_connect", **kw)
    assert got.created and got.entry is not None and got.entry.state == "pending"
    again = box.reserve(key="k1", step="linkedin_connect", **kw)
    assert not again.created and again.entry is not None and again.entry.key == "k1"
    box.mark_sent("k1", "li_1")
    box.reserve(key="k2", step="linkedin_connect", **kw)
    box.mark_failed("k2", "refused")
    assert box.count("seat", "linkedin_connect", iso_week_start(T0)) == 1  # failed does not count
    now[0] = T0 + timedelta(days=7)
    assert box.count("seat", "linkedin_connect", iso_week_start(now[0])) == 0
    week = iso_week_start(now[0])
    cap = [Limit(1, week, week + timedelta(days=7), "connects per week")]
    assert box.reserve(key="k3", step="linkedin_connect", limits=cap, **kw).created
    full = box.reserve(key="k4", step="linkedin_connect", limits=cap, **kw)
    assert full.entry is None and full.full == cap[0] and full.used == 1
    assert box.get("k4") is None
    stale = box.recover_stale_pending(older_than=now[0] + timedelta(seconds=1))
    assert [(s.key, s.state) for s in stale] == [("k3", "unknown")]
    assert iso_week_start(datetime(2026, 11, 22, 23, tzinfo=UTC)) == datetime(
        2026, 11, 16, tzinfo=UTC
    )
    box.close()


def _reserve_in_child(path: str, queue: Any) -> None:
    box = Outbox(Path(path))
    created = box.reserve(
        key="same",
        campaign="c",
        account_id="a",
        contact_key="p",
        step="email",
        channel="email",
        sender="s",
    ).created
    queue.put(created)
    box.close()


def _take_slots_in_child(path: str, worker: int, queue: Any) -> None:
    box = Outbox(Path(path))
    since = datetime(2026, 11, 16, tzinfo=UTC)
    cap = [Limit(25, since, since + timedelta(days=7), "connects per week")]
    won = 0
    for i in range(40):
        got = box.reserve(
            key=f"w{worker}-{i}",
            campaign="c",
            account_id=f"a{worker}-{i}",
            contact_key=f"p{worker}-{i}",
            step="linkedin_connect",
            channel="linkedin",
            sender="seat",
            limits=cap,
        )
        won += got.created
    queue.put(won)
    box.close()


def test_a_cap_holds_across_processes_racing_for_the_last_slots(tmp_path: Path) -> None:
    """Four processes each try 40 connects as one seat under a cap of 25: exactly 25 win."""
    path = str(tmp_path / "o.sqlite")
    Outbox(Path(path)).close()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_take_slots_in_child, args=(path, w, queue)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    won = [queue.get(timeout=5) for _ in procs]
    queue.close()
    queue.join_thread()
    assert sum(won) == 25, won
    box = Outbox(Path(path))
    assert box.count("seat", "linkedin_connect", datetime(2026, 11, 16, tzinfo=UTC)) == 25
    box.close()


def test_two_processes_reserving_one_key_get_one_winner(tmp_path: Path) -> None:
    path = str(tmp_path / "o.sqlite")
    Outbox(Path(path)).close()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_reserve_in_child, args=(path, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = sorted(queue.get(timeout=5) for _ in procs)
    queue.close()
    queue.join_thread()
    assert results == [False, False, False, True]


async def test_local_stamps_come_from_the_injected_clock(tmp_path: Path) -> None:
    li = LocalLinkedInOutbox(tmp_path / "li.sqlite", sender="seat", clock=lambda: T0)
    await li.visit("https://www.linkedin.com/in/dana-ruiz", key="k")
    assert [a.at for a in li.actions()] == [T0]
    li.close()
    box = LocalEmailOutbox(tmp_path / "mail", sender="me@vectorly.example", clock=lambda: T0)
    await box.send(to="dana@acme.ai", to_name="Dana", subject="s", body="b", key="k")
    (path,) = box.messages()
    assert message_from_bytes(path.read_bytes())["Date"] == format_datetime(T0)
    alerts = LocalAlerts(tmp_path / "alerts.jsonl", clock=lambda: T0)
    await alerts.alert("error", "x")
    assert json.loads(alerts.path.read_text(encoding="utf-8"))["at"] == T0.isoformat()
    sup = SuppressionList(tmp_path / "s.sqlite", clock=lambda: T0)
    sup.erase([("email", "dana@acme.ai")], "erased")
    sup.record_erasure("f" * 64, "reviewer", {"emails": 1})
    assert [e[0] for e in sup.erasures()] == [T0.isoformat()]
    sup.close()


def test_suppression_list_matches_email_domain_and_profile(tmp_path: Path) -> None:
    sup = SuppressionList(tmp_path / "s.sqlite")
    assert sup.check(DANA, ACCOUNT) is None
    sup.add("linkedin", "https://linkedin.com/in/Dana-Ruiz/?trk=x", "asked us to stop")
    assert "asked us to stop" in (sup.check(DANA, ACCOUNT) or "")
    other = Contact(name="Jo", email="jo@acme.ai")
    sup.add("domain", "www.ACME.ai", "legal request")
    assert "legal request" in (sup.check(other, ACCOUNT) or "")
    sup.close()
