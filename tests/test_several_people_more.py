"""Several people per account, the parts `test_multi_contact` leaves out: an escalation names the
person of the thread the reply answers (any slot's), someone at the account the campaign never
wrote to pauses its sequences there too, and a reviewer's regenerate and edit of a further
person's thread change that thread only.

In process, on the real stores and the local twins, with an injected clock and the scripted
OpenAI-compatible writer on loopback (the campaign fixtures of `test_multi_contact`).
"""

# ruff: noqa: F811  (test parameters name the fixtures imported from test_multi_contact)
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gtm.app.checkpoints import thread_config
from gtm.app.escalation_pass import escalate_pending
from gtm.app.loop import ingest, local_event
from gtm.app.runner import decide
from gtm.app.settings import Settings
from gtm.app.workspace import Workspace, open_workspace
from gtm.domain.events import Event, EventKind
from gtm.domain.identity import at_company
from gtm.domain.models import Account, Contact, Decision
from gtm.domain.threads import thread_id_for
from tests.support.fake_model import ScriptedChatModel
from tests.support.openai_server import ScriptedOpenAIServer, tool_call_response
from tests.support.postgres import postgres_server  # noqa: F401 (the fixture `backend` uses)
from tests.test_escalations import answer, with_model
from tests.test_multi_contact import (  # noqa: F401 (the fixtures)
    CAMPAIGN,
    LEAD,
    T0,
    VP,
    A,
    B,
    Clock,
    _approve,
    _by_person,
    _run,
    _sent_to,
    _values,
    accounts,
    clock,
    ws,
    ws1,
)
from tests.test_pg_stores import Backend, backend  # noqa: F401 (fixture)

KIM_URL = "https://www.linkedin.com/in/kim-cto-signalry"


def _regenerating(request: dict[str, Any]) -> dict[str, Any]:
    """`_by_person`, except that Omar's note follows a reviewer's ask for another angle."""
    user = request["messages"][-1]["content"]
    if "First name: Omar" in user and "ANGLE-HIRING" in user:
        ids = re.findall(r"^\[(f\d+)\] (.+?) \(source:", user, flags=re.M)
        picked = ids[1:3] if len(ids) >= 3 else ids[:2]
        topic = picked[0][1][:80].rstrip(".")
        body = (
            f"Omar, from the hiring side this time: {topic[0].lower() + topic[1:]}. When your "
            "team plans that work, is the cost per query part of the plan?"
        )
        args: dict[str, Any] = {"body": body, "cited_fact_ids": [i for i, _ in picked]}
        if "one short email" in request["messages"][0]["content"]:
            args["subject"] = "Search hiring at Signalry"
        return tool_call_response(request["tool_choice"]["function"]["name"], args)
    return _by_person(request)


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(responder=_regenerating) as srv:
        yield srv


def _event(
    kind: EventKind,
    at: Any,
    *,
    email: str | None = None,
    linkedin_url: str | None = None,
    key: str | None = None,
) -> Event:
    return Event(
        # Keyed like a Message-ID, without the address: the stop line quotes the key.
        key=key or f"<{kind}.{abs(hash((email, linkedin_url, at))):x}@mail.example>",
        source="local",
        kind=kind,
        channel="linkedin" if linkedin_url and not email else "email",
        at=at,
        email=email,
        linkedin_url=linkedin_url,
        text="Please take us off your list, all of us.",
    )


# --------------------------------------------------------------------------- 1. escalations

LENA = Contact(name="Lena Ruiz", title="Search Team Lead", email=LEAD)
OMAR = Contact(name="Omar Haddad", title="VP Engineering", email=VP)
SIGNALRY = Account(
    account_id="signalry.io",
    company="Signalry",
    domain="signalry.io",
    owner="rita@yourcompany.example",
    contacts=(LENA, OMAR),
)


