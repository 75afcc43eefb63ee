"""`run_campaign` works its accounts with a pool of `concurrency` workers (issue 20, flat cost).

A task per account made up front kept every account's coroutine alive from the start of a run
(10,000 of them in a long one). Here, on the real stores and graph with the scripted writer on
loopback: at most `concurrency` account coroutines exist at any moment of a 200-account run, the
accounts start in their ranked order, one account's failure in the graph is recorded and the
others finish, and an error that escapes the runner leaves no account being worked behind it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import gtm.app.runner as runner
import gtm.app.workers as workers
from agents.qualify import rank_accounts
from gtm.app.accounts import load_accounts
from gtm.app.ledger import ThreadRow
from gtm.app.settings import Settings
from gtm.app.workspace import Workspace, open_workspace
from gtm.domain.models import Account
from gtm.domain.playbook import load_playbook
from gtm.domain.threads import thread_id_for
from tests.crash.common import write_accounts
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts

CAMPAIGN = "pool"


def _accounts(tmp_path: Path, n: int) -> list[Account]:
    csv = tmp_path / f"accounts-{n}.csv"
    write_accounts(csv, n, random.Random(20))
    listing = load_accounts(csv)
    return listing.accounts


def _live_account_coroutines() -> int:
    """Coroutines of the runner's per-account step (`one`) anywhere in a live task's chain of
    awaits, started or not."""
    live = 0
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        while coro is not None:
            code = getattr(coro, "cr_code", None)
            if code is not None and code.co_name == "one" and code.co_filename == runner.__file__:
                live += 1
            coro = getattr(coro, "cr_await", None)
    return live


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(responder=write_from_facts) as srv:
        yield srv


@pytest.fixture
async def ws(tmp_path: Path, server: ScriptedOpenAIServer) -> AsyncIterator[Workspace]:
    settings = Settings(data_dir=tmp_path / "data", model_base_url=server.base_url, model="x")
    async with open_workspace(settings, with_model=True, playbook=load_playbook()) as rt:
        yield rt


class _Watch:
    """Wraps `runner.advance`: what was alive and running each time an account's graph ran."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.running = 0
        self.most_running = 0
        self.most_live = 0

    async def advance(self, rt: Workspace, thread_id: str, payload: Any) -> ThreadRow:
        self.started.append(thread_id)
        self.most_live = max(self.most_live, _live_account_coroutines())
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            return await _ADVANCE(rt, thread_id, payload)
        finally:
            self.running -= 1


_ADVANCE = runner.advance


async def test_a_200_account_run_keeps_at_most_concurrency_accounts_alive(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = _accounts(tmp_path, 200)
    assert len(accounts) >= 190  # a few repeated domains are merged by the list loader
    watch = _Watch()
    monkeypatch.setattr(runner, "advance", watch.advance)
    progress: list[str] = []

    summary = await runner.run_campaign(
        ws,
        accounts,
        campaign=CAMPAIGN,
        channel="linkedin",
        concurrency=4,
        on_progress=lambda row, kind: progress.append(kind),
    )

    assert 1 <= watch.most_live <= 4, watch.most_live  # a task per account: all of them
    assert watch.most_running == 4  # and the four lanes were used
    ranked = rank_accounts(accounts, ws.playbook_for(CAMPAIGN))
    assert watch.started == [thread_id_for(CAMPAIGN, a.account_id) for a in ranked]
    assert summary.total == len(accounts) == len(progress) == sum(summary.by_status.values())
    assert progress == ["new"] * len(accounts)
    assert not summary.failures, summary.failures
    assert summary.by_status["waiting_for_approval"] > 150, summary.by_status
    assert _live_account_coroutines() == 0


class _Failing:
    """The graph, except that running one thread raises, as a broken node would."""

    def __init__(self, graph: Any, thread_id: str) -> None:
        self._graph = graph
        self._thread_id = thread_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._graph, name)

    async def ainvoke(self, payload: Any, config: Any, **kw: Any) -> Any:
        if config["configurable"]["thread_id"] == self._thread_id:
            await asyncio.sleep(0)
            raise RuntimeError("node exploded")
        return await self._graph.ainvoke(payload, config, **kw)


