"""The graph in-process: scripted model, in-memory twins, a real SQLite outbox and checkpointer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command

from agents.context import Deps
from agents.graph import build_graph, checkpoint_serde
from agents.research import split_link
from gtm.domain.approval import ApprovalRequest
from gtm.domain.models import Account, Contact
from gtm.domain.playbook import load_playbook
from memory.in_memory import InMemoryMemory
from tests.support.fake_model import ScriptedChatModel, tool_call
from tools.fakes import InMemoryCRM, InMemoryEmail, InMemoryLinkedIn
from tools.outbox import Outbox
from tools.suppression import SuppressionList

SNAPSHOT = Path(__file__).parent / "snapshots" / "graph.mmd"
NOW = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)

ACME = Account(
    account_id="quillcode.dev",
    company="Quillcode",
    domain="quillcode.dev",
    segment="AI coding assistant",
    description="Builds an AI coding assistant for monorepos.",
    signals=("3 sign-ups from this domain in the last 30 days", "hiring 4 ML infra engineers"),
    contacts=(
        Contact(
            name="Dana Ruiz",
            title="VP Engineering",
            linkedin_url="https://www.linkedin.com/in/dana-ruiz",
            email="dana@quillcode.dev",
        ),
    ),
    source="accounts.csv",
    rows=(2,),
)

GOOD = {
    "body": "Hi Dana, saw 3 sign-ups from Quillcode this month and that you are hiring ML infra "
    "engineers. How are you handling retrieval for monorepo context? Open to comparing notes?",
    "cited_fact_ids": ["f3", "f4"],
}


def good_note() -> Any:
    return tool_call(
        "DraftOutput",
        {
            **GOOD,
            "body": GOOD["body"].replace(
                " How are you handling retrieval for monorepo context?", ""
            ),
        },
    )


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    clock = Clock(NOW)
    outbox = Outbox(tmp_path / "outbox.sqlite", clock=clock)
    sup = SuppressionList(tmp_path / "sup.sqlite")
    crm, linkedin = InMemoryCRM(), InMemoryLinkedIn(sender="seat-1")
    async with aiosqlite.connect(tmp_path / "cp.sqlite") as conn:
        saver = AsyncSqliteSaver(conn, serde=checkpoint_serde())
        yield {
            "graph": build_graph(saver),
            "crm": crm,
            "linkedin": linkedin,
            "email": InMemoryEmail(sender="me@vectorly.example"),
            "memory": InMemoryMemory(),
            "outbox": outbox,
            "suppressions": sup,
            "clock": clock,
        }
    for closeable in (outbox, sup, crm, linkedin):
        closeable.close()


def deps(env: dict[str, Any], model: ScriptedChatModel, **over: Any) -> Deps:
    values = {
        k: env[k] for k in ("crm", "linkedin", "email", "memory", "outbox", "suppressions", "clock")
    }
    values.update({"playbook": load_playbook(), **over})
    return Deps(
        model=model,
        model_name="scripted",
        sender_name="Alex",
        sender_company="Vectorly",
        **values,
    )


def cfg(tid: str) -> Any:
    return {"configurable": {"thread_id": tid}}


def inp(account: Account = ACME, campaign: str = "c1") -> dict[str, Any]:
    return {"campaign": campaign, "channel": "linkedin", "account": account}


def test_drawn_graph_matches_snapshot() -> None:
    drawn = build_graph().get_graph().draw_mermaid()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(drawn, encoding="utf-8")
    assert drawn == SNAPSHOT.read_text(encoding="utf-8")
    for edge in (
        "intake -.-> record",
        "review -.-> personalize",
        "approve -.-> send",
        "approve -.-> personalize",
        "send --> record",
    ):
        assert edge in drawn


async def test_draft_waits_for_approval_then_sends_once_and_records(env: dict[str, Any]) -> None:
    model = ScriptedChatModel.from_script([good_note()])
    d = deps(env, model)
    g = env["graph"]
    await g.ainvoke(inp(), cfg("t1"), context=d)
    snap = await g.aget_state(cfg("t1"))
    assert snap.interrupts, "the thread must pause for a human"
    payload = snap.interrupts[0].value
    assert payload["action_request"]["action"] == "linkedin_connect"
    asked = ApprovalRequest.from_interrupt(payload)
    assert payload["config"]["allow_edit"] and asked.draft.cited_fact_ids == ("f3", "f4")
    assert not env["linkedin"].actions(), "nothing leaves before approval"

    out = await g.ainvoke(
        Command(resume={"action": "approve", "reviewer": "sam"}), cfg("t1"), context=d
    )
    assert out["status"] == "sent"
    assert [a.kind for a in env["linkedin"].actions()] == ["visit", "connect"]
    assert [e.state for e in env["outbox"].entries()] == ["sent", "sent"]
    company = await env["crm"].find_company("quillcode.dev")
    assert company is not None
    assert [a.kind for a in await env["crm"].activities(company.id)] == [
        "linkedin_visit",
        "linkedin_connect",
    ]
    history = await env["memory"].history("quillcode.dev")
    assert {t.kind for t in history} >= {"send", "decision", "draft", "fact"}
    model.assert_complete()

    # Resuming the finished thread again changes nothing.
    await g.ainvoke(None, cfg("t1"), context=d)
    assert len(env["linkedin"].actions()) == 2


async def test_failed_review_rewrites_with_the_findings_then_flags(env: dict[str, Any]) -> None:
    generic = tool_call(
        "DraftOutput",
        {
            "body": "I hope this message finds you well. Let's leverage our synergy! [Company]",
            "cited_fact_ids": ["f1"],
        },
    )
    model = ScriptedChatModel.from_script([generic, generic, generic])
    d = deps(env, model)
    await env["graph"].ainvoke(inp(), cfg("t2"), context=d)
    snap = await env["graph"].aget_state(cfg("t2"))
    assert snap.interrupts and snap.values["flagged"] is True
    checks = {f.check for f in ApprovalRequest.from_interrupt(snap.interrupts[0].value).findings}
    assert {"banned_phrases", "fact_coverage", "placeholders"} <= checks
    # The rewrite prompt carried the reviewer's findings.
    second_prompt = model.calls[1][-1].content
    assert "I hope this message finds you well" in str(second_prompt)
    model.assert_complete()


async def test_regenerate_rewrites_with_human_instructions(env: dict[str, Any]) -> None:
    model = ScriptedChatModel.from_script([good_note(), good_note()])
    d = deps(env, model)
    g = env["graph"]
    await g.ainvoke(inp(), cfg("t3"), context=d)
    await g.ainvoke(
        Command(resume={"action": "regenerate", "instructions": "mention hiring"}),
        cfg("t3"),
        context=d,
    )
    snap = await g.aget_state(cfg("t3"))
    assert snap.interrupts, "a regenerated draft comes back for approval"
    assert "mention hiring" in str(model.calls[1][-1].content)
    model.assert_complete()


@pytest.mark.parametrize(
    ("account", "reason"),
    [
        (
            ACME.model_copy(
                update={"segment": "bakery software", "description": "Bread.", "signals": ()}
            ),
            "out_of_tier",
        ),
        (
            ACME.model_copy(
                update={"domain": "pinecone.io", "company": "Pinecone", "account_id": "pinecone.io"}
            ),
            "competitor",
        ),
        (
            ACME.model_copy(update={"contacts": (Contact(name="No Url", email="n@x.dev"),)}),
            "no_reachable_contact",
        ),
    ],
)
async def test_intake_skips_with_a_reason(
    env: dict[str, Any], account: Account, reason: str
) -> None:
    model = ScriptedChatModel.from_script([])
    out = await env["graph"].ainvoke(inp(account), cfg("t4"), context=deps(env, model))
    assert out["status"] == "skipped" and out["skip_reason"] == reason and out["skip_detail"]
    model.assert_complete()


async def test_customers_open_deals_and_opt_outs_are_skipped(env: dict[str, Any]) -> None:
    model = ScriptedChatModel.from_script([])
    crm = env["crm"]
    crm.set_company("quillcode.dev", lifecycle_stage="customer")
    out = await env["graph"].ainvoke(inp(), cfg("c"), context=deps(env, model))
    assert out["skip_reason"] == "customer"
    crm.set_company("quillcode.dev", lifecycle_stage="lead", open_deals=1)
    out = await env["graph"].ainvoke(inp(), cfg("d"), context=deps(env, model))
    assert out["skip_reason"] == "open_deal"
    crm.set_company("quillcode.dev", open_deals=0)
    env["suppressions"].add("email", "dana@quillcode.dev", "asked to be removed")
    out = await env["graph"].ainvoke(inp(), cfg("e"), context=deps(env, model))
    assert out["skip_reason"] == "suppressed"


async def test_suppression_is_checked_again_right_before_send(env: dict[str, Any]) -> None:
    model = ScriptedChatModel.from_script([good_note()])
    d = deps(env, model)
    await env["graph"].ainvoke(inp(), cfg("t5"), context=d)
    env["suppressions"].add("linkedin", "https://www.linkedin.com/in/dana-ruiz", "opted out")
    out = await env["graph"].ainvoke(Command(resume={"action": "approve"}), cfg("t5"), context=d)
    assert out["status"] == "skipped" and out["skip_reason"] == "suppressed"
    assert not env["linkedin"].actions() and not env["outbox"].entries()


async def test_cooldown_blocks_a_second_campaign_and_research_reads_history(
    env: dict[str, Any],
) -> None:
    model = ScriptedChatModel.from_script([good_note()])
    d = deps(env, model)
    g = env["graph"]
    await g.ainvoke(inp(), cfg("t6"), context=d)
    await g.ainvoke(Command(resume={"action": "approve"}), cfg("t6"), context=d)
    env["clock"].t = NOW + timedelta(days=3)
    out = await g.ainvoke(inp(campaign="c2"), cfg("t7"), context=d)
    assert out["skip_reason"] == "cooldown"
    env["clock"].t = NOW + timedelta(days=40)
    model2 = ScriptedChatModel.from_script([good_note()])
    await g.ainvoke(inp(campaign="c3"), cfg("t8"), context=deps(env, model2))
    snap = await g.aget_state(cfg("t8"))
    history = [f for f in snap.values["facts"] if f.kind == "history"]
    assert any("Dana Ruiz" in f.text and "2026-11-18" in f.text for f in history), history


async def test_weekly_connection_cap_defers_instead_of_sending(env: dict[str, Any]) -> None:
    pb = load_playbook()
    tight = pb.model_copy(
        update={"caps": pb.caps.model_copy(update={"linkedin_connection_requests_per_week": 0})}
    )
    model = ScriptedChatModel.from_script([good_note()])
    d = Deps(**{**deps(env, model).__dict__, "playbook": tight})
    await env["graph"].ainvoke(inp(), cfg("t9"), context=d)
    out = await env["graph"].ainvoke(Command(resume={"action": "approve"}), cfg("t9"), context=d)
    assert out["status"] == "deferred" and "cap" in out["skip_detail"]
    assert [a.kind for a in env["linkedin"].actions()] == ["visit"]


async def test_email_channel_sends_one_message_with_subject(env: dict[str, Any]) -> None:
    args = good_note().tool_calls[0]["args"]
    email_note = tool_call("DraftOutput", {**args, "subject": "Retrieval at Quillcode"})
    model = ScriptedChatModel.from_script([email_note])
    d = deps(env, model)
    g = env["graph"]
    await g.ainvoke({**inp(), "channel": "email"}, cfg("m1"), context=d)
    snap = await g.aget_state(cfg("m1"))
    assert snap.interrupts
    asked = ApprovalRequest.from_interrupt(snap.interrupts[0].value)
    assert asked.draft.subject == "Retrieval at Quillcode"
    out = await g.ainvoke(
        Command(resume={"action": "edit", "text": args["body"].replace("Hi Dana", "Hello Dana")}),
        cfg("m1"),
        context=d,
    )
    assert out["status"] == "sent" and out["draft"].model == "human"
    ((receipt, sent),) = env["email"].sent.values()
    assert sent["to"] == "dana@quillcode.dev" and sent["body"].startswith("Hello Dana")
    assert [e.step for e in env["outbox"].entries()] == ["email"]
    assert not env["linkedin"].actions()


async def test_review_rewrites_a_draft_that_copies_another_accounts(env: dict[str, Any]) -> None:
    """The batch check in the pipeline: a campaign's drafts are compared with each other."""
    fork = ACME.model_copy(
        update={
            "account_id": "forkwise.ai",
            "company": "Forkwise",
            "domain": "forkwise.ai",
            "contacts": (
                Contact(
                    name="Priya Natarajan",
                    title="CTO",
                    linkedin_url="https://www.linkedin.com/in/priya-natarajan",
                ),
            ),
        }
    )
    first = good_note()
    twin_body = good_note().tool_calls[0]["args"]["body"]
    twin = tool_call(
        "DraftOutput",
        {
            "body": twin_body.replace("Dana", "Priya").replace("Quillcode", "Forkwise"),
            "cited_fact_ids": ["f3", "f4"],
        },
    )
    own = tool_call(
        "DraftOutput",
        {
            "body": "Priya, 3 sign-ups from Forkwise this month caught my eye, alongside the "
            "4 ML infra roles you are hiring for. What is driving the hiring?",
            "cited_fact_ids": ["f3", "f4"],
        },
    )
    model = ScriptedChatModel.from_script([first, twin, own])
    d = deps(env, model)
    await env["graph"].ainvoke(inp(), cfg("a"), context=d)
    await env["graph"].ainvoke(inp(fork), cfg("b"), context=d)
    snap = await env["graph"].aget_state(cfg("b"))
    assert snap.interrupts and not snap.values["flagged"]
    assert snap.values["draft"].body.startswith("Priya, 3 sign-ups")
    rewrite_prompt = str(model.calls[2][-1].content)
    assert "near_duplicates: same skeleton as the draft for Dana Ruiz (quillcode.dev)" in (
        rewrite_prompt
    )
    model.assert_complete()


