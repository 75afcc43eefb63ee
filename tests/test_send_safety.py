"""Send-time safety in the graph: pacing, daily shares, provider failures, unknown outcomes,
and sends that break before reaching the provider."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from langgraph.types import Command

from agents.context import Deps
from agents.pacing import limits_for, next_opening
from gtm.domain.models import Account, Contact, Receipt
from gtm.domain.playbook import Playbook, load_playbook
from tests.support.fake_model import ScriptedChatModel, tool_call
from tests.support.providers import SmtpInbox, free_port
from tests.test_graph import ACME, cfg, deps, good_note, inp
from tests.test_graph import env as graph_env
from tools.channels import ChannelError
from tools.fakes import InMemoryLinkedIn
from tools.local_outbox import LocalEmailOutbox
from tools.smtp import MessageError, SmtpEmail, check_recipient

env = graph_env  # the same fixture: graph, twins, a real SQLite outbox and checkpointer

SATURDAY = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
MONDAY_0905 = datetime(2026, 11, 23, 9, 5, tzinfo=UTC)


def paced_playbook(**pacing: Any) -> Playbook:
    pb = load_playbook()
    return pb.model_copy(
        update={"pacing": pb.pacing.model_copy(update={"applies_to": "all", **pacing})}
    )


def account(n: int) -> Account:
    return ACME.model_copy(
        update={
            "account_id": f"quill{n}.dev",
            "domain": f"quill{n}.dev",
            "contacts": (
                Contact(
                    name="Dana Ruiz",
                    title="VP Engineering",
                    linkedin_url=f"https://www.linkedin.com/in/dana-ruiz-{n}",
                    email=f"dana@quill{n}.dev",
                ),
            ),
        }
    )


async def approve(env: dict[str, Any], d: Deps, tid: str, acct: Account = ACME) -> Any:
    g = env["graph"]
    await g.ainvoke(inp(acct, campaign=tid), cfg(tid), context=d)
    return await g.ainvoke(Command(resume={"action": "approve"}), cfg(tid), context=d)


def test_working_hours_are_read_in_the_senders_time_zone() -> None:
    pacing = paced_playbook(timezone="America/New_York").pacing
    # 13:00 UTC on a Monday is 08:00 in New York: closed until 09:00 local = 14:00 UTC.
    assert next_opening(pacing, datetime(2026, 11, 23, 13, 0, tzinfo=UTC)) == datetime(
        2026, 11, 23, 14, 0, tzinfo=UTC
    )
    assert next_opening(pacing, datetime(2026, 11, 23, 15, 0, tzinfo=UTC)) is None
    # Friday 17:45 local: closed until Monday 09:00 local.
    fri = datetime(2026, 11, 27, 22, 45, tzinfo=UTC)
    assert next_opening(pacing, fri) == datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


def test_a_paced_seat_gets_the_working_days_share_of_a_weekly_cap() -> None:
    pb = paced_playbook()
    wed = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
    labels = {
        lim.label: lim.limit for lim in limits_for(pb, "linkedin_connect", wed, is_paced=True)
    }
    assert labels == {"per week": 100, "today's share": 20}
    assert [lim.limit for lim in limits_for(pb, "linkedin_visit", wed, is_paced=False)] == [400]


async def test_outside_working_hours_work_waits_with_its_approval(env: dict[str, Any]) -> None:
    env["clock"].t = SATURDAY
    pb = paced_playbook(min_gap_seconds=0, max_gap_seconds=0)
    d = deps(env, ScriptedChatModel.from_script([good_note()]), playbook=pb)
    out = await approve(env, d, "w1")
    assert out["status"] == "deferred" and "working hours" in out["skip_detail"]
    assert "2026-11-23 09:00" in out["skip_detail"]
    assert not env["linkedin"].actions() and not env["outbox"].entries()

    # Monday morning the next run re-enters at send, as the runner does; no new approval needed.
    env["clock"].t = MONDAY_0905
    g = env["graph"]
    await g.aupdate_state(cfg("w1"), {"status": "running"}, as_node="approve")
    out = await g.ainvoke(None, cfg("w1"), context=d)
    assert out["status"] == "sent"
    assert [a.kind for a in env["linkedin"].actions()] == ["visit", "connect"]


async def test_paced_actions_are_spread_by_random_gaps(env: dict[str, Any]) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        env["clock"].t += timedelta(seconds=seconds)

    pb = paced_playbook(min_gap_seconds=60, max_gap_seconds=240)
    model = ScriptedChatModel.from_script([good_note(), good_note()])
    d = deps(env, model, playbook=pb, sleep=sleep)
    assert (await approve(env, d, "g1", account(1)))["status"] == "sent"
    assert (await approve(env, d, "g2", account(2)))["status"] == "sent"
    # Four actions (visit, connect, visit, connect); each after the first waits its gap.
    assert len(waits) == 3 and all(60 <= w <= 240 for w in waits), waits
    times = [e.created_at for e in env["outbox"].entries()]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert all(g >= 60 for g in gaps), gaps


async def test_the_days_share_defers_the_rest_to_tomorrow(env: dict[str, Any]) -> None:
    pb = paced_playbook(min_gap_seconds=0, max_gap_seconds=0)
    pb = pb.model_copy(
        update={"caps": pb.caps.model_copy(update={"linkedin_connection_requests_per_week": 10})}
    )
    model = ScriptedChatModel.from_script([good_note()] * 3)
    d = deps(env, model, playbook=pb)
    statuses = [(await approve(env, d, f"s{n}", account(n)))["status"] for n in range(3)]
    assert statuses == ["sent", "sent", "deferred"]
    snap = await env["graph"].aget_state(cfg("s2"))
    assert any("today's share 2/2" in e for e in snap.values["events"])
    assert [a.kind for a in env["linkedin"].actions()].count("connect") == 2


class FlakyLinkedIn(InMemoryLinkedIn):
    """Fails the first connect with the given error, then behaves."""

    def __init__(self, error: ChannelError) -> None:
        super().__init__(sender="seat-1")
        self.error: ChannelError | None = error
        self.calls = 0

    async def connect(self, profile_url: str, note: str, *, key: str) -> Receipt:
        self.calls += 1
        if self.error is not None:
            err, self.error = self.error, None
            raise err
        return await super().connect(profile_url, note, key=key)


async def test_a_busy_provider_defers_and_the_next_run_sends(env: dict[str, Any]) -> None:
    li = FlakyLinkedIn(ChannelError("429 too many requests", retryable=True))
    d = deps(env, ScriptedChatModel.from_script([good_note()]), linkedin=li)
    out = await approve(env, d, "b1")
    assert out["status"] == "deferred" and "provider busy" in out["skip_detail"]
    assert [e.step for e in env["outbox"].entries()] == ["linkedin_visit"]  # connect released

    g = env["graph"]
    await g.aupdate_state(cfg("b1"), {"status": "running"}, as_node="approve")
    out = await g.ainvoke(None, cfg("b1"), context=d)
    assert out["status"] == "sent" and li.calls == 2
    assert [e.state for e in env["outbox"].entries()] == ["sent", "sent"]
    li.close()


async def test_a_call_that_may_have_acted_is_never_repeated(env: dict[str, Any]) -> None:
    li = FlakyLinkedIn(ChannelError("read timeout", maybe_sent=True))
    d = deps(env, ScriptedChatModel.from_script([good_note()]), linkedin=li)
    out = await approve(env, d, "u1")
    assert out["status"] == "failed" and "unknown" in out["skip_detail"]
    assert [e.state for e in env["outbox"].entries()] == ["sent", "unknown"]

    g = env["graph"]
    await g.aupdate_state(cfg("u1"), {"status": "running"}, as_node="approve")
    out = await g.ainvoke(None, cfg("u1"), context=d)
    assert out["status"] == "failed" and li.calls == 1, "an unknown action is not retried"
    li.close()


@pytest.mark.parametrize("maybe", [True, False])
def test_channel_error_never_calls_a_maybe_sent_action_retryable(maybe: bool) -> None:
    err = ChannelError("x", retryable=True, maybe_sent=maybe)
    assert err.retryable is not maybe


# A send that breaks before or inside the provider call never leaves its outbox entry `pending`
# (which a later run would turn into an `unknown` for a human to untangle).


def unbuildable(n: int) -> Account:
    """An account whose contact's name holds a line break: no email header can carry it."""
    acct = account(n)
    return acct.model_copy(
        update={"contacts": (acct.contacts[0].model_copy(update={"name": "Dana\nRuiz"}),)}
    )


