"""Escalations as the playbook says, on the local twins: alerts, a CRM task due 48 h after a
meeting request, suppression on every channel after an opt-out (written back to the CRM),
memory and CRM notes for feedback, each once however often the events come in, and the
'needs a human' list with the time left on its deadline."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.language_models import BaseChatModel
from starlette.testclient import TestClient
from typer.testing import CliRunner

from evals.replies import ClassifiedReply, SignalEvidence
from gtm.app.checkpoints import thread_config
from gtm.app.escalation_pass import apply_rules, escalate_pending
from gtm.app.escalations import decide, mark_done, needs_human, time_left
from gtm.app.loop import ingest, local_event
from gtm.app.runner import run_campaign
from gtm.app.settings import Settings
from gtm.app.workspace import Workspace, open_workspace
from gtm.domain.events import Event, ReplySignal
from gtm.domain.models import Account, Contact
from gtm.domain.playbook import load_playbook
from gtm.domain.threads import thread_id_for
from tests.support.fake_model import ScriptedChatModel, tool_call
from tests.support.openai_server import ScriptedOpenAIServer, tool_call_response
from tools.attio import AttioCRM
from tools.escalations import Escalation, EscalationStore
from tools.http import HttpClient
from tools.hubspot import HubSpotCRM

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPLY_AT = T0 + timedelta(days=1)
MSGID = "<m1.spring@yourcompany.example>"
BOB_MSGID = "<m2.spring@yourcompany.example>"
ANN = Contact(
    name="Ann Lee",
    title="VP Engineering",
    email="ann@acme.ai",
    linkedin_url="https://www.linkedin.com/in/ann-lee",
)
BOB = Contact(name="Bob Ray", title="Engineer", email="bob@acme.ai")
ACME = Account(
    account_id="acme.ai",
    company="Acme",
    domain="acme.ai",
    segment="AI coding assistant",
    description="An AI coding assistant for enterprise teams.",
    owner="owner@yourcompany.example",
    contacts=(ANN, BOB),
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@asynccontextmanager
async def workspace(data: Path, clock: Clock) -> AsyncIterator[Workspace]:
    async with open_workspace(Settings(data_dir=data), with_model=False, clock=clock) as ws:
        yield ws


async def seed(ws: Workspace, clock: Clock, *, tier: int = 1) -> None:
    """What a sent first touch leaves behind: the ledger row, the CRM records, the outbox."""
    tid = thread_id_for("spring", "acme.ai")
    ws.ledger.ensure("spring", ACME, "email")
    ws.ledger.update(tid, tier=tier, status="sent")
    company = await ws.deps.crm.upsert_company(ACME)
    for c in (ANN, BOB):
        await ws.deps.crm.upsert_contact(c, company.id)
    clock.now = T0
    for c, n in ((ANN, 1), (BOB, 2)):
        key = f"k-{n}"
        ws.deps.outbox.reserve(
            key=key,
            campaign="spring",
            account_id="acme.ai",
            contact_key=c.key,
            step="email",
            channel="email",
            sender="me@yourcompany.example",
        )
        ws.deps.outbox.mark_sent(key, MSGID.replace("m1", f"m{n}"))
    clock.now = REPLY_AT + timedelta(minutes=5)


def answer(*pairs: tuple[str, str]) -> Any:
    """The model's structured answer: each signal with its quote."""
    return tool_call(
        "ReplyAnswer",
        {
            "signals": [s for s, _ in pairs],
            "evidence": [{"signal": s, "quote": q} for s, q in pairs],
        },
    )


def with_model(ws: Workspace, model: BaseChatModel) -> None:
    ws.deps = dataclasses.replace(ws.deps, model=model)