async def test_a_signals_own_link_reaches_the_reviewer_not_the_writer(
    env: dict[str, Any],
) -> None:
    link = "https://quillcode.dev/blog/hiring"
    account = ACME.model_copy(
        update={
            "signals": (
                "3 sign-ups from this domain in the last 30 days",
                f"hiring 4 ML infra engineers ({link})",
            )
        }
    )
    model = ScriptedChatModel.from_script([good_note()])
    await env["graph"].ainvoke(inp(account), cfg("t-link"), context=deps(env, model))
    snap = await env["graph"].aget_state(cfg("t-link"))
    facts = {f.text: f for f in ApprovalRequest.from_interrupt(snap.interrupts[0].value).facts}
    hiring = facts["hiring 4 ML infra engineers"]
    assert hiring.url == link and hiring.source == "accounts.csv:2:signals"
    assert facts["3 sign-ups from this domain in the last 30 days"].url is None
    prompt = "\n".join(str(m.content) for m in model.calls[0])
    assert "hiring 4 ML infra engineers (source: accounts.csv:2:signals)" in prompt
    assert link not in prompt
    model.assert_complete()


@pytest.mark.parametrize(
    ("signal", "text", "url"),
    [
        (
            "Raised a Series B (https://news.example/b)",
            "Raised a Series B",
            "https://news.example/b",
        ),
        ("Spoke at a meetup — https://youtu.be/abc.", "Spoke at a meetup", "https://youtu.be/abc"),
        ("Hiring https://x.io/jobs;", "Hiring", "https://x.io/jobs"),
        ("https://only.example/x", "https://only.example/x", None),
        ("See http://a.example/p for more", "See http://a.example/p for more", None),
        ("Opened issue #77 (javascript:alert(1))", "Opened issue #77 (javascript:alert(1))", None),
    ],
)
def test_a_trailing_link_is_split_off_a_signal(signal: str, text: str, url: str | None) -> None:
    assert split_link(signal) == (text, url)
