"""One account through the whole LinkedIn motion, end to end: profile visit → connection request
→ accepted → first message → reply asking for a meeting → escalation → a CRM task due in 48 h.

Twice: on the embedded defaults (local CRM, the local LinkedIn outbox twin, Chroma memory, SQLite
checkpoints, the event store, events brought in through the drop folder), and on the HubSpot and
Dux-Soup test servers over real HTTP, with the accept and the reply arriving as Dux-Soup webhook
posts to the app's own receiver on loopback.

The model is the scripted OpenAI-compatible server on loopback (`write_from_facts` writes the
drafts; the reply reader answers `meeting_request` with a quote), so the real `ChatOpenAI` path
runs. The embedded SmolLM2-135M is not used: it takes minutes per draft on this machine and its
drafts and classifications are not stable enough to assert on. Time is an injected clock; the
pacing gaps a live LinkedIn provider waits are slept on that clock, not the wall's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from typer.testing import CliRunner

from gtm.app.accounts import load_accounts
from gtm.app.loop import drop_folder, ingest, local_event
from gtm.app.runner import DecisionRefused, RunSummary, decide, run_campaign
from gtm.app.settings import Settings
from gtm.app.sync import sync_all
from gtm.app.workspace import Workspace, open_workspace
from gtm.domain.events import Event
from gtm.domain.models import Account, Decision, Draft, Fact, Step, idempotency_key
from gtm.web.webhooks import webhook_routes
from tests.support.openai_server import ScriptedOpenAIServer, tool_call_response, write_from_facts
from tests.support.providers import FakeDuxSoup, FakeHubSpot
from tools.local_outbox import LocalLinkedInOutbox

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # a Monday, inside the playbook's working hours
ACCEPTED_AT = T0 + timedelta(days=1)  # Tuesday
REPLY_AT = T0 + timedelta(days=3, hours=5)  # Thursday 15:00, after the first message
URL = "https://www.linkedin.com/in/jun-park"
EMAIL = "jun@quillcode.dev"
OWNER = "maria@yourcompany.example"
CAMPAIGN = "fall"
HEADER = (
    "company,domain,segment,description,contact_name,contact_title,linkedin_url,email,"
    "tech_stack,signals,open_source_user,owner"
)
ROW = (
    "Quillcode,quillcode.dev,AI coding assistant,"
    "An AI coding assistant that reviews pull requests for enterprise teams.,"
    "Jun Park,Head of Platform,{url},{email},LangChain;pgvector,"
    '"Engineering blog 2026-09: moving code search for 12k repositories to embeddings;'
    "Hiring 2 retrieval engineers (careers page, 2026-10);"
    "Starred our open-source repository in 2026-08;"
    'Talk at PyCon 2026 on ranking code review comments",yes,'
    f"{OWNER}"
)
REPLY = (
    "Thanks Alex, message received. We are indeed reworking retrieval. "
    "Could we set up a call next week to go through it?"
)
QUOTE = "Could we set up a call next week to go through it?"
SECRET = "full-Sequence_Secret-0123456789abcdefXYZ"


class Clock:
    """The injected clock; `sleep` is the pacing wait, spent on this clock."""

    def __init__(self) -> None:
        self.now = T0
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


def _model(request: dict[str, Any]) -> dict[str, Any]:
    """The writer as usual; the reply reader finds a meeting request and quotes the reply."""
    name = request["tool_choice"]["function"]["name"]
    if name != "ReplyAnswer":
        return write_from_facts(request)
    assert QUOTE in request["messages"][-1]["content"]
    evidence = [
        {"signal": "meeting_request", "quote": QUOTE},
        {"signal": "interested", "quote": "We are indeed reworking retrieval"},
    ]
    return tool_call_response(
        name, {"signals": ["meeting_request", "interested"], "evidence": evidence}
    )


def _accounts(tmp_path: Path, email: str = EMAIL) -> list[Account]:
    csv = tmp_path / "accounts.csv"
    csv.write_text(f"{HEADER}\n{ROW.format(url=URL, email=email)}\n", encoding="utf-8")
    listing = load_accounts(csv)
    assert not listing.errors, listing.errors
    return listing.accounts


async def _run(ws: Workspace, accounts: list[Account]) -> RunSummary:
    summary = await run_campaign(ws, accounts, campaign=CAMPAIGN, channel="linkedin")
    assert not summary.failures, summary.failures
    return summary


async def _waiting(ws: Workspace) -> tuple[Draft, list[Fact], dict[str, Any]]:
    """The draft waiting for approval, its facts and the thread's state."""
    (row,) = ws.ledger.rows(campaign=CAMPAIGN)
    assert row.status == "waiting_for_approval", (row.status, row.detail)
    snapshot = await ws.graph.aget_state({"configurable": {"thread_id": row.thread_id}})
    values = snapshot.values
    return values["draft"], values["facts"], values


