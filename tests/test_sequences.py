"""Sequences: the follow-ups after a first touch, from the playbook, exactly once, and stopped
by whatever comes back.

In process, on the real stores and the local twins, with an injected clock and the scripted
OpenAI-compatible writer on loopback (`write_from_facts`), so every follow-up goes through the
real graph: research → personalize → review → approve → send → record.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.personalize import mark_cited_before
from evals.checks import ALL_CHECKS
from evals.context import CheckContext
from evals.followups import cites_something_new
from gtm.app.accounts import load_accounts
from gtm.app.loop import ingest
from gtm.app.runner import RunSummary, decide, run_campaign
from gtm.app.settings import Settings
from gtm.app.workspace import Workspace, open_workspace
from gtm.domain.events import Event, EventKind
from gtm.domain.models import Account, Decision, Draft, Fact, OutboxEntry, idempotency_key
from gtm.domain.playbook import PlaybookError, load_playbook
from tests.support.cli import run_gtm
from tests.support.openai_server import ScriptedOpenAIServer, tool_call_response, write_from_facts

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # a Monday
URL = "https://www.linkedin.com/in/maya-chen"
EMAIL = "maya@signalry.io"
HEADER = (
    "company,domain,website,segment,description,contact_name,contact_title,linkedin_url,email,"
    "tech_stack,signals,open_source_user,event,owner"
)
ROW = (
    "Signalry,signalry.io,https://signalry.io,sales intelligence,"
    "Builds revenue intelligence that turns sales calls into searchable deal notes.,"
    f"Maya Chen,Head of Data,{URL},{EMAIL},Pinecone;LangChain,"
    '"Hiring 3 search engineers (careers page, 2026-10);'
    "Engineering blog 2026-09: moving 40M call transcripts to semantic search;"
    "5 sign-ups from this domain in the last 30 days;"
    'Talk at RevOps Summit 2026 on retrieval for deal notes",no,,'
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(tmp_path: Path) -> list[Account]:
    csv = tmp_path / "accounts.csv"
    csv.write_text(f"{HEADER}\n{ROW}\n", encoding="utf-8")
    listing = load_accounts(csv)
    assert not listing.errors, listing.errors
    return listing.accounts


def _repeat_earlier(request: dict[str, Any]) -> dict[str, Any]:
    """A writer that, on a follow-up, cites only the facts the first touch cited."""
    user = request["messages"][-1]["content"]
    old = re.findall(r"^\[(f\d+)\] .+\(cited in an earlier message", user, flags=re.M)
    if not old:
        return write_from_facts(request)
    body = "Hi Maya, just checking in on my last note. Would you be open to comparing notes?"
    args = {"body": body, "cited_fact_ids": old[:2]}
    return tool_call_response(request["tool_choice"]["function"]["name"], args)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[ScriptedOpenAIServer]:
    responder = getattr(request, "param", write_from_facts)
    with ScriptedOpenAIServer(responder=responder) as srv:
        yield srv


@pytest.fixture
async def ws(
    tmp_path: Path, clock: Clock, server: ScriptedOpenAIServer
) -> AsyncIterator[Workspace]:
    settings = Settings(data_dir=tmp_path / "data", model_base_url=server.base_url, model="x")
    async with open_workspace(settings, with_model=True, clock=clock) as rt:
        yield rt


async def _run(ws: Workspace, accounts: list[Account], channel: str = "linkedin") -> RunSummary:
    summary = await run_campaign(ws, accounts, campaign="fall", channel=channel)  # type: ignore[arg-type]
    assert not summary.failures, summary.failures
    return summary


async def _approve(ws: Workspace, clock: Clock) -> None:
    (row,) = ws.ledger.rows(campaign="fall")
    assert row.status == "waiting_for_approval", (row.status, row.detail)
    done = await decide(ws, row.id, Decision(action="approve", reviewer="tess", at=clock.now))
    assert done.status == "sent", (done.status, done.detail)


def _event(kind: EventKind, at: datetime, channel: str = "linkedin", **kw: Any) -> Event:
    who = {"linkedin_url": URL} if channel == "linkedin" else {"email": EMAIL}
    return Event(
        key=f"{kind}-{at.isoformat()}",
        source="local",
        kind=kind,
        channel=channel,  # type: ignore[arg-type]
        at=at,
        **who,
        **kw,
    )


def _sent(ws: Workspace) -> list[OutboxEntry]:
    return ws.deps.outbox.entries(campaign="fall", state="sent")


def _contact_key(ws: Workspace) -> str:
    return _sent(ws)[0].contact_key


async def _waiting_draft(ws: Workspace) -> tuple[Draft, list[Fact], dict[str, Any]]:
    (row,) = ws.ledger.rows(campaign="fall")
    snapshot = await ws.graph.aget_state({"configurable": {"thread_id": row.thread_id}})
    values = snapshot.values
    return values["draft"], values["facts"], values


# --------------------------------------------------------------------------- the key


def test_the_first_touch_key_is_byte_identical_to_before_sequences() -> None:
    raw = "\x1f".join(("fall", "signalry.io", EMAIL, "email"))
    before = hashlib.sha256(raw.encode()).hexdigest()[:32]
    assert idempotency_key("fall", "signalry.io", EMAIL, "email") == before
    assert idempotency_key("fall", "signalry.io", EMAIL, "email", 0) == before
    # What the key function returned before sequences existed (computed from the last commit).
    assert before == "6da22008a520962bb96b283d6b7870d8"
    assert idempotency_key("fall", "signalry.io", URL, "linkedin_connect") == (
        "95b1a077060d3ac0c19794b6a51635cb"
    )
    follow_ups = {idempotency_key("fall", "signalry.io", EMAIL, "email", p) for p in (1, 2)}
    assert before not in follow_ups and len(follow_ups) == 2
    with pytest.raises(ValueError):
        idempotency_key("fall", "signalry.io", EMAIL, "email", -1)


# --------------------------------------------------------------------------- the playbook


def test_the_default_playbook_declares_the_sequences_and_an_empty_one_turns_them_off(
    tmp_path: Path,
) -> None:
    pb = load_playbook()
    li, em = pb.sequences.linkedin, pb.sequences.email
    assert [(s.after, s.wait_days) for s in li] == [("accepted", 2), ("previous", 5)]
    assert [(s.after, s.wait_days) for s in em] == [("previous", 4), ("previous", 7)]
    assert pb.sequences.follow_up("email", 3) is None and pb.sequences.follow_up("email", 0) is None
    text = (ROOT / "gtm" / "domain" / "playbook.default.yaml").read_text(encoding="utf-8")
    off = tmp_path / "off.yaml"
    off.write_text(
        text.replace("    - {action: message, after: accepted, wait_days: 2}", "", 1)
        .replace("  linkedin:\n", "  linkedin: []\n", 1)
        .replace("    - {action: message, after: previous, wait_days: 5}   # one follow-up\n", ""),
        encoding="utf-8",
    )
    assert load_playbook(off).sequences.linkedin == ()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        text.replace(
            "{action: email, after: previous, wait_days: 4}",
            "{action: email, after: accepted, wait_days: 4}",
        ),
        encoding="utf-8",
    )
    with pytest.raises(PlaybookError, match="sequences.email"):
        load_playbook(bad)


# --------------------------------------------------------------------------- the check


def _fact(i: int, *, before: bool = False, kind: str = "signal") -> Fact:
    return Fact(id=f"f{i}", text=f"fact {i}", source="list", kind=kind, cited_before=before)  # type: ignore[arg-type]


def _draft(*ids: str) -> Draft:
    return Draft(
        channel="linkedin",
        step="linkedin_message",
        body="Hi",
        cited_fact_ids=ids,
        prompt_version="p@1",
        model="m",
    )


def test_cites_something_new_is_in_review_and_passes_every_first_touch() -> None:
    pb = load_playbook()
    assert cites_something_new in ALL_CHECKS
    first = CheckContext(facts=[_fact(1), _fact(2)], playbook=pb)
    assert cites_something_new(_draft("f1", "f2"), first).passed
    follow = CheckContext(
        facts=[_fact(1, before=True), _fact(2, before=True), _fact(3), _fact(4, kind="history")],
        playbook=pb,
    )
    assert cites_something_new(_draft("f1", "f3"), follow).passed
    again = cites_something_new(_draft("f1", "f2"), follow)
    assert not again.passed and "f1, f2 were cited before" in again.finding
    assert "f3" in again.instruction and "f4" not in again.instruction
    history_only = cites_something_new(_draft("f1", "f4"), follow)
    assert not history_only.passed  # quoting the earlier touch is not news


def test_the_writer_sees_new_facts_first_and_earlier_ones_flagged() -> None:
    facts = [_fact(1), _fact(2), _fact(3)]
    marked = mark_cited_before(facts, ["fact 1"])
    assert [f.id for f in marked] == ["f2", "f3", "f1"]
    assert [f.cited_before for f in marked] == [False, False, True]


# --------------------------------------------------------------------------- LinkedIn


async def test_linkedin_follow_up_waits_for_the_accept_and_the_wait_then_sends_once(
    ws: Workspace, clock: Clock, accounts: list[Account]
) -> None:
    await _run(ws, accounts)
    await _approve(ws, clock)
    assert [e.step for e in _sent(ws)] == ["linkedin_visit", "linkedin_connect"]

    clock.now = T0 + timedelta(days=1)  # before the wait: nothing
    summary = await _run(ws, accounts)
    assert summary.sequences is not None and summary.sequences.waiting == 1
    assert not summary.sequences.advanced
    clock.now = T0 + timedelta(days=9)  # long after, but never accepted: still nothing
    await _run(ws, accounts)
    (row,) = ws.ledger.rows(campaign="fall")
    assert row.status == "sent" and row.next_due is None and len(_sent(ws)) == 2

    accepted = T0 + timedelta(days=8)
    assert ingest(ws, [_event("connection_accepted", accepted)]).matched == 1
    summary = await _run(ws, accounts)  # day 9: accepted a day ago, 2 days to wait
    (row,) = ws.ledger.rows(campaign="fall")
    assert row.next_due == accepted + timedelta(days=2) and row.status == "sent"

    clock.now = T0 + timedelta(days=10, hours=1)
    summary = await _run(ws, accounts)
    assert summary.sequences is not None and len(summary.sequences.advanced) == 1
    (row,) = ws.ledger.rows(campaign="fall")
    assert row.status == "waiting_for_approval" and row.seq_pos == 1
    draft, facts, values = await _waiting_draft(ws)
    assert draft.step == "linkedin_message"
    review = values["review"]
    assert {r.check: r.passed for r in review.results}["cites_something_new"]
    earlier = {f.id for f in facts if f.cited_before}
    assert earlier and not earlier & set(draft.cited_fact_ids)

    await _approve(ws, clock)
    key = idempotency_key("fall", "signalry.io", _contact_key(ws), "linkedin_message", 1)
    assert [e.key for e in _sent(ws) if e.step == "linkedin_message"] == [key]
    for _ in range(2):  # re-runs: the next step is not due, nothing is sent twice
        await _run(ws, accounts)
    assert len(_sent(ws)) == 3
    (row,) = ws.ledger.rows(campaign="fall")
    assert row.status == "sent" and row.next_due is not None
    assert row.next_due.date() == (clock.now + timedelta(days=5)).date()
    history = await ws.deps.memory.history("signalry.io", limit=50)
    assert sum(t.kind == "send" for t in history) == 2  # the follow-up did not overwrite the first

    # A reply stops the sequence: the second follow-up is never drafted.
    ingest(ws, [_event("message_received", clock.now + timedelta(days=1), text="Sure, Tuesday?")])
    clock.now += timedelta(days=30)
    summary = await _run(ws, accounts)
    assert summary.sequences is not None and len(summary.sequences.stopped) == 1
    (row,) = ws.ledger.rows(campaign="fall")
    assert row.seq_stopped is not None and "replied on LinkedIn" in row.seq_stopped
    assert row.status == "sent" and len(_sent(ws)) == 3


async def test_a_reply_after_the_follow_up_was_drafted_stops_it_at_send(
    ws: Workspace, clock: Clock, accounts: list[Account]
) -> None:
    await _run(ws, accounts)
    await _approve(ws, clock)
    ingest(ws, [_event("connection_accepted", T0 + timedelta(hours=2))])
    clock.now = T0 + timedelta(days=3)
    await _run(ws, accounts)
    (row,) = ws.ledger.rows(campaign="fall")
    assert row.status == "waiting_for_approval"
    ingest(ws, [_event("message_received", T0 + timedelta(days=3, hours=1), text="Not now")])
    done = await decide(ws, row.id, Decision(action="approve", reviewer="tess", at=clock.now))
    assert done.status == "skipped" and done.skip_reason == "sequence_stopped"
    assert [e.step for e in _sent(ws)] == ["linkedin_visit", "linkedin_connect"]
    assert all(e.step != "linkedin_message" for e in ws.deps.outbox.entries(campaign="fall"))


# --------------------------------------------------------------------------- email


async def test_email_follow_ups_stop_after_the_playbooks_k(
    ws: Workspace, clock: Clock, accounts: list[Account]
) -> None:
    await _run(ws, accounts, "email")
    await _approve(ws, clock)
    clock.now = T0 + timedelta(days=3, hours=23)  # 4 days not yet over
    await _run(ws, accounts, "email")
    assert len(_sent(ws)) == 1
    for days in (4, 4 + 7):
        clock.now = T0 + timedelta(days=days, hours=1)
        await _run(ws, accounts, "email")
        await _approve(ws, clock)
    clock.now += timedelta(days=60)
    summary = await _run(ws, accounts, "email")
    assert summary.sequences is not None and summary.sequences.finished == 1
    sent = _sent(ws)
    assert [e.step for e in sent] == ["email"] * 3
    assert len({e.key for e in sent}) == 3
    (row,) = ws.ledger.rows(campaign="fall")
    assert row.seq_pos == 2 and row.next_due is None and row.status == "sent"


async def test_a_bounce_stops_an_email_sequence(
    ws: Workspace, clock: Clock, accounts: list[Account]
) -> None:
    await _run(ws, accounts, "email")
    await _approve(ws, clock)
    ingest(ws, [_event("bounce", T0 + timedelta(hours=1), channel="email")])
    clock.now = T0 + timedelta(days=20)
    await _run(ws, accounts, "email")
    (row,) = ws.ledger.rows(campaign="fall")
    assert row.seq_stopped is not None and "bounced" in row.seq_stopped
    assert len(_sent(ws)) == 1


@pytest.mark.parametrize("server", [_repeat_earlier], indirect=True)
async def test_a_follow_up_that_cites_nothing_new_is_flagged_by_review(
    ws: Workspace, clock: Clock, accounts: list[Account]
) -> None:
    await _run(ws, accounts, "email")
    await _approve(ws, clock)
    clock.now = T0 + timedelta(days=5)
    await _run(ws, accounts, "email")
    (row,) = ws.ledger.rows(campaign="fall")
    assert row.status == "waiting_for_approval" and row.flagged
    _, _, values = await _waiting_draft(ws)
    failed = {r.check for r in values["review"].failures}
    assert "cites_something_new" in failed
    assert len(_sent(ws)) == 1


# --------------------------------------------------------------------------- gtm stop


def _gtm(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    env.update(ANONYMIZED_TELEMETRY="False", COLUMNS="200", GTM_REVIEWER="rita")
    return run_gtm(env, "--data-dir", str(data), *args)


async def test_gtm_stop_ends_a_sequence_and_rejects_its_waiting_follow_up(
    tmp_path: Path, clock: Clock, accounts: list[Account], server: ScriptedOpenAIServer
) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, model_base_url=server.base_url, model="x")
    async with open_workspace(settings, with_model=True, clock=clock) as ws:
        await _run(ws, accounts, "email")
        await _approve(ws, clock)
        clock.now = T0 + timedelta(days=5)
        await _run(ws, accounts, "email")
        (row,) = ws.ledger.rows(campaign="fall")
        assert row.status == "waiting_for_approval" and row.seq_pos == 1

    done = _gtm(data, "stop", str(row.id), "--reason", "talking to them at the dinner")
    assert done.returncode == 0, done.stderr
    assert "sequence stopped (stopped by rita: talking to them at the dinner)" in done.stdout
    assert "its waiting follow-up was rejected" in done.stdout
    assert _gtm(data, "stop", "999").returncode == 1

    async with open_workspace(settings, with_model=True, clock=clock) as ws:
        (row,) = ws.ledger.rows(campaign="fall")
        assert row.status == "rejected" and row.seq_stopped is not None
        clock.now = T0 + timedelta(days=40)
        await _run(ws, accounts, "email")
        assert len(_sent(ws)) == 1
        (row,) = ws.ledger.rows(campaign="fall")
        assert row.status == "rejected"


async def test_gtm_stop_before_the_follow_up_is_due_means_it_never_comes(
    ws: Workspace, clock: Clock, accounts: list[Account]
) -> None:
    await _run(ws, accounts, "email")
    await _approve(ws, clock)
    (row,) = ws.ledger.rows(campaign="fall")
    stopped = ws.ledger.stop_sequence(row.id, "stopped by rita")
    assert stopped is not None and stopped.seq_stopped == "stopped by rita"
    assert ws.ledger.stop_sequence(row.id, "again")
    assert (ws.ledger.get(row.id) or row).seq_stopped == "stopped by rita"  # the first stays
    clock.now = T0 + timedelta(days=30)
    await _run(ws, accounts, "email")
    assert len(_sent(ws)) == 1


# --------------------------------------------------------------------------- caps and summary


@pytest.fixture
async def capped(
    tmp_path: Path, clock: Clock, server: ScriptedOpenAIServer
) -> AsyncIterator[Workspace]:
    pb = load_playbook()
    pb = pb.model_copy(
        update={"caps": pb.caps.model_copy(update={"linkedin_messages_per_week": 0})}
    )
    settings = Settings(data_dir=tmp_path / "data", model_base_url=server.base_url, model="x")
    async with open_workspace(settings, with_model=True, clock=clock, playbook=pb) as rt:
        yield rt


async def test_a_follow_up_counts_against_the_caps_and_a_stop_keeps_it_from_resuming(
    capped: Workspace, clock: Clock, accounts: list[Account]
) -> None:
    ws = capped
    await _run(ws, accounts)
    await _approve(ws, clock)
    ingest(ws, [_event("connection_accepted", T0 + timedelta(hours=2))])
    clock.now = T0 + timedelta(days=3)
    await _run(ws, accounts)
    (row,) = ws.ledger.rows(campaign="fall")
    done = await decide(ws, row.id, Decision(action="approve", reviewer="tess", at=clock.now))
    assert done.status == "deferred" and "linkedin_message cap" in done.detail
    again = await _run(ws, accounts)  # re-entered at send; the cap still holds
    assert again.resumed == 1 and ws.ledger.rows(campaign="fall")[0].status == "deferred"
    ws.ledger.stop_sequence(row.id, "stopped by rita")
    clock.now += timedelta(days=14)
    stopped = await _run(ws, accounts)  # a stopped sequence's deferred step is not re-entered
    assert stopped.resumed == 0 and stopped.already_done == 1
    assert all(e.step != "linkedin_message" for e in ws.deps.outbox.entries(campaign="fall"))


def test_the_run_summary_counts_follow_ups(capsys: pytest.CaptureFixture[str]) -> None:
    from gtm.app.ledger import ThreadRow
    from gtm.app.sequences import SequenceReport
    from gtm.cli.campaign import _print_summary

    row = ThreadRow(
        id=1,
        campaign="fall",
        account_id="signalry.io",
        thread_id="t",
        company="Signalry",
        channel="email",
        tier=2,
        status="waiting_for_approval",
        skip_reason=None,
        detail="",
        flagged=False,
        contact="",
        preview="",
        deciding=False,
        decided_by=None,
        decided_at=None,
        decision=None,
        waiting_since=None,
        updated_at=T0,
    )
    summary = RunSummary(campaign="fall", total=1, events_ingested=2)
    summary.sequences = SequenceReport(
        advanced=[row], waiting=3, stopped=["Acme: Ann replied by email"], finished=0
    )
    _print_summary(summary, rejected_rows=0)
    text = capsys.readouterr().out
    assert "2 new event(s) taken in" in text
    assert "follow-ups: 1 due and taken up (1 waiting for approval), 3 not due yet" in text
    assert "Acme: Ann replied by email" in text and "gtm inbox" in text


async def test_a_run_that_died_after_re_opening_a_thread_is_resumed_not_re_opened(
    ws: Workspace, clock: Clock, accounts: list[Account]
) -> None:
    from gtm.app.checkpoints import reopen_thread
    from gtm.app.sequences import reopened_values

    await _run(ws, accounts, "email")
    await _approve(ws, clock)
    clock.now = T0 + timedelta(days=5)
    (row,) = ws.ledger.rows(campaign="fall")
    _, _, values = await _waiting_draft(ws)
    step = ws.playbook.sequences.email[0]
    ws.ledger.update(row.thread_id, status="running")  # what advance_sequences does, then dies
    await reopen_thread(ws, row.thread_id, reopened_values(values, 1, step))
    summary = await _run(ws, accounts, "email")
    assert summary.resumed == 1
    assert summary.sequences is not None and not summary.sequences.advanced
    (row,) = ws.ledger.rows(campaign="fall")
    assert row.status == "waiting_for_approval"
    _, _, values = await _waiting_draft(ws)
    assert values["sequence_position"] == 1
    await _approve(ws, clock)
    assert [e.step for e in _sent(ws)] == ["email", "email"]
