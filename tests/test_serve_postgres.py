"""`gtm serve` on Postgres (issue 17, workers on several machines): a tick advances a
campaign's due follow-ups under the campaign's end-of-run lease in the database, the one every
`gtm run` worker takes for its end-of-run pass, not under a lock file of its own machine.

While another worker holds that lease, the tick leaves the campaign alone; once it is given
back (even finished), the next tick advances it; and a `gtm run` worker whose run ends while
the server is in the middle of the pass waits for it instead of running its own pass at the
same time. The serve loop in-process (`Tick`, as tests/test_serve.py drives it), against the
session's temporary Postgres cluster and the scripted model server on loopback."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gtm.app.accounts import load_accounts
from gtm.app.loop import ingest
from gtm.app.runner import decide, run_campaign
from gtm.app.settings import Settings
from gtm.app.workers import END_OF_RUN, Lanes
from gtm.app.workspace import open_workspace
from gtm.cli.serve import Tick
from gtm.domain.events import Event
from gtm.domain.models import Decision
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts
from tests.support.postgres import database_url, postgres_server  # noqa: F401
from tests.test_sequences import HEADER, ROW, T0, URL
from tools.pg_leases import AccountLeases

SLOW = 0.3
"""Seconds per model answer once the follow-up is due: the server's pass lasts a while."""


async def test_serve_advances_follow_ups_only_under_the_campaigns_end_of_run_lease(
    tmp_path: Path, url: str
) -> None:
    now = [T0]
    calls: list[float] = []
    slow = [False]

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        calls.append(time.monotonic())
        if slow[0]:
            time.sleep(SLOW)
        return write_from_facts(request)

    csv = tmp_path / "accounts.csv"
    csv.write_text(f"{HEADER}\n{ROW}\n", encoding="utf-8")
    accounts = load_accounts(csv).accounts
    with ScriptedOpenAIServer(responder=answer) as srv:
        settings = Settings(
            data_dir=tmp_path / "data", model_base_url=srv.base_url, model="x", database_url=url
        )
        async with open_workspace(settings, with_model=True, clock=lambda: now[0]) as ws:
            await run_campaign(ws, accounts, campaign="fall", channel="linkedin")
            (row,) = ws.ledger.rows(campaign="fall")
            await decide(ws, row.id, Decision(action="approve", reviewer="tess", at=now[0]))
        first_touch = len(calls)
        other = AccountLeases(url, worker="worker-on-another-machine")
        async with open_workspace(settings, with_model=False, clock=lambda: now[0]) as rt:
            tick = Tick(settings, mailbox=None)
            async with tick.running(SimpleNamespace(rt=rt), timedelta(hours=1)):  # type: ignore[arg-type]
                assert tick.leases is not None  # on Postgres: leases, not the lock file
                now[0] = T0 + timedelta(days=3)
                accepted = Event(
                    key="accepted-1",
                    source="local",
                    kind="connection_accepted",
                    channel="linkedin",
                    at=T0 + timedelta(days=1),
                    linkedin_url=URL,
                )
                assert ingest(rt, [accepted]).matched == 1  # the follow-up is due now

                assert other.take("fall", END_OF_RUN) == "taken"
                await tick.once()  # held by another machine's worker: left alone
                assert len(calls) == first_touch
                assert rt.ledger.rows(campaign="fall")[0].seq_pos == 0
                assert (settings.data_dir / "locks").exists() is False  # no lock file taken

                assert other.release("fall", END_OF_RUN, done=True)  # its run finished
                # a worker started since (a worker started before would skip the pass: done)
                worker = AccountLeases(url, worker="late-worker")
                slow[0] = True
                serving = asyncio.create_task(tick.once())
                deadline = time.monotonic() + 30
                while worker.holders("fall", [END_OF_RUN]).get(END_OF_RUN) != tick.leases.worker:
                    assert time.monotonic() < deadline and not serving.done()
                    await asyncio.sleep(0.02)
                # A `gtm run` worker reaches its end-of-run pass while the server is in it.
                tail_ran: list[tuple[bool, int]] = []

                async def tail() -> None:
                    tail_ran.append((serving.done(), len(calls)))

                async def nothing(_: Any) -> None:
                    raise AssertionError("no account to work")

                lanes = Lanes(worker, "fall")
                await asyncio.gather(serving, lanes.run([], nothing, lanes=1, tail=tail))
                assert tail_ran == [(True, len(calls))]  # after the server's pass, not during
                assert len(calls) > first_touch  # the server drafted the follow-up
                (row,) = rt.ledger.rows(campaign="fall")
                assert (row.status, row.seq_pos) == ("waiting_for_approval", 1)
                assert worker.holders("fall", [END_OF_RUN]) == {}  # every lease given back
        other.close()
        worker.close()
