"""Two campaigns approved for one person at the same moment: exactly one reaches them.

The cooldown against other campaigns is decided inside the outbox reservation, under SQLite's
write lock, not read beforehand. These tests race two campaigns through the real graph (separate
outbox connections, as two processes or a web inbox applying decisions at once would have), and
two processes through the outbox alone.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command

from agents.graph import build_graph, checkpoint_serde
from gtm.domain.models import Contact, Receipt, Touch
from memory.in_memory import InMemoryMemory
from tests.support.fake_model import ScriptedChatModel
from tests.test_graph import NOW, Clock, cfg, deps, good_note, inp
from tests.test_send_safety import account
from tools.crm import CompanyRecord, ContactRecord
from tools.fakes import InMemoryCRM, InMemoryEmail, InMemoryLinkedIn
from tools.outbox import Cooldowns, Outbox
from tools.suppression import SuppressionList

ROUNDS = 30
WINDOWS = Cooldowns(person=timedelta(days=30), account=timedelta(days=7))


# The twins below yield where the real backends do (HTTP calls, Chroma's worker thread), so
# two tasks interleave inside the send node as two processes or the web inbox's workers would.


class SlowCRM(InMemoryCRM):
    """The CRM twin with a network's latency: lookups yield to other tasks, as HTTP calls do."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng

    async def find_company(self, domain: str) -> CompanyRecord | None:
        await asyncio.sleep(self.rng.uniform(0, 0.004))
        return await super().find_company(domain)

    async def find_contact(self, contact: Contact) -> ContactRecord | None:
        await asyncio.sleep(self.rng.uniform(0, 0.004))
        return await super().find_contact(contact)


class SlowMemory(InMemoryMemory):
    """The memory twin yielding on reads, as Chroma does (its calls run in a worker thread)."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng

    async def history(self, account_id: str, limit: int = 20) -> list[Touch]:
        await asyncio.sleep(self.rng.uniform(0, 0.004))
        return await super().history(account_id, limit)


class SlowLinkedIn(InMemoryLinkedIn):
    """The LinkedIn twin with latency on every action."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__(sender="seat-1")
        self.rng = rng

    async def visit(self, profile_url: str, *, key: str) -> Receipt:
        await asyncio.sleep(self.rng.uniform(0, 0.004))
        return await super().visit(profile_url, key=key)

    async def connect(self, profile_url: str, note: str, *, key: str) -> Receipt:
        await asyncio.sleep(self.rng.uniform(0, 0.004))
        return await super().connect(profile_url, note, key=key)


async def test_two_campaigns_approved_at_once_contact_a_person_once(tmp_path: Path) -> None:
    rng = random.Random(14)
    clock = Clock(NOW)
    # One outbox file, one connection per campaign: what two processes would hold.
    boxes = {c: Outbox(tmp_path / "outbox.sqlite", clock=clock) for c in ("spring", "summer")}
    crm, linkedin, sup = SlowCRM(rng), SlowLinkedIn(rng), SuppressionList(tmp_path / "sup.sqlite")
    shared: dict[str, Any] = {
        "crm": crm,
        "linkedin": linkedin,
        "email": InMemoryEmail(sender="me@vectorly.example"),
        "suppressions": sup,
        "clock": clock,
    }
    outcomes: list[tuple[str, str]] = []
    async with aiosqlite.connect(tmp_path / "cp.sqlite") as conn:
        graph = build_graph(AsyncSqliteSaver(conn, serde=checkpoint_serde()))
        for n in range(ROUNDS):
            acct = account(100 + n)
            # Fresh memory each round: the campaign's drafts for earlier rounds' people would
            # be near-duplicates of this one (the same scripted note).
            shared["memory"] = SlowMemory(rng)
            ctx = {
                c: deps(
                    {**shared, "outbox": boxes[c]},
                    ScriptedChatModel.from_script([good_note()]),
                )
                for c in boxes
            }
            for c in boxes:  # both drafted while nobody has been contacted: both await approval
                await graph.ainvoke(inp(acct, campaign=c), cfg(f"{c}-{n}"), context=ctx[c])
                assert (await graph.aget_state(cfg(f"{c}-{n}"))).next == ("approve",)

            async def approve(c: str, n: int = n, ctx: dict[str, Any] = ctx) -> dict[str, Any]:
                await asyncio.sleep(rng.uniform(0, 0.002))
                resume = Command(resume={"action": "approve"})
                result: dict[str, Any] = await graph.ainvoke(
                    resume, cfg(f"{c}-{n}"), context=ctx[c]
                )
                return result

            spring, summer = await asyncio.gather(approve("spring"), approve("summer"))
            url = acct.contacts[0].linkedin_url
            done = [a.kind for a in linkedin.actions() if a.profile_url == url]
            outcomes.append((spring["status"], summer["status"]))
            assert sorted(done) == ["connect", "visit"], f"round {n}: {done}"
            assert sorted((spring["status"], summer["status"])) == ["sent", "skipped"], n
            loser = spring if spring["status"] == "skipped" else summer
            assert loser["skip_reason"] == "cooldown"
            assert loser["skip_detail"].startswith("at send time: Dana Ruiz was contacted")
    for c in boxes:
        boxes[c].close()
    sup.close(), crm.close(), linkedin.close()
    # Both campaigns won some rounds: the race was real, not one side always first.
    assert {s for s, _ in outcomes} == {"sent", "skipped"}, outcomes