async def test_an_account_failing_in_the_graph_is_recorded_and_the_others_finish(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = rank_accounts(_accounts(tmp_path, 12), ws.playbook)
    bad = accounts[1]
    monkeypatch.setattr(ws, "graph", _Failing(ws.graph, thread_id_for(CAMPAIGN, bad.account_id)))

    summary = await runner.run_campaign(
        ws, accounts, campaign=CAMPAIGN, channel="linkedin", concurrency=3
    )

    assert summary.failures == [f"{bad.company}: RuntimeError: node exploded"]
    assert summary.by_status["failed"] == 1
    assert sum(summary.by_status.values()) == len(accounts)
    rows = {r.account_id: r for r in ws.ledger.rows(campaign=CAMPAIGN)}
    assert rows[bad.account_id].status == "failed"
    others = [rows[a.account_id].status for a in accounts if a is not bad]
    assert len(others) == len(accounts) - 1
    assert "failed" not in others and "running" not in others, others


async def test_an_error_escaping_the_runner_leaves_no_account_worked_behind_it(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error outside the graph (here the progress callback; a store failing would be the
    same) ends the run with that error, after the accounts still being worked are cancelled:
    nothing keeps writing to a workspace its caller is about to close, and no account starts
    after it."""
    accounts = _accounts(tmp_path, 20)
    watch = _Watch()
    monkeypatch.setattr(runner, "advance", watch.advance)
    seen: list[str] = []

    def progress(row: ThreadRow | None, kind: str) -> None:
        seen.append(kind)
        if len(seen) == 3:
            raise OSError("terminal went away")

    with pytest.raises(OSError, match="terminal went away"):
        await runner.run_campaign(
            ws, accounts, campaign=CAMPAIGN, channel="linkedin", concurrency=4, on_progress=progress
        )
    assert _live_account_coroutines() == 0
    started = len(watch.started)
    await asyncio.sleep(0.3)
    assert len(watch.started) == started < len(accounts)
    assert watch.running == 0


async def test_a_cancelled_run_stops_its_accounts_and_starts_no_more(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C cancels the command's task: the accounts being worked stop where they are (their
    next run resumes them), none starts after, and the run ends only once they have unwound
    (a `gather` over a task per account ended as soon as the first waiting one was cancelled,
    with LangGraph's clean-up of the running ones still going while the workspace closed)."""
    accounts = _accounts(tmp_path, 20)
    watch = _Watch()
    monkeypatch.setattr(runner, "advance", watch.advance)
    run = asyncio.create_task(
        runner.run_campaign(ws, accounts, campaign=CAMPAIGN, channel="linkedin", concurrency=3)
    )
    while len(watch.started) < 5:
        await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert _live_account_coroutines() == 0 and watch.running == 0
    started = len(watch.started)
    await asyncio.sleep(0.3)
    assert len(watch.started) == started < len(accounts)
    again = await runner.run_campaign(
        ws, accounts, campaign=CAMPAIGN, channel="linkedin", concurrency=3
    )
    assert again.by_status["running"] == 0 and not again.failures, again
    assert sum(again.by_status.values()) == len(accounts)


async def test_a_step_that_ignores_its_cancellation_holds_ctrl_c_up_only_briefly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Ctrl-C waits for the accounts in flight to unwind, but not for one whose step does
    not answer the cancellation (a model request LangGraph waits for): after `UNWIND_S` the
    cancellation goes on, so the command closes its workspace and stops."""
    monkeypatch.setattr(workers, "UNWIND_S", 0.3)
    quick: list[str] = []
    released = asyncio.Event()

    async def work(account: str) -> None:
        if account == "stubborn":
            while not released.is_set():  # every cancellation is swallowed until released
                try:
                    await asyncio.sleep(0.02)
                except asyncio.CancelledError:
                    continue
        else:
            try:
                await asyncio.sleep(60)
            finally:
                quick.append(account)

    pool = asyncio.create_task(runner._pool(["stubborn", "a", "b"], work, size=3))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    pool.cancel()
    started = asyncio.get_running_loop().time()
    with pytest.raises(asyncio.CancelledError):
        await pool
    waited = asyncio.get_running_loop().time() - started
    assert sorted(quick) == ["a", "b"]  # those that answered unwound before it returned
    assert 0.25 <= waited < 5, waited
    stubborn = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert stubborn and not any(t.done() for t in stubborn)  # still there, as LangGraph's was
    released.set()
    await asyncio.wait(stubborn, timeout=5)