async def _approve(ws: Workspace, clock: Clock) -> None:
    (row,) = ws.ledger.rows(campaign=CAMPAIGN)
    done = await decide(ws, row.id, Decision(action="approve", reviewer="tess", at=clock.now))
    assert done.status == "sent", (done.status, done.detail)
    with pytest.raises(DecisionRefused):  # a second click is refused, not a second send
        await decide(ws, row.id, Decision(action="approve", reviewer="tess", at=clock.now))


def _key(ws: Workspace, step: Step, position: int = 0) -> str:
    """The outbox key of the contact's `step` at `position` (the contact key from the outbox)."""
    (first, *_) = ws.deps.outbox.entries(campaign=CAMPAIGN)
    return idempotency_key(CAMPAIGN, "quillcode.dev", first.contact_key, step, position)


def _sent_steps(ws: Workspace) -> list[str]:
    return [e.step for e in ws.deps.outbox.entries(campaign=CAMPAIGN, state="sent")]


def _check_first_touch(draft: Draft, facts: list[Fact], values: dict[str, Any]) -> None:
    assert draft.step == "linkedin_connect" and len(draft.body) <= 300
    assert len(draft.cited_fact_ids) >= 2 and set(draft.cited_fact_ids) <= {f.id for f in facts}
    assert values["tier"].tier == 1 and not values["flagged"]
    assert all(r.passed for r in values["review"].results), values["review"].failures


def _writer_prompts(model: ScriptedOpenAIServer) -> list[str]:
    """The system prompt of every draft the writer was asked for, in order."""
    return [
        r["messages"][0]["content"]
        for r in model.requests
        if r["tool_choice"]["function"]["name"] != "ReplyAnswer"
    ]


def _check_first_message(
    ws: Workspace, draft: Draft, facts: list[Fact], values: dict[str, Any], prompt: str
) -> None:
    """The first message after the accept: reviewed clean, cites facts of the research and
    something the connection note did not, and was written under the open-source rule."""
    assert draft.step == "linkedin_message" and values["sequence_position"] == 1
    by_id = {f.id: f for f in facts}
    assert len(draft.cited_fact_ids) >= 2 and set(draft.cited_fact_ids) <= set(by_id)
    assert any(not by_id[i].cited_before for i in draft.cited_fact_ids)
    assert any(f.cited_before for f in facts)  # the note's facts were marked for the writer
    results = {r.check: r.passed for r in values["review"].results}
    assert results["cites_something_new"] and all(results.values()), values["review"].failures
    # Open-source users get no pitch: the writer was told so for this message, and the text
    # carries none of the playbook's pitch phrases.
    assert "They use our open-source project: do not pitch" in prompt
    pitches = ws.playbook.guardrails.pitch_patterns
    assert not [p.pattern for p in pitches if p.search(draft.body)]


def _dropped(data: Path, name: str, event: Event) -> None:
    """An event as a person (or a script) leaves it in the drop folder: written whole, then
    renamed into place."""
    incoming = drop_folder(data)
    incoming.mkdir(parents=True, exist_ok=True)
    tmp = incoming / f"{name}.tmp"
    tmp.write_text(event.model_dump_json(), encoding="utf-8")
    tmp.replace(incoming / f"{name}.json")


