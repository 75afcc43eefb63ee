"""What the crash harness's one-campaign and two-campaign trials share: the account list, the
figures, the journal's checks, and starting a worker process that may be killed."""

from __future__ import annotations

import csv
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

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"sent", "skipped", "rejected", "failed", "deferred", "waiting_for_approval"}
KINDS = ["time", "provider_before", "provider_after", "decision", "checkpoint"]
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
    pair_trials: int = 0
    """Trials that ran two campaigns at once (each one counts once in `trials`)."""
    pair_waves: int = 0
    pair_statuses: Counter[str] = field(default_factory=Counter)
    """Two-campaign accounts by status; cooldown skips split by where they were decided."""
    shared_people: int = 0
    """People on both campaigns' lists, over all two-campaign waves."""


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
    """Keys or (action, profile) pairs attempted twice, and approvals asked for again. Over two
    campaigns' journals, a profile attempted by both is a person contacted twice."""
    problems = []
    keys = Counter(e["key"] for e in events if e["ev"] == "attempt")
    problems += [f"key {k} attempted {n} times" for k, n in keys.items() if n > 1]
    pairs = Counter((e["kind"], e["url"]) for e in events if e["ev"] == "attempt")
    problems += [f"{k} to {u} attempted {n} times" for (k, u), n in pairs.items() if n > 1]
    problems += [f"approval lost: {e['thread']} asked again" for e in events if e["ev"] == "lost"]
    return problems


def pick_kill(kind: str, rng: random.Random) -> tuple[str | None, float | None]:
    """A kill spec for the worker, or a delay after which the harness kills it from outside.

    Small kill points: each trial gets a few accounts further, so the kills spread over the
    whole campaign (drafting, approvals, sends) rather than its start.
    """
    if kind == "time":
        return None, rng.uniform(3.0, 9.0)
    hi = {"provider_before": 8, "provider_after": 8, "decision": 6}.get(kind, 40)
    return f"{kind}:{rng.randint(1, hi)}", None


def start_worker(
    wave_dir: Path,
    accounts: Path,
    model_url: str,
    kill: str | None,
    *,
    campaign: str | None = None,
    latency: float = 0.0,
) -> subprocess.Popen[bytes]:
    """One worker on `wave_dir/data`. With `campaign`, it runs that campaign with its own
    journal, log and memory store, so two may share the data directory."""
    tag = f"-{campaign}" if campaign else ""
    cmd = [sys.executable, "-m", "tests.crash.worker", "--data-dir", str(wave_dir / "data")]
    cmd += ["--accounts", str(accounts), "--journal", str(wave_dir / f"journal{tag}.jsonl")]
    cmd += ["--model-url", model_url] + (["--kill", kill] if kill else [])
    if campaign:
        cmd += ["--campaign", campaign, "--memory-dir", str(wave_dir / f"memory{tag}")]
    if latency:
        cmd += ["--latency", str(latency)]
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("GTM_")}
    with open(wave_dir / f"worker{tag}.log", "ab") as log:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)


def wait_worker(proc: subprocess.Popen[bytes], deadline: float | None) -> int:
    """Its exit code; SIGKILLed first if it is still running at `deadline` (monotonic)."""
    left = 900.0 if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        return proc.wait(timeout=left)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        return proc.wait()