def _reserve_people_in_child(path: str, campaign: str, barrier: Any, queue: Any) -> None:
    box = Outbox(Path(path))
    won = []
    for i in range(ROUNDS):
        barrier.wait()
        got = box.reserve(
            key=f"{campaign}-{i}",
            campaign=campaign,
            account_id=f"acct{i}.example",
            contact_key=f"person{i}@acct{i}.example",
            step="linkedin_visit",
            channel="linkedin",
            sender=f"seat-{campaign}",
            cooldown=WINDOWS,
        )
        if got.created:
            won.append(i)
        else:
            assert got.cooldown is not None and got.cooldown.entry.campaign != campaign
    queue.put((campaign, won))
    box.close()


def test_two_processes_reserving_one_person_in_two_campaigns_get_one_winner(
    tmp_path: Path,
) -> None:
    """Each round both processes reserve the same person at a barrier: one wins, one cools."""
    path = str(tmp_path / "o.sqlite")
    Outbox(Path(path)).close()
    ctx = multiprocessing.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(2, timeout=60)
    procs = [
        ctx.Process(target=_reserve_people_in_child, args=(path, c, barrier, queue))
        for c in ("spring", "summer")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    won = dict(queue.get(timeout=5) for _ in procs)
    queue.close()
    queue.join_thread()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    assert sorted(won["spring"] + won["summer"]) == list(range(ROUNDS)), won
    box = Outbox(Path(path))
    assert len(box.entries()) == ROUNDS
    box.close()


@pytest.fixture
def box(tmp_path: Path) -> Any:
    clock = Clock(NOW)
    out = Outbox(tmp_path / "o.sqlite", clock=clock)
    yield out, clock
    out.close()


def _take(
    out: Outbox, key: str, campaign: str, person: str = "dana", acct: str = "quill.dev"
) -> Any:
    return out.reserve(
        key=key,
        campaign=campaign,
        account_id=acct,
        contact_key=person,
        step="linkedin_visit",
        channel="linkedin",
        sender="seat",
        cooldown=WINDOWS,
    )


def test_what_counts_toward_a_cooldown(box: Any) -> None:
    out, clock = box
    assert _take(out, "a1", "spring").created
    # The same campaign's next step is exempt (the connect after its visit).
    assert _take(out, "a2", "spring").created
    # Another campaign waits, whatever state the action is in but failed: pending may be
    # mid-call, unknown may have reached them.
    for state in ("pending", "unknown", "sent"):
        if state != "pending":
            for key in ("a1", "a2"):
                getattr(out, f"mark_{state}")(key, *(["p1"] if state == "sent" else ["?"]))
        got = _take(out, f"b-{state}", "summer")
        assert not got.created and got.entry is None and out.get(f"b-{state}") is None
        assert got.cooldown.scope == "person" and got.cooldown.entry.campaign == "spring"
    out.mark_failed("a1", "refused"), out.mark_failed("a2", "refused")
    assert _take(out, "b-after-failed", "summer").created


def test_person_and_account_windows(box: Any) -> None:
    out, clock = box
    _take(out, "a1", "spring")
    out.mark_sent("a1", "p1")
    clock.t = NOW + timedelta(days=3)
    colleague = _take(out, "b1", "summer", person="theo")
    assert colleague.cooldown is not None and colleague.cooldown.scope == "account"
    assert colleague.cooldown.age == timedelta(days=3)
    clock.t = NOW + timedelta(days=8)  # the account rests 7 days, the person 30
    assert _take(out, "b2", "summer", person="theo", acct="elsewhere.dev").created
    again = _take(out, "b3", "autumn")
    assert again.cooldown is not None and again.cooldown.scope == "person"
    assert again.cooldown.window == timedelta(days=30)
    clock.t = NOW + timedelta(days=30)
    assert _take(out, "b4", "autumn").created
    none = Cooldowns(person=timedelta(0), account=timedelta(0))
    hit = out.cooldown_hit(campaign="x", contact_key="dana", account_id="quill.dev", cooldown=none)
    assert hit is None
