"""Several `gtm run` workers on one campaign, with GTM_DATABASE_URL: they split its accounts
through leases in Postgres, each account drafted once, and a killed worker's accounts are
finished by the others once its leases run out.

The real CLI in child processes, against the temporary Postgres cluster and the scripted model
server. Each worker asks for a model of its own name, so every model call says which worker
made it and for which company (the prompt names it): an account worked twice would show calls
from two workers. (How many calls an account takes depends on what the worker's memory holds:
drafts too like earlier ones are rewritten, and each data directory has its own memory; so
the calls are compared worker by worker, not with another run's count.)
"""

from __future__ import annotations

import csv as csvlib
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from gtm.app.workers import END_OF_RUN
from tests.support.cli import ROOT, example_list, scripted_env
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts
from tests.support.postgres import PostgresServer, postgres_server  # noqa: F401

LATENCY = 0.15
"""Seconds per model answer, so the workers' runs overlap (the server answers one at a time)."""


def _slow(request: dict[str, Any]) -> dict[str, Any]:
    time.sleep(LATENCY)
    return write_from_facts(request)


def _env(model: ScriptedOpenAIServer, url: str, worker: str) -> dict[str, str]:
    return scripted_env(
        model.base_url, "sk-workers-test", model=f"scripted-{worker}", GTM_DATABASE_URL=url
    )


def _calls(model: ScriptedOpenAIServer) -> Counter[tuple[str, str]]:
    """Model calls by (company named in the prompt, worker that asked)."""
    got: Counter[tuple[str, str]] = Counter()
    for req in list(model.requests):
        found = re.search(r"Company: (.+)", str(req["messages"][-1]["content"]))
        got[(found.group(1).strip() if found else "(none)", req["model"])] += 1
    return got


def _workers_by_company(calls: Counter[tuple[str, str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for company, worker in calls:
        out.setdefault(company, set()).add(worker)
    return out


def _domains(csv: Path) -> set[str]:
    with csv.open(encoding="utf-8", newline="") as f:
        return {row["domain"].strip().lower() for row in csvlib.DictReader(f)}


def _threads(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM threads ORDER BY id").fetchall()


def _leases(url: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT * FROM account_leases WHERE campaign = 'team'").fetchall()
    return {r["account_id"]: r for r in rows}


def _start(env: dict[str, str], data: Path, csv: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gtm", "--data-dir", str(data), "run", str(csv)]
        + ["--campaign", "team", "--concurrency", "2", *extra],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout + stderr
    return stdout


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return example_list(tmp_path_factory.mktemp("list"))


@pytest.mark.timeout(600)
def test_three_workers_split_a_campaign_and_draft_every_account_once(
    postgres_server: PostgresServer,  # noqa: F811
    csv: Path,
    tmp_path: Path,
) -> None:
    url = postgres_server.new_database()
    try:
        with ScriptedOpenAIServer(responder=_slow) as model:
            # Three machines' worth: each its own data directory, one database.
            procs = [
                _start(_env(model, url, f"w{i}"), tmp_path / f"data{i}", csv) for i in range(3)
            ]
            outs = [_finish(p) for p in procs]
            calls = _calls(model)
        by_company = _workers_by_company(calls)
        assert len(by_company) >= 10 and all(len(w) == 1 for w in by_company.values()), by_company
        assert len({w for ws in by_company.values() for w in ws}) >= 2  # the work was shared
        threads = _threads(url)
        assert {t["account_id"] for t in threads} == _domains(csv)  # every account, once:
        assert len({t["thread_id"] for t in threads}) == len(threads)
        assert "running" not in {t["status"] for t in threads}
        worked = [int(re.search(r"worked (\d+) lease", o).group(1)) for o in outs]  # type: ignore[union-attr]
        leases = _leases(url)
        accounts = {t["account_id"] for t in threads}
        assert set(leases) == accounts | {END_OF_RUN}
        assert all(r["taken_from"] is None for r in leases.values())  # nobody was taken over
        # Each lease taken once, but for a worker that started after another had finished an
        # account: it looks at it again (no model call, as above), as a second run would.
        assert sum(worked) >= len(leases)
        assert sum(1 for n in worked if n) >= 2, worked
        assert all(r["worker"] is None and r["done_at"] for r in leases.values())
    finally:
        postgres_server.drop(url)


@pytest.mark.timeout(600)
def test_a_killed_workers_accounts_are_finished_by_the_others(
    postgres_server: PostgresServer,  # noqa: F811
    csv: Path,
    tmp_path: Path,
) -> None:
    url = postgres_server.new_database()
    try:
        with ScriptedOpenAIServer(responder=_slow) as model:
            victim = _start(
                _env(model, url, "victim"), tmp_path / "victim", csv, "--lease-seconds", "3"
            )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                states = Counter(t["status"] for t in _threads(url))
                if states["waiting_for_approval"] >= 2 and states["running"]:
                    break
                time.sleep(0.05)
            else:
                pytest.fail(f"the first worker never got going: {victim.communicate()}")
            victim.send_signal(signal.SIGKILL)
            victim.communicate(timeout=30)  # reaped, its pipes closed
            held = {a for a, r in _leases(url).items() if r["worker"] is not None}
            (victim_id,) = {r["worker"] for r in _leases(url).values() if r["worker"]}
            assert 1 <= len(held) <= 2  # its lanes' accounts, left in the middle
            finished = {
                t["company"] for t in _threads(url) if t["status"] == "waiting_for_approval"
            }
            before = _calls(model)
            others = [
                _start(
                    _env(model, url, f"w{i}"), tmp_path / f"data{i}", csv, "--lease-seconds", "3"
                )
                for i in range(2)
            ]
            outs = [_finish(p) for p in others]
            after = _calls(model)
        threads = _threads(url)
        assert {t["account_id"] for t in threads} == _domains(csv)
        assert "running" not in {t["status"] for t in threads}
        leases = _leases(url)
        assert {a for a, r in leases.items() if r["taken_from"] is not None} == held
        assert {leases[a]["taken_from"] for a in held} == {victim_id}
        over = [int(re.search(r"\((\d+) taken over from", o).group(1)) for o in outs]  # type: ignore[union-attr]
        assert sum(over) == len(held)
        for company in finished:  # drafted before the kill: no model call again
            assert {k: n for k, n in after.items() if k[0] == company} == {
                k: n for k, n in before.items() if k[0] == company
            }, company
        by_company = _workers_by_company(after)
        assert all(len(w - {"scripted-victim"}) <= 1 for w in by_company.values()), by_company
        redone = {c for c, w in by_company.items() if len(w) > 1}  # the victim's, then another's
        assert redone <= {t["company"] for t in threads if t["account_id"] in held}, redone
    finally:
        postgres_server.drop(url)