def email_note() -> Any:
    args = good_note().tool_calls[0]["args"]
    return tool_call("DraftOutput", {**args, "subject": "Retrieval at Quill"})


async def test_an_email_that_cannot_be_built_is_failed_not_pending(
    env: dict[str, Any], tmp_path: Path
) -> None:
    mail = LocalEmailOutbox(tmp_path / "mail", sender="me@vectorly.example")
    d = deps(env, ScriptedChatModel.from_script([email_note()]), email=mail)
    g, acct = env["graph"], unbuildable(7)
    await g.ainvoke({**inp(acct, campaign="e1"), "channel": "email"}, cfg("e1"), context=d)
    out = await g.ainvoke(Command(resume={"action": "approve"}), cfg("e1"), context=d)
    assert out["status"] == "failed"
    assert "recipient" in out["skip_detail"] and "line break" in out["skip_detail"]
    ((entry,),) = [env["outbox"].entries()]
    assert entry.state == "failed" and entry.error is not None
    assert "refused before the provider call" in entry.error and "line break" in entry.error
    assert "Dana" not in entry.error, "the error names the field, not the person"
    assert not mail.messages()

    # A later run does not try again on its own: a person fixes the row first.
    await g.aupdate_state(cfg("e1"), {"status": "running"}, as_node="approve")
    again = await g.ainvoke(None, cfg("e1"), context=d)
    assert again["status"] == "failed" and not mail.messages()
    assert [e.state for e in env["outbox"].entries()] == ["failed"]