def _crm_tasks(data: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(data / "crm.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM tasks").fetchall()
    finally:
        db.close()


def _alerts(data: Path) -> list[str]:
    path = data / "alerts.jsonl"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


# --------------------------------------------------------------------------- embedded defaults


async def test_the_whole_linkedin_motion_on_the_embedded_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, clock, accounts = tmp_path / "data", Clock(), _accounts(tmp_path)
    with ScriptedOpenAIServer(responder=_model) as model:
        settings = Settings(data_dir=data, model_base_url=model.base_url, model="scripted")
        async with open_workspace(settings, with_model=True, clock=clock) as ws:
            twin = ws.deps.linkedin
            assert isinstance(twin, LocalLinkedInOutbox)

            # 1. The visit and the connection request wait for a person: nothing went out.
            await _run(ws, accounts)
            draft, facts, values = await _waiting(ws)
            _check_first_touch(draft, facts, values)
            assert ws.deps.outbox.entries(campaign=CAMPAIGN) == [] and twin.actions() == []

            # 2. Approved: both sent, once, and a re-run sends nothing again.
            await _approve(ws, clock)
            assert _sent_steps(ws) == ["linkedin_visit", "linkedin_connect"]
            summary = await _run(ws, accounts)
            assert summary.sequences is not None and summary.sequences.waiting == 1
            assert [(a.kind, a.profile_url) for a in twin.actions()] == [
                ("visit", URL),
                ("connect", URL),
            ]
            assert twin.actions()[1].text == draft.body
            (row,) = ws.ledger.rows(campaign=CAMPAIGN)
            assert row.status == "sent" and row.seq_pos == 0 and row.next_due is None

            # 3. The accept comes back through the drop folder, under another spelling of the
            # profile; the first message waits the playbook's two days after it.
            clock.now = ACCEPTED_AT + timedelta(hours=2)
            accepted = local_event(
                kind="connection_accepted",
                at=ACCEPTED_AT,
                linkedin_url="https://de.linkedin.com/in/Jun-Park/",
            )
            _dropped(data, "accepted", accepted)
            summary = await _run(ws, accounts)
            assert summary.events_ingested == 1
            stored = ws.events.get(accepted.key)
            assert stored is not None and stored.outbox_key == _key(ws, "linkedin_connect")
            (row,) = ws.ledger.rows(campaign=CAMPAIGN)
            assert row.status == "sent" and row.next_due == ACCEPTED_AT + timedelta(days=2)
            assert _sent_steps(ws) == ["linkedin_visit", "linkedin_connect"]

            # 4. Past the wait, the run drafts the first message; it waits for approval.
            clock.now = ACCEPTED_AT + timedelta(days=2, hours=1)
            summary = await _run(ws, accounts)
            assert summary.sequences is not None and len(summary.sequences.advanced) == 1
            (row,) = ws.ledger.rows(campaign=CAMPAIGN)
            assert row.seq_pos == 1 and row.status == "waiting_for_approval"
            draft, facts, values = await _waiting(ws)
            _check_first_message(ws, draft, facts, values, _writer_prompts(model)[-1])
            assert len(twin.actions()) == 2

            # 5. Approved: sent once, under the key of sequence position 1.
            await _approve(ws, clock)
            message_key = _key(ws, "linkedin_message", 1)
            sent = ws.deps.outbox.get(message_key)
            assert sent is not None and sent.state == "sent"
            # what the funnel reads: whom it went to, where in the sequence, and how it was judged
            assert sent.touch.recipient == URL and sent.touch.position == 1
            assert sent.touch.tier == 1 and sent.touch.verdict == "clean"
            assert sent.touch.prompt_version == draft.prompt_version
            assert sent.touch.genericness is not None and 0 <= sent.touch.genericness <= 1
            assert _sent_steps(ws) == ["linkedin_visit", "linkedin_connect", "linkedin_message"]
            assert [a.kind for a in twin.actions()] == ["visit", "connect", "message"]
            assert twin.actions()[2].text == draft.body
            (row,) = ws.ledger.rows(campaign=CAMPAIGN)
            assert row.status == "sent" and row.seq_pos == 1 and row.seq_stopped is None

            # 6. The reply asks for a meeting; `gtm sync`'s pass takes it in and escalates it.
            clock.now = REPLY_AT + timedelta(minutes=10)
            reply = local_event(kind="message_received", at=REPLY_AT, linkedin_url=URL, text=REPLY)
            _dropped(data, "reply", reply)
            report = await sync_all(ws, None)
            got = report.folder.ingested
            assert (got.new, got.matched, report.folder.rejected) == (1, 1, [])
            stored = ws.events.get(reply.key)
            assert stored is not None and stored.outbox_key == message_key
            by_signal = {e.signal: e for e in report.escalations.escalations}
            assert set(by_signal) == {"meeting_request", "tier1_interest", "senior_reply"}
            meeting = by_signal["meeting_request"]
            assert meeting.due_at == REPLY_AT + timedelta(hours=48) and meeting.owner == OWNER
            assert meeting.evidence == QUOTE and "CRM task" in meeting.outcome
            (task,) = _crm_tasks(data)
            assert datetime.fromisoformat(task["due_at"]) == REPLY_AT + timedelta(hours=48)
            assert task["owner"] == OWNER and task["contact_id"] is not None
            contact = await ws.deps.crm.find_contact(values["contact"])
            assert contact is not None and task["contact_id"] == contact.id
            alerts = _alerts(data)
            assert len(alerts) == 3 and all(OWNER in a for a in alerts)
            classified = len(model.requests)

            # 7. A second pass, and the same file dropped again, change nothing.
            _dropped(data, "reply-again", reply)
            again = await sync_all(ws, None)
            assert again.folder.ingested.duplicate == 1 and again.folder.ingested.new == 0
            assert again.escalations.events == 0 and again.escalations.escalations == []
            assert len(_crm_tasks(data)) == 1 and _alerts(data) == alerts
            assert len(model.requests) == classified  # the reply was classified once

            # 8. The reply stopped the sequence: no follow-up, however long we wait.
            for days in (6, 30):
                clock.now = REPLY_AT + timedelta(days=days)
                summary = await _run(ws, accounts)
                assert summary.sequences is not None and not summary.sequences.advanced
            (row,) = ws.ledger.rows(campaign=CAMPAIGN)
            assert row.seq_stopped is not None and "replied on LinkedIn" in row.seq_stopped
            assert row.status == "sent" and row.next_due is None
            assert _sent_steps(ws) == ["linkedin_visit", "linkedin_connect", "linkedin_message"]
            assert len(twin.actions()) == 3 and len(_writer_prompts(model)) == 2

    # 9. `gtm inbox` lists it under "needs a human" with the time left on its deadline.
    monkeypatch.setattr("gtm.cli.review.now", lambda: REPLY_AT + timedelta(hours=2))
    from gtm.cli import app

    shown = await asyncio.to_thread(
        CliRunner().invoke, app, ["--data-dir", str(data), "inbox"], env={"COLUMNS": "250"}
    )
    assert shown.exit_code == 0, shown.output
    assert "needs a human" in shown.output and "Nothing is waiting for approval." in shown.output
    line = next(ln for ln in shown.output.splitlines() if "meeting request" in ln)
    assert "due in 46h 0m" in line and "Jun Park" in line


# --------------------------------------------------------------------------- HubSpot + Dux-Soup


def _envelope(type_: str, stage: str, at: datetime, **data: Any) -> dict[str, Any]:
    """A Dux-Soup webhook post (the envelope of its "Webhook by Example" article)."""
    stamp = at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "userid": "117917531760586753354",
        "time": stamp,
        "type": type_,
        "event": stage,
        "data": {"id": "id.31337", "Profile": f"{URL}/", **data},
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _webhook_server(settings: Settings, ws: Workspace) -> AsyncIterator[str]:
    """The app's Dux-Soup receiver as `gtm serve` mounts it (`webhook_routes` over `ingest`
    bound to the open workspace), served by uvicorn on loopback on this test's event loop, the
    loop the workspace's stores were opened on."""
    app = Starlette(routes=webhook_routes(settings, lambda events: ingest(ws, events)))
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(400):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    assert server.started, "the webhook server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


def _counts(response: httpx.Response) -> dict[str, int]:
    """What the receiver says it did with a post (it may say more, e.g. what it ignored)."""
    assert response.status_code == 200, response.text
    body = response.json()
    return {k: body[k] for k in ("new", "duplicate", "matched", "unmatched")}


def _queued(dux: FakeDuxSoup) -> list[tuple[str, str]]:
    """Every command Dux-Soup accepted into its queue: (command, message text)."""
    return [(q["command"], q["params"].get("messagetext", "")) for q in dux.queue]


def _hub_posts(hub: FakeHubSpot, obj: str) -> int:
    return sum(
        r["method"] == "POST" and r["path"] == f"/crm/v3/objects/{obj}" for r in hub.requests
    )


@pytest.mark.parametrize(
    "email",
    [
        pytest.param("", id="profile-only"),
        # The usual case: the contact is keyed by the email, Dux-Soup names only the profile;
        # the outbox keeps the profile each action went to, so the events still match.
        pytest.param(EMAIL, id="email-and-profile"),
    ],
)
async def test_the_whole_linkedin_motion_on_hubspot_and_duxsoup(tmp_path: Path, email: str) -> None:
    data, clock, accounts = tmp_path / "data", Clock(), _accounts(tmp_path, email)
    with (
        ScriptedOpenAIServer(responder=_model) as model,
        FakeHubSpot() as hub,
        FakeDuxSoup() as dux,
    ):
        settings = Settings(
            data_dir=data,
            model_base_url=model.base_url,
            model="scripted",
            crm="hubspot",
            hubspot_base_url=hub.base_url,
            hubspot_token=hub.token,
            linkedin="duxsoup",
            duxsoup_base_url=dux.base_url,
            duxsoup_user_id=dux.user_id,
            duxsoup_key=dux.key,
            duxsoup_webhook_secret=SECRET,
        )
        async with (
            open_workspace(settings, with_model=True, clock=clock) as ws,
            _webhook_server(settings, ws) as base,
            httpx.AsyncClient(timeout=10) as http,
        ):
            ws.deps = dataclasses.replace(ws.deps, sleep=clock.sleep)
            hook = f"{base}/webhooks/duxsoup/{SECRET}"

            # 1-2. Visit and connect wait for approval, then go to Dux-Soup once each, the
            # connect a pacing gap after the visit.
            await _run(ws, accounts)
            draft, facts, values = await _waiting(ws)
            _check_first_touch(draft, facts, values)
            assert dux.queue == []
            await _approve(ws, clock)
            assert _queued(dux) == [("visit", ""), ("connect", draft.body)]
            assert len(clock.slept) == 1 and 60 <= clock.slept[0] <= 240
            await _run(ws, accounts)
            assert len(dux.queue) == 2

            # 3. The accept arrives as Dux-Soup's webhook post.
            clock.now = ACCEPTED_AT + timedelta(minutes=5)
            accepted = _envelope("connected", "create", ACCEPTED_AT)
            got = await http.post(hook, json=accepted)
            assert got.status_code == 200, got.text
            assert _counts(got) == {"new": 1, "duplicate": 0, "matched": 1, "unmatched": 0}
            assert _counts(await http.post(hook, json=accepted))["duplicate"] == 1
            await _run(ws, accounts)
            (row,) = ws.ledger.rows(campaign=CAMPAIGN)
            assert row.next_due == ACCEPTED_AT + timedelta(days=2) and len(dux.queue) == 2

            # 4-5. Past the wait: the first message is drafted, approved, queued once.
            clock.now = ACCEPTED_AT + timedelta(days=2, hours=1)
            summary = await _run(ws, accounts)
            assert summary.sequences is not None and len(summary.sequences.advanced) == 1
            draft, facts, values = await _waiting(ws)
            _check_first_message(ws, draft, facts, values, _writer_prompts(model)[-1])
            await _approve(ws, clock)
            assert [c for c, _ in _queued(dux)] == ["visit", "connect", "message"]
            assert _queued(dux)[2][1] == draft.body
            (row,) = ws.ledger.rows(campaign=CAMPAIGN)
            assert row.status == "sent" and row.seq_pos == 1 and row.seq_stopped is None

            # 6. A forged post (a near miss of the secret) is an unknown page and records
            # nothing; the genuine reply is taken in and matched to the message.
            clock.now = REPLY_AT + timedelta(minutes=10)
            reply = _envelope("message", "received", REPLY_AT, Message=REPLY)
            events_before = len(ws.events.events())
            for wrong in (f"{base}/webhooks/duxsoup/{SECRET[:-1]}x", f"{base}/webhooks/duxsoup/"):
                forged = await http.post(wrong, json=reply)
                assert forged.status_code == 404, wrong
            assert len(ws.events.events()) == events_before
            got = await http.post(hook, json=reply)
            assert _counts(got) == {"new": 1, "duplicate": 0, "matched": 1, "unmatched": 0}
            (stored,) = ws.events.events(kind="message_received")
            assert stored.outbox_key == _key(ws, "linkedin_message", 1)

            # The escalation pass: one HubSpot task, due 48 h after the reply, on the contact.
            report = await sync_all(ws, None)
            assert {e.signal for e in report.escalations.escalations} == {
                "meeting_request",
                "tier1_interest",
                "senior_reply",
            }
            (task_id,) = hub.objects["tasks"]
            task = hub.objects["tasks"][task_id]
            due = datetime.fromisoformat(task["hs_timestamp"].replace("Z", "+00:00"))
            assert due == REPLY_AT + timedelta(hours=48)
            assert task["hs_task_status"] == "NOT_STARTED" and "Jun Park" in task["hs_task_subject"]
            (contact_id,) = [
                i for i, p in hub.objects["contacts"].items() if p.get("hs_linkedin_url") == URL
            ]
            (company_id,) = hub.objects["companies"]
            assert ("tasks", task_id, "contacts", contact_id) in hub.assoc
            assert ("tasks", task_id, "companies", company_id) in hub.assoc
            assert _hub_posts(hub, "tasks") == 1

            # 7. Again: the webhook redelivered, a second pass: nothing changes anywhere.
            assert _counts(await http.post(hook, json=reply))["duplicate"] == 1
            again = await sync_all(ws, None)
            assert again.escalations.events == 0 and again.escalations.escalations == []
            assert len(hub.objects["tasks"]) == 1 and _hub_posts(hub, "tasks") == 1

            # 8. The sequence is stopped: no second message, however long we wait.
            for days in (6, 30):
                clock.now = REPLY_AT + timedelta(days=days)
                summary = await _run(ws, accounts)
                assert summary.sequences is not None and not summary.sequences.advanced
            (row,) = ws.ledger.rows(campaign=CAMPAIGN)
            assert row.seq_stopped is not None and "replied on LinkedIn" in row.seq_stopped

    # What the providers themselves received, not our bookkeeping: Dux-Soup was sent exactly
    # three signed queue commands and accepted each into its queue; HubSpot holds one task.
    queue_posts = [r for r in dux.requests if r["method"] == "POST"]
    assert len(queue_posts) == 3 and all(r["path"] == f"/{dux.user_id}/queue" for r in queue_posts)
    assert [c for c, _ in _queued(dux)] == ["visit", "connect", "message"]
    assert len(hub.objects["tasks"]) == 1
