"""Two campaigns at once: the crash harness's trials for the cooldown between campaigns.

Two workers share one data directory (outbox, ledger, checkpoints, the LinkedIn log), each
running its own campaign over an overlapping account list: three rows in four of one list, so
half its people are on both, in the same order in both lists. Their CRM and memory calls take a
live provider's time (`LATENCY`). Both are killed at random, as in the one-campaign trials, and
resumed together, so approvals for one person in both campaigns are applied at nearly the same
moment in two processes. Every action happens within minutes, well
inside the playbook's cooldown, so over each wave the harness checks, besides duplicate sends
and lost approvals, that no person was reserved or reached by both campaigns.
"""

from __future__ import annotations

import csv
import random
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

from gtm.app.ledger import Ledger
from gtm.domain.models import OutboxEntry
from gtm.domain.playbook import load_playbook
from tests.crash.common import (
    KINDS,
    TERMINAL,
    Figures,
    journal_problems,
    pick_kill,
    read_journal,
    start_worker,
    wait_worker,
    write_accounts,
)
from tools.local_outbox import LocalLinkedInOutbox
from tools.outbox import Outbox

__all__ = ["PAIR", "pair_trials"]

PAIR = ("crash-a", "crash-b")
LATENCY = 0.05
"""Most seconds a worker's CRM or memory call waits (a live provider's delay)."""


def split_lists(accounts: Path, workdir: Path) -> tuple[dict[str, Path], int]:
    """Each campaign's list, and how many accounts are on both: rows 0 and 2 of every four are
    shared, row 1 is the first campaign's own, row 3 the second's."""
    with accounts.open(newline="", encoding="utf-8") as fh:
        head, *body = list(csv.reader(fh))
    out = {}
    for name, own in ((PAIR[0], 1), (PAIR[1], 3)):
        out[name] = workdir / f"{name}.csv"
        part = [row for i, row in enumerate(body) if i % 4 in (0, 2, own)]
        with out[name].open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([head, *part])
    return out, sum(1 for i in range(len(body)) if i % 4 in (0, 2))


def run_pair(
    wave_dir: Path,
    lists: dict[str, Path],
    model_url: str,
    campaigns: list[str],
    rng: random.Random | None,
) -> dict[str, tuple[str, int]]:
    """Start a worker per campaign at once; each may be killed (no `rng`: none is). Returns
    each campaign's kill kind and exit code."""
    started = {}
    for c in campaigns:
        kind, spec, delay = "none", None, None
        if rng is not None:
            kind = rng.choice(KINDS)
            spec, delay = pick_kill(kind, rng)
        proc = start_worker(wave_dir, lists[c], model_url, spec, campaign=c, latency=LATENCY)
        started[c] = (kind, proc, None if delay is None else time.monotonic() + delay)
    return {c: (kind, wait_worker(proc, end)) for c, (kind, proc, end) in started.items()}


def _events(wave_dir: Path) -> list[dict[str, str]]:
    return [e for c in PAIR for e in read_journal(wave_dir / f"journal-{c}.jsonl")]


def pair_trials(
    trials: int,
    n_accounts: int,
    rng: random.Random,
    model_url: str,
    workdir: Path,
    fig: Figures,
) -> None:
    """`trials` two-campaign runs in which at least one worker was killed, then the checks."""
    accounts = workdir / "pair-accounts.csv"
    write_accounts(accounts, n_accounts, rng)
    lists, shared = split_lists(accounts, workdir)
    wave_dir: Path | None = None
    left: list[str] = []
    done = 0
    while done < trials:
        if wave_dir is None:
            fig.pair_waves += 1
            wave_dir = workdir / f"pairs{fig.pair_waves}"
            wave_dir.mkdir(parents=True)
            left, fig.shared_people = list(PAIR), fig.shared_people + shared
        codes = run_pair(wave_dir, lists, model_url, left, rng)
        fig.worker_runs += len(codes)
        for c, (kind, code) in codes.items():
            if code == -signal.SIGKILL:
                fig.kills[f"pair:{kind}"] += 1
            elif code == 0:
                left.remove(c)
            else:
                fig.unexpected_exits.append(f"{wave_dir.name}: {c} exit {code}, see its log")
                fig.problems.append(f"{c} worker exited {code} (not a kill, not done)")
                return
        if any(code == -signal.SIGKILL for _, code in codes.values()):
            done += 1
            fig.trials += 1
            fig.pair_trials += 1
            fig.problems += [
                f"after two-campaign trial {done}: {p}" for p in journal_problems(_events(wave_dir))
            ]
        if not left:
            pair_checks(wave_dir, fig)
            wave_dir = None
    if wave_dir is not None:
        codes = run_pair(wave_dir, lists, model_url, list(PAIR), None)
        fig.worker_runs += len(codes)
        for c, (_, code) in codes.items():
            if code != 0:
                fig.problems.append(f"the final unkilled run of {c} exited {code}")
        pair_checks(wave_dir, fig)