async def test_a_reply_from_the_second_person_escalates_with_that_persons_context(
    tmp_path: Path,
    clock: Clock,
) -> None:
    """Omar (a VP) is the person of the account's second thread; Lena of its first. His reply
    answers his own touch: the senior-reply rule reads his title, not hers. The CRM knows
    neither, so only the thread can say who he is."""
    data = tmp_path / "data"
    async with open_workspace(Settings(data_dir=data), with_model=False, clock=clock) as rt:
        for slot, person in ((0, LENA), (1, OMAR)):
            rt.ledger.ensure(CAMPAIGN, SIGNALRY, "email", slot=slot)
            rt.ledger.update(thread_id_for(CAMPAIGN, "signalry.io", slot), tier=2, status="sent")
            await rt.graph.aupdate_state(
                thread_config(thread_id_for(CAMPAIGN, "signalry.io", slot)),
                {"campaign": CAMPAIGN, "channel": "email", "account": SIGNALRY, "contact": person},
                as_node="record",
            )
            key = f"k-{slot}"
            rt.deps.outbox.reserve(
                key=key, campaign=CAMPAIGN, account_id="signalry.io", contact_key=person.key,
                step="email", channel="email", sender="me@yourcompany.example",
            )  # fmt: skip
            rt.deps.outbox.mark_sent(key, f"<m{slot}@yourcompany.example>")
        assert await rt.deps.crm.find_contact(OMAR) is None
        clock.now = T0 + timedelta(days=1)
        ingest(
            rt,
            [
                local_event(
                    kind="email_reply",
                    at=clock.now,
                    email=VP,
                    text="What does it cost?",
                    subject="Re: hi",
                    in_reply_to=["<m1@yourcompany.example>"],
                ),  # fmt: skip
                local_event(
                    kind="email_reply",
                    at=clock.now,
                    email=LEAD,
                    text="What does it cost?",
                    subject="Re: hi",
                    in_reply_to=["<m0@yourcompany.example>"],
                ),  # fmt: skip
            ],
        )
        model = ScriptedChatModel.from_script(
            [answer(("question", "What does it cost")), answer(("question", "What does it cost"))]
        )
        with_model(rt, model)
        report = await escalate_pending(rt)
    model.assert_complete()
    assert report.events == 2 and not report.errors, report
    (esc,) = report.escalations  # Lena's reply raises nothing: a team lead is not senior
    assert esc.signal == "senior_reply"
    assert esc.person == VP
    assert esc.contact == "Omar Haddad, VP Engineering"
    assert esc.owner == "rita@yourcompany.example"  # the thread's account names the owner
    assert esc.company == "Signalry"


# ---------------------------------------------------------------------- 2. unwritten colleagues


def test_at_company_never_matches_personal_mail_or_look_alike_domains() -> None:
    assert at_company("kim@signalry.io", "signalry.io")
    assert at_company("Kim@EU.Signalry.io", "signalry.io")  # a subdomain, any case
    assert at_company("kim@signalry.io", "www.signalry.io")
    assert not at_company("kim@notsignalry.io", "signalry.io")
    assert not at_company("kim@signalry.io.evil.example", "signalry.io")
    assert not at_company("kim@gmail.com", "gmail.com")  # an account "at" a mail provider
    assert not at_company("kim@gmail.com", "signalry.io")
    assert not at_company(None, "signalry.io") and not at_company("kim", "signalry.io")
    assert not at_company("kim@signalry.io", "")


def test_both_event_stores_find_addresses_at_a_domain_with_wildcards_escaped(
    backend: Backend,  # noqa: F811 (the imported fixture)
) -> None:
    store = backend.events()
    for who in ("kim@a_b.io", "lee@eu.a_b.io", "max@aXb.io", "ned@xa_b.io", "ola@a_b.io.x"):
        store.ingest(_event("email_reply", T0, email=who))
    store.ingest(_event("message_received", T0, linkedin_url=KIM_URL))
    store.ingest(_event("bounce", T0, email="pat@a_b.io"), outbox_key="k-1")
    found = sorted(e.person or "" for e in store.events(domain="A_B.io"))
    assert found == ["kim@a_b.io", "lee@eu.a_b.io", "pat@a_b.io"]
    assert [e.person for e in store.events(domain="a_b.io", kind="bounce")] == ["pat@a_b.io"]
    assert [e.person for e in store.events(domain="a_b.io", matched=False, kind="bounce")] == []
    assert len(store.events(domain="a_b.io", matched=False)) == 2


async def test_a_reply_from_someone_never_written_to_stops_a_colleagues_first_touch_at_send(
    ws: Workspace,
    accounts: list[Account],
    clock: Clock,
) -> None:
    await _run(ws, accounts)
    assert (await _approve(ws, A, clock)).status == "sent"  # Lena's first touch
    # The CTO, on no list and never written to, answers a forwarded email.
    ingest(ws, [_event("email_reply", T0 + timedelta(hours=1), email="cto@signalry.io")])
    clock.now = T0 + timedelta(hours=2)
    stopped = await _approve(ws, B, clock)
    assert stopped.status == "skipped" and stopped.skip_reason == "sequence_stopped"
    assert "someone else at this account" in stopped.detail
    assert "address at the company's domain" in stopped.detail
    assert "cto@signalry.io" not in stopped.detail  # the ledger keeps no address
    assert _sent_to(ws) == [LEAD]


async def test_a_linkedin_reply_from_a_crm_contact_of_the_company_stops_re_entry(
    ws: Workspace,
    accounts: list[Account],
    clock: Clock,
) -> None:
    await _run(ws, accounts)
    for tid in (A, B):
        assert (await _approve(ws, tid, clock)).status == "sent"
    company = await ws.deps.crm.find_company("signalry.io")
    assert company is not None  # the record node wrote it
    await ws.deps.crm.upsert_contact(
        Contact(name="Kim Park", title="CTO", linkedin_url=KIM_URL), company.id
    )
    ingest(ws, [_event("message_received", T0 + timedelta(days=1), linkedin_url=KIM_URL)])
    assert len(ws.events.unmatched()) == 1
    clock.now = T0 + timedelta(days=4, hours=1)  # both first follow-ups are due
    summary = await _run(ws, accounts)
    assert summary.sequences is not None and summary.sequences.advanced == []
    for tid in (A, B):
        row = ws.ledger.get(tid)
        assert row is not None and row.seq_stopped is not None
        assert "a CRM contact of the company" in row.seq_stopped
        assert "replied on LinkedIn" in row.seq_stopped
    assert sorted(_sent_to(ws)) == sorted([LEAD, VP])


