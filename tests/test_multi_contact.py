"""Several people per account: ranked, one thread each, never the same message twice, and a
reply from one stops the others (before re-entering a thread and again right before a send).

In process, on the real stores and the local twins, with an injected clock and the scripted
OpenAI-compatible writer on loopback, so every draft goes through the real graph.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.eligibility import rank_contacts
from agents.same_account import same_account_duplicate
from gtm.app.accounts import load_accounts
from gtm.app.loop import ingest
from gtm.app.runner import RunSummary, decide, run_campaign
from gtm.app.settings import Settings
from gtm.app.workspace import Workspace, open_workspace
from gtm.domain.events import Event, EventKind
from gtm.domain.models import Account, Contact, Decision, Touch
from gtm.domain.playbook import PlaybookError, load_playbook
from gtm.domain.threads import thread_id_for
from tests.support.openai_server import ScriptedOpenAIServer, tool_call_response, write_from_facts

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # a Monday
CAMPAIGN = "fall"
VP = "vp@signalry.io"
LEAD = "lead@signalry.io"
HEADER = (
    "company,domain,website,segment,description,contact_name,contact_title,linkedin_url,email,"
    "tech_stack,signals,open_source_user,event,owner"
)
SIGNALS = (
    '"Hiring 3 search engineers (careers page, 2026-10);'
    "Engineering blog 2026-09: moving 40M call transcripts to semantic search;"
    "5 sign-ups from this domain in the last 30 days;"
    'Talk at RevOps Summit 2026 on retrieval for deal notes"'
)
# The economic buyer is listed first; the champion-level title is ranked ahead of them.
ROWS = [
    "Signalry,signalry.io,https://signalry.io,sales intelligence,"
    "Builds revenue intelligence that turns sales calls into searchable deal notes.,"
    f"Omar Haddad,VP Engineering,,{VP},Pinecone;LangChain,{SIGNALS},no,,",
    "Signalry,signalry.io,https://signalry.io,sales intelligence,"
    "Builds revenue intelligence that turns sales calls into searchable deal notes.,"
    f"Lena Ruiz,Search Team Lead,,{LEAD},Pinecone;LangChain,{SIGNALS},no,,",
]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _by_person(request: dict[str, Any]) -> dict[str, Any]:
    """The usual writer for Lena; for Omar a note of another build, from other facts."""
    user = request["messages"][-1]["content"]
    if "First name: Omar" not in user:
        return write_from_facts(request)
    ids = re.findall(r"^\[(f\d+)\] (.+?) \(source:", user, flags=re.M)
    picked = ids[1:3] if len(ids) >= 3 else ids[:2]
    topic = picked[0][1][:80].rstrip(".")
    body = (
        f"Omar, a question from the budget side: {topic[0].lower() + topic[1:]}, and that kind "
        "of move usually changes what search costs per month. Is that on your radar this year?"
    )
    args: dict[str, Any] = {"body": body, "cited_fact_ids": [i for i, _ in picked]}
    if "one short email" in request["messages"][0]["content"]:
        args["subject"] = "Search costs at Signalry"
    return tool_call_response(request["tool_choice"]["function"]["name"], args)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(tmp_path: Path) -> list[Account]:
    csv = tmp_path / "accounts.csv"
    csv.write_text(HEADER + "\n" + "\n".join(ROWS) + "\n", encoding="utf-8")
    listing = load_accounts(csv)
    assert not listing.errors, listing.errors
    assert [c.email for c in listing.accounts[0].contacts] == [VP, LEAD]
    return listing.accounts


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(responder=getattr(request, "param", _by_person)) as srv:
        yield srv


async def _open(
    tmp_path: Path, clock: Clock, server: ScriptedOpenAIServer, per_account: int
) -> AsyncIterator[Workspace]:
    pb = load_playbook()
    pb = pb.model_copy(update={"contacts_per_account": per_account})
    settings = Settings(data_dir=tmp_path / "data", model_base_url=server.base_url, model="x")
    async with open_workspace(settings, with_model=True, clock=clock, playbook=pb) as rt:
        yield rt


@pytest.fixture
async def ws(
    tmp_path: Path, clock: Clock, server: ScriptedOpenAIServer
) -> AsyncIterator[Workspace]:
    async for rt in _open(tmp_path, clock, server, 2):
        yield rt


@pytest.fixture
async def ws1(
    tmp_path: Path, clock: Clock, server: ScriptedOpenAIServer
) -> AsyncIterator[Workspace]:
    async for rt in _open(tmp_path, clock, server, 1):
        yield rt


async def _run(ws: Workspace, accounts: list[Account]) -> RunSummary:
    summary = await run_campaign(ws, accounts, campaign=CAMPAIGN, channel="email")
    assert not summary.failures, summary.failures
    return summary


async def _values(ws: Workspace, thread_id: str) -> dict[str, Any]:
    snapshot = await ws.graph.aget_state({"configurable": {"thread_id": thread_id}})
    return dict(snapshot.values)


def _reply(who: str, at: datetime, kind: EventKind = "email_reply") -> Event:
    return Event(
        key=f"{kind}-{who.split('@')[0]}-{at.isoformat()}",
        source="local",
        kind=kind,
        channel="email",
        at=at,
        email=who,
        text="Thanks, not right now.",
    )


def _approve(ws: Workspace, thread_id: str, clock: Clock) -> Any:
    row = ws.ledger.get(thread_id)
    assert row is not None and row.status == "waiting_for_approval", row
    return decide(ws, row.id, Decision(action="approve", reviewer="tess", at=clock.now))


def _sent_to(ws: Workspace) -> list[str]:
    return [
        e.touch.recipient or ""
        for e in ws.deps.outbox.entries(campaign=CAMPAIGN)
        if e.state == "sent"
    ]


A = thread_id_for(CAMPAIGN, "signalry.io")
B = thread_id_for(CAMPAIGN, "signalry.io", 1)


# --------------------------------------------------------------------------- pure parts


def test_thread_ids_keep_the_one_person_id_for_slot_zero() -> None:
    assert thread_id_for("fall", "acme.ai") == "fall:acme.ai"
    assert thread_id_for("fall", "acme.ai", 0) == "fall:acme.ai"
    assert thread_id_for("fall", "acme.ai", 1) == "fall:acme.ai#2"
    with pytest.raises(ValueError):
        thread_id_for("fall", "acme.ai", -1)


def test_contacts_rank_champion_then_economic_buyer_then_list_order() -> None:
    pb = load_playbook()
    people = [
        Contact(name="Ann", title="Office Assistant"),
        Contact(name="Ben", title="CFO"),
        Contact(name="Cy", title="Engineering Manager"),
        Contact(name="Di", title="Chief Executive"),
        Contact(name="Ed", title="Staff Engineer"),
    ]
    assert [c.name for c in rank_contacts(people, pb)] == ["Cy", "Ed", "Ben", "Di", "Ann"]


def test_the_playbook_field_defaults_to_one_and_is_bounded(tmp_path: Path) -> None:
    assert load_playbook().contacts_per_account == 1
    text = (Path(__file__).resolve().parents[1] / "gtm/domain/playbook.default.yaml").read_text(
        encoding="utf-8"
    )
    bad = tmp_path / "pb.yaml"
    bad.write_text(text.replace("contacts_per_account: 1", "contacts_per_account: 0"))
    with pytest.raises(PlaybookError):
        load_playbook(bad)


def test_same_account_rule_catches_a_short_note_the_batch_rule_lets_through() -> None:
    pb = load_playbook()
    mine = "Hi Omar, saw the 40M transcripts move. Open to a chat?"
    theirs = Touch(
        kind="draft",
        account_id="signalry.io",
        campaign=CAMPAIGN,
        at=T0,
        text="Hi Lena, saw the 12M transcripts move. Open to a chat?",
        contact="Lena Ruiz",
    )
    found = same_account_duplicate(mine, [theirs], pb)
    assert found is not None and not found.passed and "Lena Ruiz" in found.finding
    other = theirs.model_copy(update={"text": "Lena, how do you rank deal notes for search?"})
    assert same_account_duplicate(mine, [other], pb) is None


# --------------------------------------------------------------------------- the campaign


async def test_one_person_per_account_is_exactly_as_before(
    ws1: Workspace, accounts: list[Account]
) -> None:
    await _run(ws1, accounts)
    (row,) = ws1.ledger.rows(campaign=CAMPAIGN)
    assert row.thread_id == A and row.status == "waiting_for_approval"
    assert (await _values(ws1, A))["contact"].email == VP  # the first in list order, unranked


async def test_two_people_get_two_threads_in_rank_order_with_distinct_messages(
    ws: Workspace, accounts: list[Account], clock: Clock
) -> None:
    summary = await _run(ws, accounts)
    rows = ws.ledger.rows(campaign=CAMPAIGN)
    assert sorted(r.thread_id for r in rows) == sorted([A, B])
    assert all(r.status == "waiting_for_approval" for r in rows), [
        (r.status, r.detail) for r in rows
    ]
    first, second = await _values(ws, A), await _values(ws, B)
    assert first["contact"].email == LEAD  # "Lead": champion words come first
    assert second["contact"].email == VP
    assert first["draft"].body != second["draft"].body
    assert first["review"].passed and second["review"].passed
    assert summary.by_status["waiting_for_approval"] == 2
    # Each thread keeps its own draft in memory: the second did not overwrite the first.
    drafts = await ws.deps.memory.history("signalry.io", limit=50)
    assert {t.contact for t in drafts if t.kind == "draft"} == {"Lena Ruiz", "Omar Haddad"}

    again = await _run(ws, accounts)  # a re-run creates nothing new
    assert len(ws.ledger.rows(campaign=CAMPAIGN)) == 2 and again.already_done == 2

    for tid in (A, B):
        done = await _approve(ws, tid, clock)
        assert done.status == "sent", done.detail
    assert sorted(_sent_to(ws)) == sorted([LEAD, VP])


@pytest.mark.parametrize("server", [write_from_facts], indirect=True)
async def test_the_same_message_twice_inside_one_account_fails_review(
    ws: Workspace, accounts: list[Account]
) -> None:
    await _run(ws, accounts)
    first, second = await _values(ws, A), await _values(ws, B)
    assert first["review"].passed
    failed = [r for r in second["review"].failures if r.check == "near_duplicates"]
    assert failed and "at this account" in failed[0].finding, second["review"]
    assert second["flagged"]  # every rewrite came out the same: the reviewer is warned


async def test_a_reply_from_one_stops_the_others_first_touch_at_send(
    ws: Workspace, accounts: list[Account], clock: Clock
) -> None:
    await _run(ws, accounts)
    done = await _approve(ws, A, clock)
    assert done.status == "sent"
    ingest(ws, [_reply(LEAD, T0 + timedelta(hours=1))])  # Lena replies; Omar's note waits
    clock.now = T0 + timedelta(hours=2)
    stopped = await _approve(ws, B, clock)
    assert stopped.status == "skipped" and stopped.skip_reason == "sequence_stopped"
    assert "colleague" in stopped.detail and LEAD not in stopped.detail
    assert _sent_to(ws) == [LEAD]  # nothing went out to Omar


async def test_a_reply_from_one_stops_the_others_follow_up_at_re_entry_and_at_send(
    ws: Workspace, accounts: list[Account], clock: Clock
) -> None:
    await _run(ws, accounts)
    for tid in (A, B):
        assert (await _approve(ws, tid, clock)).status == "sent"
    clock.now = T0 + timedelta(days=4, hours=1)  # the first email follow-up is due for both
    await _run(ws, accounts)
    rows = {r.thread_id: r for r in ws.ledger.rows(campaign=CAMPAIGN)}
    assert rows[A].status == rows[B].status == "waiting_for_approval"
    # Omar's follow-up waits for approval; Lena replies; then Omar's is approved: not sent.
    ingest(ws, [_reply(LEAD, clock.now + timedelta(minutes=5))])
    clock.now += timedelta(minutes=10)
    stopped = await _approve(ws, B, clock)
    assert stopped.status == "skipped" and stopped.skip_reason == "sequence_stopped"
    assert sorted(_sent_to(ws)) == sorted([LEAD, VP])  # the first touches only

    # Re-entry: the next step of Omar's sequence is never opened, nor Lena's.
    clock.now = T0 + timedelta(days=30)
    summary = await _run(ws, accounts)
    rows = {r.thread_id: r for r in ws.ledger.rows(campaign=CAMPAIGN)}
    assert summary.sequences is not None and summary.sequences.advanced == []
    assert sorted(_sent_to(ws)) == sorted([LEAD, VP])
    assert len(ws.ledger.rows(campaign=CAMPAIGN)) == 2


async def test_a_colleagues_reply_stops_a_sent_thread_before_it_is_re_entered(
    ws: Workspace, accounts: list[Account], clock: Clock
) -> None:
    await _run(ws, accounts)
    for tid in (A, B):
        assert (await _approve(ws, tid, clock)).status == "sent"
    ingest(ws, [_reply(VP, T0 + timedelta(days=1), "meeting_booked")])  # Omar books
    clock.now = T0 + timedelta(days=4, hours=1)
    summary = await _run(ws, accounts)
    assert summary.sequences is not None and summary.sequences.advanced == []
    lena = ws.ledger.get(A)
    assert lena is not None and lena.seq_stopped is not None
    assert "colleague" in lena.seq_stopped and "booked a meeting" in lena.seq_stopped
    assert sorted(_sent_to(ws)) == sorted([LEAD, VP])