def pair_checks(wave_dir: Path, fig: Figures) -> None:
    """One wave's checks over both campaigns (see the module doc)."""
    events = _events(wave_dir)
    fig.problems += journal_problems(events)  # a profile attempted by both: contacted twice
    data = wave_dir / "data"
    ledger = Ledger(data / "ledger.sqlite")
    outbox = Outbox(data / "outbox.sqlite")
    linkedin = LocalLinkedInOutbox(data / "linkedin.sqlite", sender="check")
    try:
        entries = outbox.entries()
        fig.outbox.update(e.state for e in entries)
        held: defaultdict[str, set[str]] = defaultdict(set)
        for e in entries:
            if e.state != "failed":
                held[e.contact_key].add(e.campaign)
        fig.problems += [
            f"{who} reserved by both campaigns" for who, cs in held.items() if len(cs) > 1
        ]
        by_key = {e.key: e for e in entries}
        reached: defaultdict[str, set[str]] = defaultdict(set)
        actions = linkedin.actions()
        fig.actions.update(a.kind for a in actions)
        for a in actions:
            entry = by_key.get(a.key)
            if entry is None:
                fig.problems.append(f"{a.kind} to {a.profile_url} has no outbox entry")
            reached[a.profile_url].add(entry.campaign if entry else "?")
        fig.problems += [
            f"{url} reached by both campaigns" for url, cs in reached.items() if len(cs) > 1
        ]
        pairs = Counter((a.kind, a.profile_url) for a in actions)
        fig.problems += [f"{k} to {u} performed {n} times" for (k, u), n in pairs.items() if n > 1]
        for c in PAIR:
            _campaign_checks(c, ledger, entries, events, fig)
        caps = load_playbook().caps  # one seat sends for both campaigns: the caps are shared
        for step, cap in (
            ("linkedin_connect", caps.linkedin_connection_requests_per_week),
            ("linkedin_visit", caps.linkedin_profile_visits_per_week),
        ):
            used = sum(1 for e in entries if e.step == step and e.state != "failed")
            if used > cap:
                fig.problems.append(f"{step}: {used} over the weekly cap {cap}, two campaigns")
    finally:
        ledger.close()
        outbox.close()
        linkedin.close()


def _campaign_checks(
    campaign: str,
    ledger: Ledger,
    entries: list[OutboxEntry],
    events: list[dict[str, str]],
    fig: Figures,
) -> None:
    """The one-campaign checks, where an approval may also end skipped by the cooldown (the
    other campaign reached the person first)."""
    rows = ledger.rows(campaign=campaign)
    for r in rows:
        label = r.status if r.status != "skipped" else f"skipped ({r.skip_reason})"
        if r.skip_reason == "cooldown":
            label += ", at send time" if r.detail.startswith("at send time") else ", at intake"
        fig.pair_statuses[label] += 1
    unknown = {e.account_id for e in entries if e.campaign == campaign and e.state == "unknown"}
    by_thread = {r.thread_id: r for r in rows}
    for r in rows:
        if r.status not in TERMINAL:
            fig.problems.append(f"{r.thread_id} ended {r.status!r}")
        if r.status == "failed" and r.account_id not in unknown:
            fig.problems.append(f"{r.thread_id} failed without an unknown action: {r.detail}")
    for e in events:
        if e["ev"] != "acked" or e["thread"] not in by_thread:
            continue
        fig.decisions[e["action"]] += 1
        row = by_thread[e["thread"]]
        want = {"rejected"} if e["action"] == "reject" else {"sent", "deferred", "failed"}
        cooled = row.status == "skipped" and row.skip_reason == "cooldown"
        if row.status not in want and not (cooled and e["action"] != "reject"):
            fig.problems.append(f"acknowledged {e['action']} of {e['thread']} ended {row}")
