"""The crash harness's loop trials: the later steps of a sequence, and what comes back.

Each trial starts `tests.crash.loop_worker` on one data directory (first touches, then a day at
a time: events in, escalation pass, sequences advanced, follow-ups approved) and kills it with
SIGKILL from outside after a random delay or from inside at a provider call, a follow-up
message, a decision, a checkpoint write, an event-store write, or between an ingest and the
escalation pass. When the simulated campaign ends before the trials do, a fresh one starts.
After the last trial an unkilled run finishes it, and `loop_checks` looks at every wave:

- zero duplicate sends: no key, and no (action, profile, sequence position), attempted twice;
- no follow-up attempted after a stopping event of its person (reply, opt-out...) was stored,
  ordered by the fsync'd journal; none before the accept or before its wait had elapsed;
- every event stored once: one `stored` journal line per key, one row per (kind, person), and
  the stored match and time unchanged by the re-deliveries; every event that came due is stored,
  and every reply went through the escalation pass, with no escalation or CRM task made twice;
- no weekly cap exceeded in any ISO week; zero lost approvals at any sequence position.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agents.followup import STOPPING_KINDS
from gtm.app.ledger import Ledger
from gtm.domain.identity import profile_url
from gtm.domain.models import Step, idempotency_key
from gtm.domain.playbook import load_playbook
from tests.crash.common import ROOT, TERMINAL, read_journal, wait_worker, write_accounts
from tests.crash.loop_events import START, classify_or_write, due_events, write_plan
from tests.crash.loop_worker import CAMPAIGN
from tests.support.openai_server import ScriptedOpenAIServer
from tools.local_outbox import LocalLinkedInOutbox
from tools.outbox import Outbox, iso_week_start

__all__ = ["LOOP_KINDS", "LoopFigures", "loop_trials", "loop_checks", "loop_report"]

LOOP_KINDS = [
    "time",
    "message_before",
    "message_after",
    "ingest",
    "escalate",
    "decision",
    "checkpoint",
    "provider_before",
    "provider_after",
]


@dataclass
class LoopFigures:
    trials: int = 0
    waves: int = 0
    worker_runs: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    first_touches: int = 0
    followups: Counter[int] = field(default_factory=Counter)
    """Follow-up messages performed, by sequence position."""
    deliveries: int = 0
    events: Counter[str] = field(default_factory=Counter)
    stopped: int = 0
    blocked_at_send: int = 0
    escalations: int = 0
    tasks: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def pick_loop_kill(kind: str, rng: random.Random) -> tuple[str | None, float | None]:
    if kind == "time":
        return None, rng.uniform(4.0, 12.0)
    hi = {"checkpoint": 60, "provider_before": 12, "provider_after": 12, "escalate": 8}
    return f"{kind}:{rng.randint(1, hi.get(kind, 5))}", None


def run_loop_worker(
    wave: Path, accounts: Path, plan: Path, model_url: str, kill: str | None, delay: float | None
) -> int:
    import os
    import subprocess

    cmd = [sys.executable, "-m", "tests.crash.loop_worker", "--data-dir", str(wave / "data")]
    cmd += ["--accounts", str(accounts), "--plan", str(plan), "--model-url", model_url]
    cmd += ["--journal", str(wave / "journal.jsonl")] + (["--kill", kill] if kill else [])
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("GTM_")}
    with open(wave / "worker.log", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
    return wait_worker(proc, None if delay is None else time.monotonic() + delay)


def loop_trials(
    trials: int, n_accounts: int, rng: random.Random, workdir: Path, fig: LoopFigures
) -> None:
    """`trials` SIGKILLs of loop workers, an unkilled finishing run, and the checks."""
    started = time.monotonic()
    try:
        _loop_trials(trials, n_accounts, rng, workdir, fig)
    finally:
        fig.seconds = time.monotonic() - started


def _loop_trials(
    trials: int, n_accounts: int, rng: random.Random, workdir: Path, fig: LoopFigures
) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    accounts, plan = workdir / "loop-accounts.csv", workdir / "loop-plan.json"
    write_accounts(accounts, n_accounts, rng)
    write_plan(plan, accounts, rng)
    wave: Path | None = None
    with ScriptedOpenAIServer(responder=classify_or_write) as model:
        while fig.trials < trials:
            if wave is None:
                fig.waves += 1
                wave = workdir / f"loop{fig.waves}"
                wave.mkdir(parents=True)
            kind = LOOP_KINDS[fig.trials % len(LOOP_KINDS)]
            spec, delay = pick_loop_kill(kind, rng)
            code = run_loop_worker(wave, accounts, plan, model.base_url, spec, delay)
            fig.worker_runs += 1
            if code == -signal.SIGKILL:
                fig.trials += 1
                fig.kills[kind] += 1
                fig.problems += [
                    f"after loop trial {fig.trials}: {p}"
                    for p in attempt_problems(read_journal(wave / "journal.jsonl"), None)
                ]
            elif code == 0:
                loop_checks(wave, plan, fig)
                wave = None
            else:
                fig.problems.append(f"loop worker exited {code} (not a kill, not done): {wave}")
                return
        if wave is not None:
            code = run_loop_worker(wave, accounts, plan, model.base_url, None, None)
            fig.worker_runs += 1
            if code != 0:
                fig.problems.append(f"the final unkilled loop run exited {code}: {wave}")
            loop_checks(wave, plan, fig)


def attempt_problems(journal: list[dict[str, Any]], pos_of: dict[str, int] | None) -> list[str]:
    """Keys attempted twice; with `pos_of` (outbox key → sequence position), also any
    (action, profile, position) attempted twice."""
    attempts = [e for e in journal if e["ev"] == "attempt"]
    out = [f"key {k} attempted {n} times" for k, n in _twice(e["key"] for e in attempts)]
    out += [
        f"approval lost: {e['thread']} asked again at {e['pos']}"
        for e in journal
        if e["ev"] == "lost"
    ]
    if pos_of is not None:
        triples = ((e["kind"], _url(e["url"]), pos_of.get(e["key"], -1)) for e in attempts)
        out += [
            f"{k} to {u} at position {p} attempted {n} times" for (k, u, p), n in _twice(triples)
        ]
    return out


def _twice(items: Any) -> list[tuple[Any, int]]:
    return [(k, n) for k, n in Counter(items).items() if n > 1]


def _url(value: str) -> str:
    return profile_url(value) or value.strip().lower()


def loop_checks(wave: Path, plan_path: Path, fig: LoopFigures) -> None:
    """Every check of the module doc over one finished wave."""
    from tests.crash.loop_events import load_plan

    journal = read_journal(wave / "journal.jsonl")
    data = wave / "data"
    playbook = load_playbook()
    ledger, outbox = Ledger(data / "ledger.sqlite"), Outbox(data / "outbox.sqlite")
    linkedin = LocalLinkedInOutbox(data / "linkedin.sqlite", sender="check")
    db = sqlite3.connect(data / "events.sqlite")
    db.row_factory = sqlite3.Row
    problems: list[str] = []
    try:
        entries = outbox.entries(campaign=CAMPAIGN)
        by_key = {e.key: e for e in entries}
        pos_of: dict[str, int] = {}
        for e in entries:
            for pos in range(4):
                k = idempotency_key(CAMPAIGN, e.account_id, e.contact_key, e.step, pos)
                if k in by_key:
                    pos_of[k] = pos
        problems += attempt_problems(journal, pos_of)
        problems += [
            f"attempt {e['key']} has no outbox entry"
            for e in journal
            if e["ev"] == "attempt" and e["key"] not in by_key
        ]
        rows = [dict(r) for r in db.execute("SELECT * FROM events")]
        problems += _event_problems(journal, rows, fig)
        problems += _order_problems(journal, rows, pos_of, by_key, playbook)
        actions = linkedin.actions()
        connects = {_url(a.profile_url): a.at for a in actions if a.kind == "connect"}
        end = max(
            datetime.fromisoformat(e["at"]) for e in journal if "at" in e and e["ev"] != "stored"
        )
        due = due_events(load_plan(plan_path), connects, end, START - timedelta(days=1))
        stored = {r["key"] for r in rows}
        problems += [
            f"event {ev.key} came due but was never stored" for ev, _ in due if ev.key not in stored
        ]
        problems += _escalation_problems(db, rows, fig)
        problems += _cap_problems(entries, playbook)
        problems += _approval_problems(journal, ledger, by_key, fig)
        for r in ledger.rows(campaign=CAMPAIGN):
            if r.status not in TERMINAL:
                problems.append(f"{r.thread_id} ended {r.status!r}")
            fig.stopped += r.seq_stopped is not None
            fig.blocked_at_send += r.seq_pos > 0 and r.detail.startswith("at send time")
        fig.first_touches += sum(1 for a in actions if a.kind == "connect")
        fig.followups.update(pos_of.get(a.key, -1) for a in actions if a.kind == "message")
        fig.deliveries += sum(int(e["n"]) for e in journal if e["ev"] == "delivered")
    finally:
        ledger.close()
        outbox.close()
        linkedin.close()
        db.close()
    fig.duplicates += sum("attempted" in p or "stored" in p and "times" in p for p in problems)
    fig.problems += [f"{wave.name}: {p}" for p in problems]


def _event_problems(
    journal: list[dict[str, Any]], rows: list[dict[str, Any]], fig: LoopFigures
) -> list[str]:
    """Each key stored once, one row per (kind, person), unchanged by re-deliveries."""
    lines = [e for e in journal if e["ev"] == "stored"]
    out = [f"event {k} stored {n} times" for k, n in _twice(e["key"] for e in lines)]
    out += [f"event {k} has {n} rows" for k, n in _twice(r["key"] for r in rows)]
    out += [
        f"{k} of {p} stored {n} times"
        for (k, p), n in _twice((r["kind"], r["person"]) for r in rows)
    ]
    first = {e["key"]: e for e in reversed(lines)}
    for r in rows:
        fig.events[r["kind"]] += 1
        line = first.get(r["key"])
        if line is None:
            continue  # killed between the store write and its journal line: nothing to compare
        if line["outbox_key"] != r["outbox_key"] or datetime.fromisoformat(
            line["at"]
        ) != datetime.fromisoformat(r["at"]):
            out.append(f"event {r['key']} changed after it was stored")
    return out


def _order_problems(
    journal: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    pos_of: dict[str, int],
    by_key: dict[str, Any],
    playbook: Any,
) -> list[str]:
    """Follow-ups against the events: none after a stop, none before the accept and its wait."""
    out: list[str] = []
    stop_at: dict[str, int] = {}
    accepted: dict[str, tuple[int, datetime]] = {}
    unlogged = {r["key"] for r in rows}
    for i, e in enumerate(journal):
        if e["ev"] == "stored":
            unlogged.discard(e["key"])
            if e["kind"] in STOPPING_KINDS:
                stop_at.setdefault(e["url"], i)
            if e["kind"] == "connection_accepted":
                accepted.setdefault(e["url"], (i, datetime.fromisoformat(e["at"])))
        if e["ev"] != "attempt" or e["kind"] != "message":
            continue
        url, pos, at = _url(e["url"]), pos_of.get(e["key"], 0), datetime.fromisoformat(e["at"])
        if pos < 1:
            out.append(f"message {e['key']} to {url} is no follow-up")
            continue
        if url in stop_at and stop_at[url] < i:
            out.append(f"follow-up {pos} to {url} attempted after its sequence was stopped")
        step = playbook.sequences.follow_up("linkedin", pos)
        acc = accepted.get(url)
        if acc is None or acc[0] > i:
            out.append(f"follow-up {pos} to {url} attempted before the accept was stored")
        elif pos == 1 and at < acc[1] + timedelta(days=step.wait_days):
            out.append(f"follow-up 1 to {url} at {at} before its wait after the accept")
        if pos > 1:
            prev = next(
                (
                    by_key[k]
                    for k, p in pos_of.items()
                    if p == pos - 1
                    and by_key[k].contact_key == by_key[e["key"]].contact_key
                    and by_key[k].step == "linkedin_message"
                ),
                None,
            )
            if prev is None or prev.state != "sent":
                out.append(f"follow-up {pos} to {url} without a sent follow-up {pos - 1}")
            elif at < prev.updated_at + timedelta(days=step.wait_days):
                out.append(f"follow-up {pos} to {url} at {at} before its wait")
    if unlogged:  # a kill between an event's store write and its journal line: the order of
        # its stop against a later attempt is unknown, so say so rather than pass it silently
        out += [f"event {k} stored without a journal line" for k in sorted(unlogged)]
    return out


def _escalation_problems(
    db: sqlite3.Connection, rows: list[dict[str, Any]], fig: LoopFigures
) -> list[str]:
    out: list[str] = []
    esc = [dict(r) for r in db.execute("SELECT * FROM escalations")]
    fig.escalations += len(esc)
    out += [
        f"escalation {k} made {n} times"
        for k, n in _twice((e["event_key"], e["signal"], e["action"]) for e in esc)
    ]
    stages = {(r["event_key"], r["stage"]) for r in db.execute("SELECT * FROM escalation_events")}
    out += [
        f"event {r['key']} never went through the escalation pass"
        for r in rows
        if (r["key"], "escalated") not in stages
    ]
    return out


def _cap_problems(entries: list[Any], playbook: Any) -> list[str]:
    caps = playbook.caps
    limit = {
        "linkedin_connect": caps.linkedin_connection_requests_per_week,
        "linkedin_visit": caps.linkedin_profile_visits_per_week,
        "linkedin_message": caps.linkedin_messages_per_week,
    }
    used = Counter((e.step, iso_week_start(e.created_at)) for e in entries if e.state != "failed")
    return [
        f"{s}: {n} in the week of {w:%Y-%m-%d}, over the cap {limit[s]}"
        for (s, w), n in used.items()
        if s in limit and n > limit[s]
    ]


def _approval_problems(
    journal: list[dict[str, Any]], ledger: Ledger, by_key: dict[str, Any], fig: LoopFigures
) -> list[str]:
    """Every acknowledged decision, at its sequence position, ended where it should."""
    out: list[str] = []
    rows = {r.thread_id: r for r in ledger.rows(campaign=CAMPAIGN)}
    for e in journal:
        if e["ev"] != "acked":
            continue
        pos = int(e["pos"])
        fig.decisions[f"{e['action']}@{pos}"] += 1
        row = rows.get(e["thread"])
        if row is None:
            out.append(f"acknowledged {e['action']} of {e['thread']} has no thread")
            continue
        contacts = {x.contact_key for x in by_key.values() if x.account_id == row.account_id}
        step: Step = "linkedin_connect" if pos == 0 else "linkedin_message"
        keys = [idempotency_key(CAMPAIGN, row.account_id, c, step, pos) for c in contacts]
        entry = next((by_key[k] for k in keys if k in by_key), None)
        if e["action"] == "reject":
            if entry is not None:
                out.append(f"rejected {e['thread']} at {pos} was sent")
            continue
        stopped = row.seq_stopped is not None or row.skip_reason == "sequence_stopped"
        if entry is None and not stopped and row.status not in ("deferred", "skipped"):
            out.append(f"acknowledged {e['action']} of {e['thread']} at {pos} lost: {row.status}")
    return out


def loop_report(fig: LoopFigures) -> list[str]:
    def line(c: Counter[Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=str)) or "-"

    return [
        f"  loop trials (later steps, events): {fig.trials} SIGKILL trials over {fig.waves} "
        f"campaign(s), {fig.worker_runs} worker runs, {fig.seconds:.0f} s",
        "  loop kills by point: " + line(fig.kills),
        f"  loop first touches: {fig.first_touches}; follow-ups sent by position: "
        + line(fig.followups),
        "  loop decisions acknowledged (action@position): " + line(fig.decisions),
        f"  events: {fig.deliveries} deliveries, {sum(fig.events.values())} stored ("
        + line(fig.events)
        + f"), sequences stopped {fig.stopped}, follow-ups approved then blocked at send time "
        f"{fig.blocked_at_send}",
        f"  escalations made: {fig.escalations}",
        f"  loop duplicate sends or events: {fig.duplicates}",
        f"  loop problems: {len(fig.problems)}",
        *[f"    {p}" for p in fig.problems[:20]],
    ]