class BrokenLinkedIn(InMemoryLinkedIn):
    """Acts on the connect, then breaks on something it does not classify (as a client
    parsing an unexpected reply would)."""

    def __init__(self) -> None:
        super().__init__(sender="seat-1")
        self.connects = 0

    async def connect(self, profile_url: str, note: str, *, key: str) -> Receipt:
        self.connects += 1
        await super().connect(profile_url, note, key=key)
        raise KeyError("messageid")


async def test_an_unclassified_channel_error_is_unknown_at_once_and_not_retried(
    env: dict[str, Any],
) -> None:
    li = BrokenLinkedIn()
    d = deps(env, ScriptedChatModel.from_script([good_note()]), linkedin=li)
    out = await approve(env, d, "k1")
    assert out["status"] == "failed" and "unknown" in out["skip_detail"]
    visit, connect = env["outbox"].entries()
    assert (visit.state, connect.state) == ("sent", "unknown")
    assert connect.error is not None and "KeyError" in connect.error

    g = env["graph"]
    await g.aupdate_state(cfg("k1"), {"status": "running"}, as_node="approve")
    out = await g.ainvoke(None, cfg("k1"), context=d)
    assert out["status"] == "failed" and li.connects == 1, "an unknown action is not retried"
    li.close()


@pytest.mark.parametrize(
    ("to", "name", "subject", "field"),
    [
        ("dana@quill.dev", "Dana\nRuiz", "Hi", "recipient"),
        ("dana@quill.dev", "Dana", "Hi\r\nBcc: everyone@quill.dev", "subject"),
        ("dana@quill.dev, ceo@quill.dev", "Dana", "Hi", "recipient"),
        ("dana@quill.dev\nBcc: x@y.dev", "Dana", "Hi", "recipient"),
        ("dänä@quill.dev", "Dana", "Hi", "recipient"),
    ],
)
async def test_smtp_refuses_a_message_it_cannot_build_before_connecting(
    tmp_path: Path, to: str, name: str, subject: str, field: str
) -> None:
    inbox = SmtpInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    mail = SmtpEmail(
        sender="me@vectorly.example",
        sender_name="Alex",
        host="127.0.0.1",
        port=controller.port,
        starttls=False,
        ledger=tmp_path / "smtp.sqlite",
    )
    try:
        with pytest.raises(MessageError, match=field):
            check_recipient(to=to, to_name=name, subject=subject)
        with pytest.raises(ChannelError) as caught:
            await mail.send(to=to, to_name=name, subject=subject, body="b", key="k1")
        err = caught.value
        assert not err.retryable and not err.maybe_sent
        assert "nothing sent" in str(err) and field in str(err)
        assert "quill.dev" not in str(err) and "Ruiz" not in str(err)
        # The same person, written properly, goes through: one message, one recipient.
        await mail.send(to="dana@quill.dev", to_name="Dana Ruiz", subject="Hi", body="b", key="k2")
    finally:
        await mail.aclose()
        controller.stop()
    (only,) = inbox.messages
    assert b"To: Dana Ruiz <dana@quill.dev>\r\n" in only
