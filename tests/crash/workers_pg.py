"""The crash harness on Postgres: several workers share one campaign, each killed at random.

    python -m tests.crash.harness --postgres-workers 3 --accounts 60 --trials 30 --seed 7

A temporary Postgres cluster on loopback holds the stores and checkpoints (`GTM_DATABASE_URL`,
as `tests.support.postgres` starts it for the tests). Each trial starts `workers` processes of
`tests.crash.worker` on one campaign and one data directory (the LinkedIn twin and the journal
are files there; each worker keeps its own memory store), every one with a random kill: from
outside after a random delay, or from inside at a provider call, a decision write or a
checkpoint write. They take the accounts through leases (`tools.pg_leases`), so a killed
worker's accounts wait out its lease and go to a live one: in this trial if one is left, in the
next trial if not. A trial counts when at least one of its workers was killed. A campaign that
finishes starts a fresh one (a new database); after the last trial, unkilled workers finish
the campaign, and the harness's checks run over the Postgres ledger and outbox: zero duplicate
sends, zero lost approvals, no account left running, the weekly caps never exceeded.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from gtm.app.pg_ledger import PgLedger
from tests.crash.common import KINDS, ROOT, Figures, journal_problems, pick_kill, read_journal
from tests.support.postgres import PostgresServer, find_bindir, start_cluster
from tools.local_outbox import LocalLinkedInOutbox
from tools.pg_migrate import upgrade
from tools.pg_outbox import PgOutbox

__all__ = ["postgres_worker_trials"]

LEASE_SECONDS = 4.0
"""Short, so a killed worker's accounts are taken over within a trial; four times the renewal
period of a live worker (a third of it) under a loaded machine."""


def _start(wave: Path, accounts: Path, model_url: str, url: str, kill: str | None, n: int) -> (
    subprocess.Popen[bytes]
):  # fmt: skip
    cmd = [sys.executable, "-m", "tests.crash.worker", "--data-dir", str(wave / "data")]
    cmd += ["--accounts", str(accounts), "--journal", str(wave / "journal.jsonl")]
    cmd += ["--model-url", model_url, "--memory-dir", str(wave / f"memory{n}")]
    cmd += ["--database-url", url, "--lease-seconds", str(LEASE_SECONDS)]
    cmd += ["--kill", kill] if kill else []
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("GTM_")}
    with open(wave / f"worker{n}.log", "ab") as log:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)


def _round(
    wave: Path,
    accounts: Path,
    model_url: str,
    url: str,
    kills: list[tuple[str | None, float | None]],
) -> list[int]:
    """Start one worker per kill spec at once; their exit codes, each killed at its deadline
    if it is still running then."""
    procs = [_start(wave, accounts, model_url, url, spec, n) for n, (spec, _) in enumerate(kills)]
    start = time.monotonic()
    deadlines = [None if d is None else start + d for _, d in kills]
    while any(p.poll() is None for p in procs):
        if time.monotonic() - start > 900:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
        for p, dl in zip(procs, deadlines, strict=True):
            if dl is not None and p.poll() is None and time.monotonic() >= dl:
                p.send_signal(signal.SIGKILL)
        time.sleep(0.05)
    return [p.wait() for p in procs]


def _checks(wave: Path, url: str, campaign: str, fig: Figures) -> None:
    """The harness's final checks (`tests.crash.harness.check_stores`) on the Postgres stores."""
    from tests.crash.harness import check_stores

    ledger, outbox = PgLedger(url), PgOutbox(url)
    linkedin = LocalLinkedInOutbox(wave / "data" / "linkedin.sqlite", sender="check")
    try:
        events = read_journal(wave / "journal.jsonl")
        check_stores(events, ledger, outbox, linkedin, campaign, fig)  # type: ignore[arg-type]
    finally:
        ledger.close()
        outbox.close()
        linkedin.close()


def postgres_worker_trials(
    trials: int,
    workers: int,
    accounts: Path,
    rng: random.Random,
    model_url: str,
    workdir: Path,
    fig: Figures,
) -> None:
    """`trials` rounds of `workers` workers on one campaign, each round with a kill."""
    from tests.crash.worker import CAMPAIGN

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL server binaries (initdb, postgres) found")
    server, proc = start_cluster(bindir)
    try:
        wave: Path | None = None
        url = ""
        while fig.trials < trials:
            if wave is None:
                fig.waves += 1
                wave = workdir / f"pgwave{fig.waves}"
                wave.mkdir(parents=True)
                url = _database(server, fig.waves)
            kills = [_pick(rng) for _ in range(workers)]
            codes = _round(wave, accounts, model_url, url, kills)
            fig.worker_runs += len(codes)
            killed = [k for k, c in zip(kills, codes, strict=True) if c == -signal.SIGKILL]
            odd = [c for c in codes if c not in (0, -signal.SIGKILL)]
            if odd:
                fig.unexpected_exits.append(f"{wave.name}: exits {codes}, see worker*.log")
                fig.problems.append(f"worker exited {odd} (not a kill, not done)")
                break
            if killed:
                fig.trials += 1
                for spec, delay in killed:
                    fig.kills[_kind(spec, delay)] += 1
                fig.problems += [
                    f"after trial {fig.trials}: {p}"
                    for p in journal_problems(read_journal(wave / "journal.jsonl"))
                ]
            if all(c == 0 for c in codes):  # every worker saw the campaign through
                _checks(wave, url, CAMPAIGN, fig)
                wave = None
        if wave is not None and not fig.unexpected_exits:
            codes = _round(wave, accounts, model_url, url, [(None, None)] * workers)
            fig.worker_runs += len(codes)
            if any(codes):
                fig.problems.append(f"the final unkilled workers exited {codes}")
            _checks(wave, url, CAMPAIGN, fig)
    finally:
        proc.send_signal(signal.SIGINT)  # postgres's fast shutdown
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(server.root, ignore_errors=True)


def _database(server: PostgresServer, n: int) -> str:
    name = f"crash{n}"
    server.execute(f"CREATE DATABASE {name}")
    url = server.url(name)
    upgrade(url)
    return url


def _pick(rng: random.Random) -> tuple[str | None, float | None]:
    return pick_kill(KINDS[rng.randrange(len(KINDS))], rng)


def _kind(spec: str | None, delay: float | None) -> str:
    return "time" if spec is None else spec.partition(":")[0]
