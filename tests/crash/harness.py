"""Crash harness: SIGKILL a 200-account campaign at random points, resume, and count.

    python -m tests.crash.harness --accounts 200 --trials 50 --seed 7

Each trial starts `tests.crash.worker` (the real runtime on the local channels, a scripted model
on loopback) and kills it with SIGKILL: from outside after a random delay, or from inside at a
random provider call (before or after the channel acts), decision write or checkpoint write.
The next trial resumes the same data directory. When a campaign finishes before the trials run
out, the next trials start a fresh one. After the last trial one unkilled run finishes the
campaign, and the harness checks, over every campaign:

- zero duplicate sends: no idempotency key, and no (action, profile), attempted twice;
- zero lost approvals: no acknowledged decision asked for again, and every acknowledged approval
  ends sent, deferred by a cap, or `unknown` for a human (never silently dropped);
- every account ends in a terminal state or waiting; no weekly cap is exceeded;
- every failed account is explained by an `unknown` outbox action (a kill between call and record).

A fifth of the trials (`--pairs`) then run two campaigns at once: two workers on one data
directory over overlapping account lists, each killed at random (`tests.crash.pairs`). On top of
the checks above, no person may be reached by both campaigns: the cooldown between campaigns
holds when their approvals are applied at the same moment in two processes.

Then `--loop-trials` more trials kill a small campaign in its later steps: events coming back
(accepts, replies, opt-outs, re-deliveries), the escalation pass, follow-ups due days later on a
simulated clock and their approvals (`tests.crash.loop`); its checks add no follow-up after a
stop or before its wait, and every event stored once.

With `--postgres-workers N` it runs instead the trials of `tests.crash.workers_pg`: N workers
on one campaign whose stores are in a temporary Postgres cluster, each killed at random, the
same checks at the end of each campaign.

It prints the figures and exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import random
import signal
import time
from collections import Counter
from pathlib import Path

from gtm.app.ledger import Ledger
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
from tests.crash.loop import LoopFigures, loop_report, loop_trials
from tests.crash.pairs import pair_trials
from tests.crash.worker import CAMPAIGN
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts
from tools.local_outbox import LocalLinkedInOutbox
from tools.outbox import Outbox, iso_week_start

__all__ = ["harness", "write_accounts"]


def run_worker(
    wave_dir: Path, accounts: Path, model_url: str, kill: str | None, delay: float | None
) -> int:
    proc = start_worker(wave_dir, accounts, model_url, kill)
    return wait_worker(proc, None if delay is None else time.monotonic() + delay)


def final_checks(wave_dir: Path, fig: Figures) -> None:
    events = read_journal(wave_dir / "journal.jsonl")
    data = wave_dir / "data"
    ledger = Ledger(data / "ledger.sqlite")
    outbox = Outbox(data / "outbox.sqlite")
    linkedin = LocalLinkedInOutbox(data / "linkedin.sqlite", sender="check")
    try:
        check_stores(events, ledger, outbox, linkedin, CAMPAIGN, fig)
    finally:
        ledger.close()
        outbox.close()
        linkedin.close()


def check_stores(
    events: list[dict[str, str]],
    ledger: Ledger,
    outbox: Outbox,
    linkedin: LocalLinkedInOutbox,
    campaign: str,
    fig: Figures,
) -> None:
    """A finished campaign's checks over its journal and stores (SQLite or Postgres alike)."""
    fig.problems += journal_problems(events)
    rows = ledger.rows(campaign=campaign)
    fig.statuses.update(r.status for r in rows)
    entries = outbox.entries(campaign=campaign)
    fig.outbox.update(e.state for e in entries)
    unknown_accounts = {e.account_id for e in entries if e.state == "unknown"}
    by_thread = {r.thread_id: r for r in rows}
    for r in rows:
        if r.status not in TERMINAL:
            fig.problems.append(f"{r.thread_id} ended {r.status!r}")
        if r.status == "failed" and r.account_id not in unknown_accounts:
            fig.problems.append(f"{r.thread_id} failed without an unknown action: {r.detail}")
    for e in events:
        if e["ev"] != "acked":
            continue
        fig.decisions[e["action"]] += 1
        row = by_thread.get(e["thread"])
        want = {"reject": {"rejected"}}.get(e["action"], {"sent", "deferred", "failed"})
        if row is None or row.status not in want:
            fig.problems.append(f"acknowledged {e['action']} of {e['thread']} ended {row}")
    actions = linkedin.actions()
    fig.actions.update(a.kind for a in actions)
    pairs = Counter((a.kind, a.profile_url) for a in actions)
    fig.problems += [f"{k} to {u} performed {n} times" for (k, u), n in pairs.items() if n > 1]
    caps = load_playbook().caps
    week = iso_week_start(outbox.entries()[0].created_at) if entries else None
    if week is not None:
        for step, cap in (
            ("linkedin_connect", caps.linkedin_connection_requests_per_week),
            ("linkedin_visit", caps.linkedin_profile_visits_per_week),
        ):
            used = sum(1 for e in entries if e.step == step and e.state != "failed")
            if used > cap:
                fig.problems.append(f"{step}: {used} over the weekly cap {cap}")


