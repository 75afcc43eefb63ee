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

It prints the figures and exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gtm.app.ledger import Ledger
from gtm.domain.playbook import load_playbook
from tests.crash.worker import CAMPAIGN
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts
from tools.local_outbox import LocalLinkedInOutbox
from tools.outbox import Outbox, iso_week_start

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"sent", "skipped", "rejected", "failed", "deferred", "waiting_for_approval"}
SEGMENTS = [
    ("AI coding assistant", "code review agents for monorepos"),
    ("customer support AI", "support automation for fintech help desks"),
    ("legal tech", "contract review for mid-size law firms"),
    ("healthcare AI", "ambient scribe notes for clinics"),
    ("sales intelligence", "prospecting data for outbound teams"),
    ("enterprise search", "workplace search over wikis and tickets"),
]
SIGNALS = [
    "Hiring {n} ML engineers (careers page, 2026-10)",
    "Raised a Series {r} in {m} 2026",
    "{n} sign-ups from this domain in the last 30 days",
    "Engineering blog 2026-{mm}: {topic} is their top complaint",
    "Opened GitHub issue #{n}{n} on our repo about {topic}",
]
TOPICS = ["retrieval latency", "hybrid search filters", "index freshness", "eval drift"]


def write_accounts(path: Path, n: int, rng: random.Random) -> None:
    """n accounts: mostly in tier, a few competitors and out-of-tier rows, distinct facts."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["company", "domain", "segment", "description", "contact_name", "contact_title"]
            + ["linkedin_url", "email", "signals"]
        )
        for i in range(n):
            seg, desc = SEGMENTS[i % len(SEGMENTS)]
            company, domain = f"Acct{i:03d} Labs", f"acct{i:03d}.example"
            if i % 50 == 7:
                company, domain = "Pinecone", "pinecone.io"
            if i % 40 == 11:
                seg, desc = "furniture retail", "sells sofas online"
            signals = rng.sample(SIGNALS, 2)
            facts = ";".join(
                s.format(
                    n=rng.randint(2, 9),
                    r=rng.choice("ABC"),
                    m=rng.choice(["March", "June", "September"]),
                    mm=rng.choice(["07", "08", "09"]),
                    topic=rng.choice(TOPICS),
                )
                for s in signals
            )
            first = rng.choice(["Dana", "Theo", "Priya", "Marcus", "Lena", "Omar", "Ines"])
            last = f"Person{i:03d}"
            w.writerow(
                [company, domain, seg, f"{company} builds {desc}.", f"{first} {last}"]
                + ["Head of Engineering", f"https://www.linkedin.com/in/{first}-{last}".lower()]
                + [f"{first.lower()}@{domain}", facts]
            )


@dataclass
class Figures:
    trials: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    waves: int = 0
    worker_runs: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    outbox: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)


def read_journal(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # cut short by a kill
    return out


def journal_problems(events: list[dict[str, str]]) -> list[str]:
    problems = []
    keys = Counter(e["key"] for e in events if e["ev"] == "attempt")
    problems += [f"key {k} attempted {n} times" for k, n in keys.items() if n > 1]
    pairs = Counter((e["kind"], e["url"]) for e in events if e["ev"] == "attempt")
    problems += [f"{k} to {u} attempted {n} times" for (k, u), n in pairs.items() if n > 1]
    problems += [f"approval lost: {e['thread']} asked again" for e in events if e["ev"] == "lost"]
    return problems


def run_worker(
    wave_dir: Path, accounts: Path, model_url: str, kill: str | None, delay: float | None
) -> tuple[int, float]:
    cmd = [sys.executable, "-m", "tests.crash.worker", "--data-dir", str(wave_dir / "data")]
    cmd += ["--accounts", str(accounts), "--journal", str(wave_dir / "journal.jsonl")]
    cmd += ["--model-url", model_url] + (["--kill", kill] if kill else [])
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("GTM_")}
    start = time.monotonic()
    with open(wave_dir / "worker.log", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            code = proc.wait(timeout=delay) if delay is not None else proc.wait(timeout=900)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            code = proc.wait()
    return code, time.monotonic() - start


def final_checks(wave_dir: Path, fig: Figures) -> None:
    events = read_journal(wave_dir / "journal.jsonl")
    fig.problems += journal_problems(events)
    data = wave_dir / "data"
    ledger = Ledger(data / "ledger.sqlite")
    outbox = Outbox(data / "outbox.sqlite")
    linkedin = LocalLinkedInOutbox(data / "linkedin.sqlite", sender="check")
    try:
        rows = ledger.rows(campaign=CAMPAIGN)
        fig.statuses.update(r.status for r in rows)
        entries = outbox.entries(campaign=CAMPAIGN)
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
    finally:
        ledger.close(), outbox.close(), linkedin.close()


def harness(n_accounts: int, trials: int, seed: int, workdir: Path) -> Figures:
    rng = random.Random(seed)
    fig = Figures()
    kinds = ["time", "provider_before", "provider_after", "decision", "checkpoint"]
    with ScriptedOpenAIServer(responder=write_from_facts) as model:
        wave_dir: Path | None = None
        accounts = workdir / "accounts.csv"
        write_accounts(accounts, n_accounts, rng)
        while fig.trials < trials:
            if wave_dir is None:
                fig.waves += 1
                wave_dir = workdir / f"wave{fig.waves}"
                wave_dir.mkdir(parents=True)
            kind = kinds[fig.trials % len(kinds)]
            spec, delay = None, None
            # Small kill points: each trial gets a few accounts further, so the kills spread
            # over the whole campaign (drafting, approvals, sends) rather than its start.
            if kind == "time":
                delay = rng.uniform(3.0, 9.0)
            else:
                hi = {"provider_before": 8, "provider_after": 8, "decision": 6}.get(kind, 40)
                spec = f"{kind}:{rng.randint(1, hi)}"
            code, _ = run_worker(wave_dir, accounts, model.base_url, spec, delay)
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
            code, _ = run_worker(wave_dir, accounts, model.base_url, None, None)
            fig.worker_runs += 1
            if code != 0:
                fig.problems.append(f"the final unkilled run exited {code}")
            final_checks(wave_dir, fig)
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
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args()
    import tempfile

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gtm-crash-") as tmp:
        workdir = args.workdir or Path(tmp)
        fig = harness(args.accounts, args.trials, args.seed, workdir)
    print(report(fig, time.monotonic() - start, args.accounts))
    return 1 if fig.problems or fig.trials < args.trials else 0


if __name__ == "__main__":
    raise SystemExit(main())