async def test_personal_mail_look_alikes_old_events_and_bounces_pause_nothing(
    ws: Workspace,
    accounts: list[Account],
    clock: Clock,
) -> None:
    await _run(ws, accounts)
    for tid in (A, B):
        assert (await _approve(ws, tid, clock)).status == "sent"
    company = await ws.deps.crm.find_company("signalry.io")
    assert company is not None
    day = T0 + timedelta(days=1)
    ingest(
        ws,
        [
            _event("email_reply", day, email="someone@gmail.com"),  # in no CRM, no list
            _event("email_reply", day, email="kim@notsignalry.io"),
            _event("email_reply", day, email="kim@signalry.io.evil.example"),
            _event("unsubscribe", T0 - timedelta(days=90), email="old@signalry.io"),
            _event("bounce", day, email="gone@signalry.io"),
            _event("auto_reply", day, email="ooo@signalry.io"),
        ],
    )
    clock.now = T0 + timedelta(days=4, hours=1)
    summary = await _run(ws, accounts)
    assert summary.sequences is not None
    assert sorted(r.thread_id for r in summary.sequences.advanced) == sorted([A, B])
    assert all(ws.ledger.get(t).seq_stopped is None for t in (A, B))  # type: ignore[union-attr]


async def test_with_one_person_per_account_a_listed_colleagues_reply_stops_the_follow_up(
    ws1: Workspace,
    accounts: list[Account],
    clock: Clock,
) -> None:
    """The account's sequence is one thread, to Omar (first in list order); Lena is on the list
    but never written to. Her reply pauses his follow-up all the same."""
    await _run(ws1, accounts)
    assert (await _values(ws1, A))["contact"].email == VP
    assert (await _approve(ws1, A, clock)).status == "sent"
    ingest(ws1, [_event("email_reply", T0 + timedelta(days=1), email=LEAD)])
    clock.now = T0 + timedelta(days=4, hours=1)
    summary = await _run(ws1, accounts)
    assert summary.sequences is not None and summary.sequences.advanced == []
    row = ws1.ledger.get(A)
    assert row is not None and row.seq_stopped is not None
    assert "someone else at this account" in row.seq_stopped
    assert _sent_to(ws1) == [VP]


# --------------------------------------------------------------------------- 3. review of #2


async def test_regenerating_and_editing_the_second_persons_draft_changes_only_that_thread(
    ws: Workspace,
    accounts: list[Account],
    clock: Clock,
) -> None:
    await _run(ws, accounts)
    lena_before, omar_before = await _values(ws, A), await _values(ws, B)
    row_b = ws.ledger.get(B)
    assert row_b is not None

    again = await decide(
        ws, row_b.id,
        Decision(action="regenerate", instructions="Try ANGLE-HIRING instead.", reviewer="tess",
                 at=clock.now),
    )  # fmt: skip
    assert again.status == "waiting_for_approval", again.detail
    lena_mid, omar_mid = await _values(ws, A), await _values(ws, B)
    assert omar_mid["draft"].body != omar_before["draft"].body
    assert "from the hiring side" in omar_mid["draft"].body
    assert omar_mid["contact"].email == VP
    assert lena_mid["draft"] == lena_before["draft"]  # Lena's thread did not move
    assert ws.ledger.get(A).status == "waiting_for_approval"  # type: ignore[union-attr]
    assert _sent_to(ws) == []

    edited = "Omar, how does your team budget for search as the transcript archive grows?"
    done = await decide(
        ws, row_b.id, Decision(action="edit", text=edited, reviewer="tess", at=clock.now)
    )
    assert done.status == "sent", done.detail
    assert (await _values(ws, A))["draft"] == lena_before["draft"]
    assert (await _approve(ws, A, clock)).status == "sent"

    sent = [e for e in ws.deps.outbox.entries(campaign=CAMPAIGN) if e.state == "sent"]
    assert sorted(e.touch.recipient or "" for e in sent) == sorted([LEAD, VP])  # one each
    bodies = {
        t.contact: t.text
        for t in await ws.deps.memory.history("signalry.io", limit=50)
        if t.kind == "send"
    }
    assert bodies["Omar Haddad"].strip() == edited
    assert bodies["Lena Ruiz"].strip() == lena_before["draft"].body.strip()
    # Deciding the sent thread again is refused: nothing goes twice.
    with pytest.raises(Exception, match="already decided"):
        await decide(ws, row_b.id, Decision(action="approve", reviewer="tess", at=clock.now))
    assert len([e for e in ws.deps.outbox.entries(campaign=CAMPAIGN) if e.state == "sent"]) == 2