def harness(
    n_accounts: int,
    trials: int,
    seed: int,
    workdir: Path,
    *,
    pairs: int = 0,
    pair_accounts: int = 20,
) -> Figures:
    """`trials - pairs` kills of one campaign, then `pairs` trials of two campaigns at once."""
    rng = random.Random(seed)
    fig = Figures()
    single = trials - pairs
    with ScriptedOpenAIServer(responder=write_from_facts) as model:
        wave_dir: Path | None = None
        accounts = workdir / "accounts.csv"
        write_accounts(accounts, n_accounts, rng)
        while fig.trials < single:
            if wave_dir is None:
                fig.waves += 1
                wave_dir = workdir / f"wave{fig.waves}"
                wave_dir.mkdir(parents=True)
            kind = KINDS[fig.trials % len(KINDS)]
            spec, delay = pick_kill(kind, rng)
            code = run_worker(wave_dir, accounts, model.base_url, spec, delay)
            fig.worker_runs += 1
            if code == -signal.SIGKILL:
                fig.trials += 1
                fig.kills[kind] += 1
                fig.problems += [
                    f"after trial {fig.trials}: {p}"
                    for p in journal_problems(read_journal(wave_dir / "journal.jsonl"))
                ]
            elif code == 0:  # the campaign finished before this kill point came
                final_checks(wave_dir, fig)
                wave_dir = None
            else:
                fig.unexpected_exits.append(f"{wave_dir.name}: exit {code}, see worker.log")
                fig.problems.append(f"worker exited {code} (not a kill, not done)")
                break
        if wave_dir is not None:
            code = run_worker(wave_dir, accounts, model.base_url, None, None)
            fig.worker_runs += 1
            if code != 0:
                fig.problems.append(f"the final unkilled run exited {code}")
            final_checks(wave_dir, fig)
        if pairs and not fig.unexpected_exits:
            pair_trials(pairs, pair_accounts, rng, model.base_url, workdir, fig)
    return fig