def alerts(data: Path) -> list[dict[str, str]]:
    path = data / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def crm_rows(data: Path, sql: str) -> list[sqlite3.Row]:
    db = sqlite3.connect(data / "crm.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def reply(text: str, *, email: str = "ann@acme.ai", msgid: str = MSGID) -> Event:
    """An email reply, matched by the Message-ID of the email it answers."""
    return local_event(
        kind="email_reply",
        at=REPLY_AT,
        email=email,
        text=text,
        subject="Re: hi",
        in_reply_to=[msgid],
    )


# --------------------------------------------------------------------------- deciding


def _classified(*signals: ReplySignal) -> ClassifiedReply:
    ev = tuple(SignalEvidence(signal=s, quote=s, source="model") for s in signals)
    return ClassifiedReply(text="x", signals=signals, evidence=ev)


def test_the_playbook_rules_decide_which_escalations_apply() -> None:
    pb = load_playbook()
    ev = reply("sure")

    def signals(c: ClassifiedReply, title: str, tier: int | None, kind: str = "") -> list[str]:
        e = ev.model_copy(update={"kind": kind}) if kind else ev
        return [r.signal for r in decide(pb, e, c, title=title, account_tier=tier)]

    assert signals(_classified("question"), "VP Engineering", 2) == ["senior_reply"]
    assert signals(_classified("question"), "Engineer", 1) == []
    assert signals(_classified("interested"), "Engineer", 1) == ["tier1_interest"]
    assert signals(_classified("interested"), "Engineer", 2) == []
    assert signals(_classified("meeting_request"), "Head of AI", 1) == [
        "senior_reply",
        "tier1_interest",
        "meeting_request",
    ]
    # An opt-out raises no follow-up, only its suppression and what it tells us.
    assert signals(_classified("opt_out", "competitor_mentioned"), "CEO", 1) == [
        "competitor_mentioned",
        "opt_out",
    ]
    # An automatic reply from a VP's mailbox is not a reply from the VP.
    assert signals(_classified("out_of_office"), "VP Sales", 1) == []
    assert signals(_classified(), "VP Sales", 1, kind="auto_reply") == []
    due = {r.signal: r.due_hours for r in pb.escalations.rules}
    assert due["meeting_request"] == 48


# --------------------------------------------------------------------------- acting


async def test_a_vp_asking_for_a_meeting_alerts_the_owner_and_makes_one_task_due_in_48h(
    tmp_path: Path,
) -> None:
    data, clock = tmp_path / "data", Clock()
    text = "Interesting <!channel>. Could we do a call next Tuesday?"
    model = ScriptedChatModel.from_script(
        [
            answer(
                ("interested", "Interesting <!channel>"),
                ("meeting_request", "do a call next Tuesday"),
            )
        ]
    )
    async with workspace(data, clock) as ws:
        await seed(ws, clock)
        with_model(ws, model)
        ingest(ws, [reply(text)])
        first = await escalate_pending(ws)
        # The same reply again (a webhook retry, a second sync) and a second pass: no change.
        ingest(ws, [reply(text)])
        again = await escalate_pending(ws)
        listed = needs_human(ws)

    model.assert_complete()  # classified once
    assert sorted(e.signal for e in first.escalations) == [
        "meeting_request",
        "senior_reply",
        "tier1_interest",
    ]
    assert again.events == 0 and again.escalations == []
    lines = alerts(data)
    assert len(lines) == 3 and {a["kind"] for a in lines} == {"escalation"}
    assert all(a["text"].startswith("owner@yourcompany.example:") for a in lines)
    assert any("Ann Lee, VP Engineering at Acme" in a["text"] for a in lines)
    assert not any("<" in a["text"] for a in lines)  # a reply cannot page a Slack channel
    tasks = crm_rows(data, "SELECT * FROM tasks")
    assert len(tasks) == 1
    assert datetime.fromisoformat(tasks[0]["due_at"]) == REPLY_AT + timedelta(hours=48)
    assert tasks[0]["owner"] == "owner@yourcompany.example"
    assert tasks[0]["contact_id"] is not None
    meeting = next(e for e in listed if e.signal == "meeting_request")
    assert meeting.due_at == REPLY_AT + timedelta(hours=48)
    assert "CRM task" in meeting.outcome and not meeting.done
    assert {e.signal for e in listed} == {"meeting_request", "senior_reply", "tier1_interest"}


async def test_an_opt_out_by_rule_suppresses_everywhere_at_once_without_a_model(
    tmp_path: Path,
) -> None:
    data, clock = tmp_path / "data", Clock()
    async with workspace(data, clock) as ws:
        await seed(ws, clock)
        ingest(ws, [reply("Please remove me from your list.")])
        # At once: the ingest itself suppressed the person, before any model or pass.
        assert ws.deps.suppressions.check(ANN, ACME) is not None
        report = await escalate_pending(ws)  # no model: the rule's verdict is enough
        assert report.waiting_for_model == 0
        for probe in (
            Contact(name="x", email="ANN@acme.ai"),
            Contact(name="x", linkedin_url="https://de.linkedin.com/in/ann-lee/"),
        ):
            assert ws.deps.suppressions.check(probe, ACME) is not None, probe
        assert ws.deps.suppressions.check(BOB, ACME) is None  # only her
        record = await ws.deps.crm.find_contact(ANN)
        assert record is not None and record.opted_out  # written back
        assert needs_human(ws) == []  # nothing left for a human
        (esc,) = needs_human(ws, include_done=True)
        assert esc.signal == "opt_out" and esc.done_by == "automatic"
        # A later run skips her as suppressed, on LinkedIn too.
        ann_only = ACME.model_copy(update={"contacts": (ANN,)})
        summary = await run_campaign(ws, [ann_only], campaign="summer", channel="linkedin")
        row = ws.ledger.get(thread_id_for("summer", "acme.ai"))
    assert summary.skipped_by_reason["suppressed"] == 1
    assert row is not None and row.skip_reason == "suppressed"
    assert alerts(data) == []  # nobody is told to follow up on an opt-out


async def test_an_unsubscribe_event_by_profile_suppresses_the_address_too(tmp_path: Path) -> None:
    data, clock = tmp_path / "data", Clock()
    async with workspace(data, clock) as ws:
        await seed(ws, clock)
        ev = local_event(kind="unsubscribe", at=REPLY_AT, linkedin_url=ANN.linkedin_url)
        ingest(ws, [ev])
        await escalate_pending(ws)
        await escalate_pending(ws)
        assert ws.deps.suppressions.check(Contact(name="x", email="ann@acme.ai"), ACME)
        assert (await ws.deps.crm.find_contact(ANN)).opted_out  # type: ignore[union-attr]
        assert len(needs_human(ws, include_done=True)) == 1


async def test_a_bounce_suppresses_that_address_only(tmp_path: Path) -> None:
    data, clock = tmp_path / "data", Clock()
    async with workspace(data, clock) as ws:
        await seed(ws, clock)
        ingest(ws, [local_event(kind="bounce", at=REPLY_AT, email="bob@acme.ai")])
        assert apply_rules(ws) == 0  # already applied by the ingest, once
        assert ws.deps.suppressions.check(BOB, ACME) is not None
        listed = ws.deps.suppressions.entries()
        assert [(k, v) for k, v, _ in listed] == [("email", "bob@acme.ai")]
        report = await escalate_pending(ws)
        assert report.escalations == [] and report.events == 1


async def test_a_pass_loads_only_the_events_not_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gtm serve` runs both passes every tick: they read the events' keys and load only those
    a pass has not taken, never the whole history, and still take them oldest first."""
    data, clock = tmp_path / "data", Clock()
    async with workspace(data, clock) as ws:
        await seed(ws, clock)
        ingest(ws, [local_event(kind="bounce", at=REPLY_AT, email="bob@acme.ai")])
        loaded: list[str] = []
        get = ws.events.get

        def counted(key: str) -> Any:
            loaded.append(key)
            return get(key)

        def whole_history(**_: Any) -> Any:
            raise AssertionError("a pass loaded every event")

        monkeypatch.setattr(ws.events, "get", counted)
        monkeypatch.setattr(ws.events, "events", whole_history)
        assert (await escalate_pending(ws)).events == 1  # rules done at ingest; escalation not
        assert len(loaded) == 1
        loaded.clear()
        assert apply_rules(ws) == 0 and (await escalate_pending(ws)).events == 0
        assert loaded == [], "nothing new: no event loaded"
        # Two more, ingested newest first: the pass takes them oldest first.
        late = local_event(kind="bounce", at=REPLY_AT + timedelta(hours=2), email="x@acme.ai")
        early = local_event(kind="bounce", at=REPLY_AT + timedelta(hours=1), email="y@acme.ai")
        monkeypatch.setattr(ws.events, "get", get)
        ingest(ws, [late, early])
        monkeypatch.setattr(ws.events, "get", counted)
        loaded.clear()
        assert (await escalate_pending(ws)).events == 2
        assert loaded == [early.key, late.key]


async def test_a_model_only_opt_out_is_suppressed_and_left_for_a_human(tmp_path: Path) -> None:
    data, clock = tmp_path / "data", Clock()
    model = ScriptedChatModel.from_script([answer(("opt_out", "not for us anymore"))])
    async with workspace(data, clock) as ws:
        await seed(ws, clock)
        with_model(ws, model)
        ingest(ws, [reply("Honestly this is not for us anymore.")])
        assert ws.deps.suppressions.check(ANN, ACME) is None  # no rule matched
        await escalate_pending(ws)
        assert ws.deps.suppressions.check(ANN, ACME) is not None
        (esc,) = needs_human(ws)
    assert esc.signal == "opt_out" and "please check" in esc.outcome


async def test_feedback_and_a_competitor_are_recorded_in_memory_and_the_crm(
    tmp_path: Path,
) -> None:
    data, clock = tmp_path / "data", Clock()
    text = "We use Pinecone today. Your docs were confusing on filters."
    model = ScriptedChatModel.from_script(
        [
            answer(
                ("product_feedback", "Your docs were confusing on filters"),
                ("competitor_mentioned", "We use Pinecone today"),
            )
        ]
    )
    async with workspace(data, clock) as ws:
        await seed(ws, clock)
        with_model(ws, model)
        ingest(ws, [reply(text, email="bob@acme.ai", msgid=BOB_MSGID)])
        report = await escalate_pending(ws)
        await escalate_pending(ws)
        history = await ws.deps.memory.history("acme.ai")
        company = await ws.deps.crm.find_company("acme.ai")
        assert company is not None
        notes = [a for a in await ws.deps.crm.activities(company.id) if a.kind == "note"]
    assert sorted(e.signal for e in report.escalations) == [
        "competitor_mentioned",
        "product_feedback",
    ]
    remembered = [t.text for t in history if t.kind == "note"]
    assert len(remembered) == 2 and any("Pinecone" in t for t in remembered)
    assert len(notes) == 2 and any("confusing on filters" in n.body for n in notes)
    assert alerts(data) == []  # an engineer's feedback is recorded, nobody is paged


async def test_the_thread_the_reply_answers_names_the_owner_and_only_its_own_person(
    tmp_path: Path,
) -> None:
    data, clock = tmp_path / "data", Clock()
    model = ScriptedChatModel.from_script(
        [answer(("question", "what does it cost")), answer(("question", "what does it cost"))]
    )
    async with workspace(data, clock) as ws:
        await seed(ws, clock, tier=2)
        rita = ACME.model_copy(update={"owner": "rita@yourcompany.example"})
        await ws.graph.aupdate_state(
            thread_config(thread_id_for("spring", "acme.ai")),
            {"campaign": "spring", "channel": "email", "account": rita, "contact": ANN},
            as_node="record",
        )
        with_model(ws, model)
        ingest(ws, [reply("So what does it cost?")])
        ingest(ws, [reply("And what does it cost for us?", email="bob@acme.ai", msgid=BOB_MSGID)])
        report = await escalate_pending(ws)
    model.assert_complete()
    # Ann is the thread's person (a VP): her reply pages the thread's owner. Bob's reply answers
    # his own touch; the thread's VP title is not his, so nobody is paged for him.
    (esc,) = report.escalations
    assert (esc.signal, esc.owner, esc.person) == (
        "senior_reply",
        "rita@yourcompany.example",
        "ann@acme.ai",
    )
    assert [a["text"].split(":")[0] for a in alerts(data)] == ["rita@yourcompany.example"]


async def test_replies_wait_for_a_model_and_a_failing_model_leaves_them_pending(
    tmp_path: Path,
) -> None:
    data, clock = tmp_path / "data", Clock()
    async with workspace(data, clock) as ws:
        await seed(ws, clock)
        ingest(ws, [reply("Sounds good, tell me more.")])
        report = await escalate_pending(ws)
        assert report.waiting_for_model == 1 and report.events == 0
        with_model(ws, ScriptedChatModel.from_script([]))  # raises when called
        report = await escalate_pending(ws)
        assert report.errors and report.events == 0
        model = ScriptedChatModel.from_script([answer(("interested", "tell me more"))])
        with_model(ws, model)
        report = await escalate_pending(ws)
    assert report.events == 1
    assert [e.signal for e in report.escalations] == ["senior_reply", "tier1_interest"]


# --------------------------------------------------------------------------- the inbox


def test_needs_a_human_lists_the_time_left_and_done_closes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, clock = tmp_path / "data", Clock()
    model = ScriptedChatModel.from_script([answer(("meeting_request", "a call on Tuesday"))])

    async def prepare() -> list[Escalation]:
        async with workspace(data, clock) as ws:
            await seed(ws, clock, tier=2)
            with_model(ws, model)
            ev = reply("Can we have a call on Tuesday?", email="bob@acme.ai", msgid=BOB_MSGID)
            ingest(ws, [ev])
            await escalate_pending(ws)
            return needs_human(ws)

    (esc,) = asyncio.run(prepare())
    assert esc.signal == "meeting_request"
    assert time_left(esc, REPLY_AT + timedelta(hours=2)) == "due in 46h 0m"
    assert time_left(esc, REPLY_AT + timedelta(hours=50, minutes=30)) == "overdue by 2h 30m"
    assert time_left(esc, REPLY_AT - timedelta(days=5)) == "due in 7d 0h"

    monkeypatch.setenv("GTM_DATA_DIR", str(data))
    monkeypatch.setattr("gtm.cli.review.now", lambda: REPLY_AT + timedelta(hours=2))
    from gtm.cli import app

    runner = CliRunner()
    shown = runner.invoke(app, ["inbox"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "needs a human" in shown.output and "due in 46h 0m" in shown.output
    assert "Bob Ray" in shown.output

    closed = runner.invoke(app, ["escalations", "done", str(esc.id)])
    assert closed.exit_code == 0, closed.output
    listed = runner.invoke(app, ["escalations", "list"])
    assert "Nothing needs a human." in listed.output
    missing = runner.invoke(app, ["escalations", "done", "999"])
    assert missing.exit_code != 0 and "no escalation 999" in missing.output

    async def again() -> Escalation | None:
        async with workspace(data, clock) as ws:
            return mark_done(ws, esc.id, "someone else")

    marked = asyncio.run(again())
    assert marked is not None and marked.done and marked.done_by != "someone else"


def test_the_web_queue_shows_open_escalations_escaped(tmp_path: Path) -> None:
    from gtm.web.app import create_app

    data, clock = tmp_path / "data", Clock()
    model = ScriptedChatModel.from_script([answer(("meeting_request", "<b>call</b> Tuesday"))])

    async def prepare() -> None:
        async with workspace(data, clock) as ws:
            await seed(ws, clock, tier=2)
            with_model(ws, model)
            ev = reply("A <b>call</b> Tuesday?", email="bob@acme.ai", msgid=BOB_MSGID)
            ingest(ws, [ev.model_copy(update={"at": datetime.now(UTC) - timedelta(hours=1)})])
            await escalate_pending(ws)

    asyncio.run(prepare())
    app = create_app(Settings(data_dir=data), token="t0ken")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        r = client.post(
            "/login", data={"token": "t0ken", "reviewer": "rita"}, follow_redirects=False
        )
        assert r.status_code == 303, r.text
        page = client.get("/")
    assert page.status_code == 200
    assert "Needs a human: escalations (1)" in page.text
    assert "due in 46h" in page.text or "due in 47h" in page.text
    assert "&lt;b&gt;call&lt;/b&gt;" in page.text and "<b>call</b>" not in page.text


# --------------------------------------------------------------------------- CRM write-back


async def test_hubspot_writes_an_opt_out_through_the_communication_preferences_api() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/search"):
            hit = {"id": "501", "properties": {"email": "ann@acme.ai", "firstname": "Ann"}}
            return httpx.Response(200, json={"results": [hit], "total": 1})
        return httpx.Response(200, json={"status": "COMPLETE", "results": []})

    client = HttpClient("hubspot", "http://127.0.0.1", transport=httpx.MockTransport(handler))
    crm = HubSpotCRM(client, token="t")
    try:
        assert await crm.mark_opted_out(ANN) is True
    finally:
        await client.aclose()
    post = seen[-1]
    assert post.method == "POST"
    assert post.url.path == "/communication-preferences/v4/statuses/ann@acme.ai/unsubscribe-all"
    assert post.url.params["channel"] == "EMAIL"


async def test_attio_ticks_opted_out_where_the_workspace_has_it() -> None:
    patched: list[dict[str, Any]] = []
    has_attribute = True

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/query"):
            return httpx.Response(200, json={"data": [{"id": {"record_id": "p1"}, "values": {}}]})
        if not has_attribute:
            return httpx.Response(404, json={"code": "not_found", "message": "attribute"})
        patched.append(json.loads(request.content))
        return httpx.Response(200, json={"data": {"id": {"record_id": "p1"}, "values": {}}})

    client = HttpClient("attio", "http://127.0.0.1", transport=httpx.MockTransport(handler))
    crm = AttioCRM(client)
    try:
        assert await crm.mark_opted_out(ANN) is True
        has_attribute = False
        assert await crm.mark_opted_out(ANN) is False
    finally:
        await client.aclose()
    assert patched == [{"data": {"values": {"opted_out": [{"value": True}]}}}]


# --------------------------------------------------------------------------- the store


def test_the_store_keeps_one_row_per_event_signal_and_action(tmp_path: Path) -> None:
    clock = Clock()
    with EscalationStore(tmp_path / "events.sqlite", clock=clock) as store:
        fields: dict[str, Any] = dict(
            event_key="e1",
            signal="meeting_request",
            action="create_task",
            person="ann@acme.ai",
            contact="Ann Lee",
            company="Acme",
            owner="o",
            evidence="a call?",
            due_at=T0 + timedelta(hours=48),
        )
        first, new = store.add(**fields)
        again, new_again = store.add(**{**fields, "evidence": "changed"})
        assert new and not new_again and again == first and again.evidence == "a call?"
        store.acted(first.id, "task made")
        assert store.listing()[0].acted_at is not None and not store.listing()[0].done
        store.add(**{**fields, "event_key": "e2", "due_at": None, "person": "bob@acme.ai"})
        assert [e.event_key for e in store.listing()] == ["e1", "e2"]  # deadline first
        assert store.erase_person(["ann@acme.ai"]) == 1
        assert [e.person for e in store.listing(include_done=True)] == ["bob@acme.ai"]
        store.mark_stage("e1", "rules")
        store.mark_stage("e1", "rules", "again")
        assert store.stage_done("rules") == {"e1"} and store.stage_done("escalated") == set()


def _meeting(request: dict[str, Any]) -> dict[str, Any]:
    """A classifier on the scripted server: every reply asks for a call on Tuesday."""
    args = {
        "signals": ["meeting_request"],
        "evidence": [{"signal": "meeting_request", "quote": "a call on Tuesday"}],
    }
    return tool_call_response(request["tool_choice"]["function"]["name"], args)


def test_gtm_escalations_run_classifies_with_the_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, clock = tmp_path / "data", Clock()

    async def prepare() -> None:
        async with workspace(data, clock) as ws:
            await seed(ws, clock, tier=2)
            ingest(ws, [reply("Could we have a call on Tuesday?", email="bob@acme.ai",
                              msgid=BOB_MSGID)])  # fmt: skip

    asyncio.run(prepare())
    with ScriptedOpenAIServer(responder=_meeting) as srv:
        monkeypatch.setenv("GTM_MODEL_BASE_URL", srv.base_url)
        monkeypatch.setenv("GTM_MODEL", "scripted")
        monkeypatch.setenv("GTM_DATA_DIR", str(data))
        from gtm.cli import app

        runner = CliRunner()
        first = runner.invoke(app, ["escalations", "run"])
        second = runner.invoke(app, ["escalations", "run"])
        calls = len(srv.requests)
    assert first.exit_code == 0, first.output
    assert "1 event(s) looked at, 1 escalation(s)." in first.output
    assert "0 event(s) looked at, 0 escalation(s)." in second.output
    assert calls == 1
    (task,) = crm_rows(data, "SELECT * FROM tasks")
    assert datetime.fromisoformat(task["due_at"]) == REPLY_AT + timedelta(hours=48)
