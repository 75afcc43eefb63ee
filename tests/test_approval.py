"""The approval request and the decision policy every interface meets.

`ApprovalRequest` is what the approve node pauses with: it must survive the checkpoint, stay
readable by Agent Inbox, and still read the flat dict older data dirs hold. `take_decision`
holds every decision to one policy, whoever makes it (CLI, web, a script).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agents.graph import checkpoint_serde
from gtm.app.runner import (
    DecisionNotAllowed,
    DecisionRefused,
    EditRefused,
    NeedsConfirmation,
    Unsendable,
    apply_decision,
    pending_request,
    take_decision,
    thread_values,
    unsendable,
)
from gtm.app.settings import Settings
from gtm.app.workspace import Workspace, open_workspace
from gtm.domain import ApprovalRequest, Contact, Decision, Draft, Fact, Finding
from tests.support.openai_server import ScriptedOpenAIServer
from tests.support.web import BLANK_ACCOUNT, WEB_ACCOUNTS, seed

pytestmark = pytest.mark.timeout(300)

REQUEST = ApprovalRequest(
    account_id="quillcode.dev",
    company="Quillcode",
    tier=1,
    review="always",
    contact=Contact(name="Dana Ruiz", title="VP Engineering", email="dana@quillcode.dev"),
    draft=Draft(
        channel="email",
        step="email",
        subject="Retrieval at Quillcode",
        body="Hi Dana, saw 3 sign-ups from Quillcode. How do you handle retrieval?",
        cited_fact_ids=("f1",),
        prompt_version="personalize_email@3",
        model="scripted",
    ),
    facts=(
        Fact(id="f1", text="3 sign-ups", source="accounts.csv:2:signals", url="https://x.io/a"),
        Fact(id="f2", text="hiring", source="accounts.csv:2:signals"),
    ),
    findings=(Finding(check="banned_phrases", finding="'synergy'", spans=("synergy",)),),
    flagged=True,
)


def _through_checkpoint(value: Any) -> Any:
    """What a reader gets back after the checkpointer stored `value`."""
    serde = checkpoint_serde()
    return serde.loads_typed(serde.dumps_typed(value))


def test_the_request_survives_the_checkpoint_as_plain_data() -> None:
    value = REQUEST.interrupt_value()
    json.dumps(value)  # plain data: any LangGraph Server client can read it
    assert ApprovalRequest.from_interrupt(_through_checkpoint(value)) == REQUEST


def test_the_interrupt_is_an_agent_inbox_human_interrupt() -> None:
    value = REQUEST.interrupt_value()
    assert set(value) == {"action_request", "config", "description", "request"}
    assert value["action_request"] == {
        "action": "email",
        "args": {"subject": "Retrieval at Quillcode", "body": REQUEST.draft.body},
    }
    assert value["config"] == {
        "allow_ignore": True,
        "allow_respond": True,
        "allow_edit": True,
        "allow_accept": True,
    }
    assert value["description"].splitlines() == [
        "**Quillcode** (tier 1) → Dana Ruiz, VP Engineering via email",
        "",
        REQUEST.draft.body,
        "",
        "- [f1] 3 sign-ups (accounts.csv:2:signals · https://x.io/a)",
        "- ⚠ banned_phrases: 'synergy'",
    ]


def test_the_flat_shape_older_data_dirs_hold_is_still_read() -> None:
    """Before `ApprovalRequest`, the approve node paused with its fields at the top level."""
    old = {
        **REQUEST.human_interrupt(),
        "account_id": "quillcode.dev",
        "company": "Quillcode",
        "tier": 1,
        "review": "always",
        "contact": REQUEST.contact.model_dump(),
        "draft": REQUEST.draft.model_dump(),
        "facts": [f.model_dump() for f in REQUEST.facts],
        "findings": [{"check": "banned_phrases", "finding": "'synergy'", "spans": ["synergy"]}],
        "flagged": True,
    }
    assert ApprovalRequest.from_interrupt(_through_checkpoint(old)) == REQUEST
    assert ApprovalRequest.from_interrupt({**old, "tier": None}).tier is None


def test_what_is_not_a_request_is_refused() -> None:
    with pytest.raises(ValueError):
        ApprovalRequest.from_interrupt(["not", "a", "mapping"])
    with pytest.raises(ValueError):
        ApprovalRequest.from_interrupt({"action_request": {}, "config": {}})


def test_unsendable_names_only_what_the_channel_cannot_carry() -> None:
    empty = REQUEST.model_copy(
        update={"findings": (*REQUEST.findings, Finding(check="length", finding="empty"))}
    )
    assert unsendable(REQUEST) == []
    assert unsendable(empty) == ["length: empty"]


# --------------------------------------------------------------------------- the policy


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, model_server: ScriptedOpenAIServer) -> Path:
    """Seeded drafts waiting for approval: Briefcase Labs flagged, Blankpage empty."""
    d = tmp_path_factory.mktemp("policy")
    blank = tmp_path_factory.mktemp("lists") / "blank.csv"
    header = WEB_ACCOUNTS.read_text(encoding="utf-8").splitlines()[0]
    blank.write_text(f"{header}\n{BLANK_ACCOUNT}\n", encoding="utf-8")
    seed(
        d,
        model_server.base_url,
        [("spring", "linkedin", WEB_ACCOUNTS), ("blank", "linkedin", blank)],
    )
    return d


@pytest.fixture
async def ws(data: Path) -> AsyncIterator[Workspace]:
    async with open_workspace(Settings(data_dir=data), with_model=False) as rt:
        yield rt


def _id(ws: Workspace, company: str) -> int:
    (row,) = [r for r in ws.ledger.rows() if r.company == company]
    return row.id


def _decision(action: str, **kw: Any) -> Decision:
    return Decision(action=action, reviewer="tess", at=datetime.now(UTC), **kw)  # type: ignore[arg-type]


def _untouched(ws: Workspace, ref: int) -> bool:
    row = ws.ledger.get(ref)
    assert row is not None
    return (
        row.status == "waiting_for_approval"
        and not row.deciding
        and row.decided_at is None
        and ws.ledger.pending(row.thread_id) is None
    )


async def test_a_draft_its_channel_cannot_carry_is_never_approved_as_written(
    ws: Workspace,
) -> None:
    ref = _id(ws, "Blankpage")
    with pytest.raises(Unsendable, match="cannot be sent as written — length: "):
        await take_decision(ws, ref, _decision("approve"), confirmed=True)
    assert _untouched(ws, ref)


async def test_a_flagged_draft_is_approved_only_when_confirmed(ws: Workspace) -> None:
    ref = _id(ws, "Briefcase Labs")
    row = ws.ledger.get(ref)
    assert row is not None and row.flagged
    asked = await pending_request(ws, row.thread_id)
    assert asked is not None and asked.flagged and not unsendable(asked)
    with pytest.raises(NeedsConfirmation):
        await take_decision(ws, ref, _decision("approve"), confirmed=False)
    assert _untouched(ws, ref)
    taken = await take_decision(ws, ref, _decision("approve"), confirmed=True)
    assert taken.row.deciding and taken.notes == ()
    assert (await apply_decision(ws, taken.row)).status == "sent"


async def test_an_edit_must_hold_text_its_channel_can_carry(ws: Workspace) -> None:
    ref = _id(ws, "Leadlight")
    with pytest.raises(EditRefused, match="the edited text is empty; nothing was sent"):
        await take_decision(ws, ref, _decision("edit", text="  "), confirmed=True)
    too_long = "Hi there, " + "retrieval " * 60
    with pytest.raises(EditRefused, match="^edit refused — length: "):
        await take_decision(ws, ref, _decision("edit", text=too_long), confirmed=True)
    with pytest.raises(EditRefused, match="placeholders"):
        await take_decision(
            ws, ref, _decision("edit", text="Hi [First Name], open?"), confirmed=True
        )
    assert _untouched(ws, ref)


async def test_other_findings_on_an_edit_are_notes_not_refusals(ws: Workspace) -> None:
    ref = _id(ws, "Pagewright")
    text = "Hi there, what a game-changer your launch was. Open to comparing notes?"
    taken = await take_decision(ws, ref, _decision("edit", text=text), confirmed=False)
    assert any(n.startswith("banned_phrases: ") for n in taken.notes), taken.notes
    done = await apply_decision(ws, taken.row)
    assert done.status == "sent"
    assert (await thread_values(ws, done.thread_id))["draft"].body == text


async def test_a_second_decision_is_refused_whoever_makes_it(ws: Workspace) -> None:
    ref = _id(ws, "Findstack")
    taken = await take_decision(ws, ref, _decision("reject", reason="not now"), confirmed=False)
    await apply_decision(ws, taken.row)
    with pytest.raises(DecisionRefused, match="already decided by tess") as refused:
        await take_decision(ws, ref, _decision("approve"), confirmed=True)
    assert not isinstance(refused.value, DecisionNotAllowed)
    with pytest.raises(DecisionRefused, match="no draft with id 9999"):
        await take_decision(ws, 9999, _decision("approve"), confirmed=True)
