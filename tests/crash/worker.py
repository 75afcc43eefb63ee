"""One process of the crash harness: run the campaign, then approve what waits, until done.

It runs the real runtime (SQLite checkpointer, ledger, outbox, Chroma memory, local channels)
against a scripted OpenAI-compatible model on loopback. The harness kills it with SIGKILL, either
from outside at a random time or from inside at a chosen point (`--kill kind:n`):

- `provider_before:n` / `provider_after:n`: the n-th LinkedIn call, before it reaches the channel
  or after the channel acted but before the outbox records it;
- `decision:n`: right after the n-th decision is written to the ledger, before the graph takes it;
- `checkpoint:n`: right after the n-th checkpoint write.

Every provider call and every decision is appended to a journal (fsync'd) *before* it happens,
so the harness can count attempts the process itself can no longer report.

Two workers may run at once on one data directory, each its own campaign (`--campaign`), over
overlapping account lists: the harness's two-campaign trials. Each then keeps its account memory
in its own `--memory-dir` (Chroma's embedded store is for one process; the outbox is the shared
guard under test), and `--latency` gives its CRM and memory calls a live provider's delays.

With `--database-url` the stores and checkpoints are in Postgres and the worker is one of
several on one campaign (`tests.crash.workers_pg`): it takes accounts through leases
(`--lease-seconds`), and a decision another worker took first is skipped, not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import inspect
import json
import os
import random
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import memory.chroma
from gtm.app.accounts import load_accounts
from gtm.app.runner import (
    DecisionNotAllowed,
    DecisionRefused,
    decide,
    pending_request,
    run_campaign,
)
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from gtm.domain.models import Decision, Receipt
from memory.chroma import ChromaMemory
from tools.channels import LinkedInChannel
from tools.pg_leases import AccountLeases

CAMPAIGN = "crash"


class Journal:
    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, **event: Any) -> None:
        os.write(self._fd, (json.dumps(event) + "\n").encode())
        os.fsync(self._fd)


class Killer:
    """Kills this process with SIGKILL at the n-th event of one kind."""

    def __init__(self, spec: str | None) -> None:
        kind, _, n = (spec or "none:0").partition(":")
        self.kind, self.n = kind, int(n or 0)
        self.seen: dict[str, int] = {}

    def tick(self, kind: str) -> None:
        self.seen[kind] = self.seen.get(kind, 0) + 1
        if kind == self.kind and self.seen[kind] == self.n:
            os.kill(os.getpid(), signal.SIGKILL)


@dataclasses.dataclass
class JournalingLinkedIn:
    """The local LinkedIn outbox, with every attempt journaled first and kill points around it."""

    inner: LinkedInChannel
    journal: Journal
    killer: Killer
    campaign: str

    @property
    def sender(self) -> str:
        return self.inner.sender

    @property
    def live(self) -> bool:
        return self.inner.live

    async def _call(self, kind: str, url: str, key: str, call: Any) -> Receipt:
        self.journal.write(ev="attempt", kind=kind, url=url, key=key, campaign=self.campaign)
        self.killer.tick("provider_before")
        receipt: Receipt = await call
        self.killer.tick("provider_after")
        return receipt

    async def visit(self, profile_url: str, *, key: str) -> Receipt:
        return await self._call("visit", profile_url, key, self.inner.visit(profile_url, key=key))

    async def connect(self, profile_url: str, note: str, *, key: str) -> Receipt:
        call = self.inner.connect(profile_url, note, key=key)
        return await self._call("connect", profile_url, key, call)

    async def message(self, profile_url: str, text: str, *, key: str) -> Receipt:
        call = self.inner.message(profile_url, text, key=key)
        return await self._call("message", profile_url, key, call)


class Slowed:
    """Delegates to `inner`, each coroutine call after a random pause of up to `most` seconds:
    a live CRM's or memory's latency, which widens the moments two processes interleave in."""

    def __init__(self, inner: Any, most: float) -> None:
        self._inner, self._most = inner, most

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def slowed(*a: Any, **kw: Any) -> Any:
            await asyncio.sleep(random.uniform(0, self._most))
            return await attr(*a, **kw)

        return slowed


def choice(account_id: str) -> str:
    """A fixed reviewer habit per account: mostly approve, some edits and rejections."""
    h = int(hashlib.sha256(account_id.encode()).hexdigest(), 16) % 10
    return "reject" if h == 0 else "edit" if h == 1 else "approve"


def acked(journal_path: Path) -> set[str]:
    if not journal_path.exists():
        return set()
    out = set()
    for line in journal_path.read_text().splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill
            continue
        if ev.get("ev") == "acked":
            out.add(ev["thread"])
    return out


async def main(args: argparse.Namespace) -> int:
    settings = Settings(
        data_dir=args.data_dir,
        model_base_url=args.model_url,
        model="scripted",
        model_temperature=0,
        database_url=args.database_url,
    )
    leases = (
        AccountLeases(args.database_url, lease_for=timedelta(seconds=args.lease_seconds))
        if args.database_url
        else None
    )
    listing = load_accounts(args.accounts)
    journal, killer = Journal(args.journal), Killer(args.kill)
    campaign: str = args.campaign
    if args.memory_dir is not None:  # this process's own Chroma store (see the module doc)
        own: Path = args.memory_dir

        class OwnChroma(ChromaMemory):
            """The embedded store in this worker's directory, wherever the workspace asks."""

            def __init__(self, _path: Path, *rest: Any, **kw: Any) -> None:
                super().__init__(own, *rest, **kw)

        # The workspace imports the class from `memory.chroma` when the memory opens.
        setattr(memory.chroma, "ChromaMemory", OwnChroma)  # noqa: B010
    async with open_workspace(settings, with_model=True) as rt:
        rt.deps = dataclasses.replace(
            rt.deps, linkedin=JournalingLinkedIn(rt.deps.linkedin, journal, killer, campaign)
        )
        if args.latency:
            rt.deps = dataclasses.replace(
                rt.deps,
                crm=Slowed(rt.deps.crm, args.latency),
                memory=Slowed(rt.deps.memory, args.latency),
            )
        record = rt.ledger.record_decision

        def record_then_maybe_die(row_id: int, **kw: Any) -> None:
            record(row_id, **kw)
            killer.tick("decision")

        rt.ledger.record_decision = record_then_maybe_die  # type: ignore[method-assign]
        saver = rt.graph.checkpointer
        assert saver is not None and not isinstance(saver, bool)
        for name in ("aput", "aput_writes"):
            original = getattr(saver, name)

            async def put_then_maybe_die(*a: Any, _o: Any = original, **kw: Any) -> Any:
                result = await _o(*a, **kw)
                killer.tick("checkpoint")
                return result

            setattr(saver, name, put_then_maybe_die)

        await run_campaign(
            rt, listing.accounts, campaign=campaign, channel="linkedin", leases=leases
        )
        done = acked(args.journal)
        for row in rt.ledger.rows(campaign=campaign, status="waiting_for_approval"):
            asked = await pending_request(rt, row.thread_id)
            if asked is None:
                continue
            if row.thread_id in done:
                journal.write(ev="lost", thread=row.thread_id)  # approved before, asked again
            action = choice(row.account_id)
            draft = asked.draft
            decision = Decision(
                action=action,  # type: ignore[arg-type]
                text=draft.body.replace("Would you", "Would you perhaps")
                if action == "edit"
                else None,
                reason="not a fit this quarter" if action == "reject" else None,
                reviewer="harness",
                at=rt.deps.clock(),
            )
            journal.write(ev="deciding", thread=row.thread_id, action=action)
            try:
                await decide(rt, row.id, decision)
            except DecisionRefused as exc:
                if leases is None or isinstance(exc, DecisionNotAllowed):
                    raise
                continue  # another worker decided it first
            journal.write(ev="acked", thread=row.thread_id, action=action)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--accounts", type=Path, required=True)
    p.add_argument("--journal", type=Path, required=True)
    p.add_argument("--model-url", required=True)
    p.add_argument("--kill", default=None)
    p.add_argument("--campaign", default=CAMPAIGN)
    p.add_argument("--memory-dir", type=Path, default=None)
    p.add_argument(
        "--latency", type=float, default=0.0, help="most seconds a CRM or memory call waits"
    )
    p.add_argument("--database-url", default=None)
    p.add_argument("--lease-seconds", type=float, default=5.0)
    raise SystemExit(asyncio.run(main(p.parse_args())))