def report(fig: Figures, elapsed: float, n_accounts: int) -> str:
    lines = [
        f"crash harness: {fig.trials} SIGKILL trials over {fig.waves} campaign(s) of "
        f"{n_accounts} accounts, {fig.worker_runs} worker runs, {elapsed:.0f} s",
        "  kills by point: " + ", ".join(f"{k} {v}" for k, v in sorted(fig.kills.items())),
        "  accounts by status: " + ", ".join(f"{k} {v}" for k, v in sorted(fig.statuses.items())),
        "  decisions acknowledged: "
        + ", ".join(f"{k} {v}" for k, v in sorted(fig.decisions.items())),
        "  LinkedIn actions performed: "
        + ", ".join(f"{k} {v}" for k, v in sorted(fig.actions.items())),
        "  outbox: " + ", ".join(f"{k} {v}" for k, v in sorted(fig.outbox.items())),
    ]
    if fig.pair_trials:
        lines += [
            f"  two campaigns at once: {fig.pair_trials} trials over {fig.pair_waves} wave(s), "
            f"{fig.shared_people} people on both lists",
            "  two-campaign accounts by status: "
            + ", ".join(f"{k} {v}" for k, v in sorted(fig.pair_statuses.items())),
            f"  people contacted by both campaigns: {sum('both' in p for p in fig.problems)}",
        ]
    lines += [
        f"  duplicate sends: {sum('attempted' in p or 'performed' in p for p in fig.problems)}",
        f"  lost approvals: {sum('lost' in p or 'acknowledged' in p for p in fig.problems)}",
        f"  problems: {len(fig.problems)}",
    ]
    lines += [f"    {p}" for p in fig.problems[:20]]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accounts", type=int, default=200)
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--pairs",
        type=int,
        default=None,
        help="how many of the trials run two campaigns at once (default: a fifth)",
    )
    p.add_argument(
        "--pair-accounts",
        type=int,
        default=None,
        help="accounts behind the two campaigns' overlapping lists (default: a tenth, >= 12)",
    )
    p.add_argument(
        "--loop-trials",
        type=int,
        default=9,
        help="extra trials killing the later steps of a sequence and event ingestion",
    )
    p.add_argument("--loop-accounts", type=int, default=12)
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument(
        "--postgres-workers",
        type=int,
        default=0,
        help="run N workers on one campaign on Postgres, killed at random (and nothing else)",
    )
    args = p.parse_args()
    if args.postgres_workers:
        return postgres_main(args)
    pairs = args.trials // 5 if args.pairs is None else min(args.pairs, args.trials)
    pair_accounts = args.pair_accounts or max(12, args.accounts // 10)
    import tempfile

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gtm-crash-") as tmp:
        workdir = args.workdir or Path(tmp)
        fig = harness(
            args.accounts,
            args.trials,
            args.seed,
            workdir,
            pairs=pairs,
            pair_accounts=pair_accounts,
        )
        elapsed = time.monotonic() - start
        loop = LoopFigures()
        if args.loop_trials and not fig.unexpected_exits:
            loop_trials(
                args.loop_trials,
                args.loop_accounts,
                random.Random(args.seed),
                workdir / "loop",
                loop,
            )
    print(report(fig, elapsed, args.accounts))
    print("\n".join(loop_report(loop)))
    print(f"  wall time, all phases: {time.monotonic() - start:.0f} s")
    failed = fig.problems or fig.trials < args.trials
    return 1 if failed or loop.problems or loop.trials < args.loop_trials else 0


def postgres_main(args: argparse.Namespace) -> int:
    """`--postgres-workers N`: the trials of `tests.crash.workers_pg` and their figures."""
    import tempfile

    from tests.crash.workers_pg import postgres_worker_trials

    start = time.monotonic()
    rng = random.Random(args.seed)
    fig = Figures()
    with tempfile.TemporaryDirectory(prefix="gtm-crash-pg-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        accounts = workdir / "accounts.csv"
        write_accounts(accounts, args.accounts, rng)
        with ScriptedOpenAIServer(responder=write_from_facts) as model:
            postgres_worker_trials(
                args.trials, args.postgres_workers, accounts, rng, model.base_url, workdir, fig
            )
    print(report(fig, time.monotonic() - start, args.accounts))
    print(f"  on Postgres, {args.postgres_workers} workers per trial, each killed at random")
    return 1 if fig.problems or fig.trials < args.trials else 0


if __name__ == "__main__":
    raise SystemExit(main())
