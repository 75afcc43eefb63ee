"""End to end through the real CLI, the real ChatOpenAI path and real stores.

The model is a scripted OpenAI-compatible server on loopback. The batch is killed midway,
resumed, and decided from separate processes; the outbox must hold exactly one action per step
of each approved draft.
"""

from __future__ import annotations

import csv as csvlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_gtm
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "accounts.csv"


def _gtm(
    data: Path,
    *args: str,
    env: dict[str, str],
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    return run_gtm(env, "--data-dir", str(data), *args, timeout=120, check=check)


def _ledger(data: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(data / "ledger.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM threads ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # the CLI has created the file but not the table yet
        return []
    finally:
        db.close()


@pytest.fixture
def server() -> Any:
    with ScriptedOpenAIServer(responder=write_from_facts) as srv:
        yield srv


@pytest.fixture
def env(server: Any, tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    e.update(
        GTM_MODEL_BASE_URL=server.base_url,
        GTM_MODEL="scripted",
        GTM_REVIEWER="tester",
        GTM_MODEL_API_KEY="sk-e2e-secret-do-not-log",
        ANONYMIZED_TELEMETRY="False",
    )
    return e


@pytest.mark.timeout(400)
def test_killed_batch_resumes_and_approvals_send_exactly_once(
    tmp_path: Path, env: dict[str, str], server: Any
) -> None:
    data = tmp_path / "data"
    cmd = [
        sys.executable,
        "-m",
        "gtm",
        "--data-dir",
        str(data),
        "run",
        str(EXAMPLE),
        "--campaign",
        "e2e",
        "--concurrency",
        "1",
    ]
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            if (data / "ledger.sqlite").exists():
                waiting = [r for r in _ledger(data) if r["status"] == "waiting_for_approval"]
                if len(waiting) >= 3:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the batch never produced three drafts")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {r["thread_id"]: r["status"] for r in _ledger(data)}
    assert 0 < sum(s == "waiting_for_approval" for s in before.values()) < 30

    done = _gtm(data, "run", str(EXAMPLE), "--campaign", "e2e", env=env)
    assert "waiting for approval" in done.stdout
    rows = _ledger(data)
    statuses = {r["status"] for r in rows}
    assert statuses <= {"waiting_for_approval", "skipped"}, [
        (r["thread_id"], r["status"], r["detail"])
        for r in rows
        if r["status"] not in ("waiting_for_approval", "skipped")
    ]
    skipped = {r["account_id"]: r["skip_reason"] for r in rows if r["status"] == "skipped"}
    assert "out_of_tier" in skipped.values() and "competitor" in skipped.values()
    calls_after_first_full_run = len(server.requests)

    # A third run redoes nothing: no model call, same ledger.
    again = _gtm(data, "run", str(EXAMPLE), "--campaign", "e2e", env=env)
    assert len(server.requests) == calls_after_first_full_run
    assert "already done or waiting" in again.stdout

    waiting = [r for r in rows if r["status"] == "waiting_for_approval"]
    inbox = _gtm(data, "inbox", env=env)
    assert f"#{waiting[0]['id']}" in inbox.stdout and "Cited facts" in inbox.stdout

    approved = waiting[:3]
    for r in approved:
        res = _gtm(data, "approve", str(r["id"]), env=env)
        assert "sent" in res.stdout, res.stdout + res.stderr
    twice = _gtm(data, "approve", str(approved[0]["id"]), env=env, check=False)
    assert twice.returncode == 1 and "already decided" in twice.stderr

    rejected = waiting[3]
    res = _gtm(data, "reject", str(rejected["id"]), "--reason", "too soon", env=env)
    assert "rejected" in res.stdout

    db = sqlite3.connect(data / "outbox.sqlite")
    try:
        outbox = db.execute("SELECT account_id, step, state FROM outbox").fetchall()
    finally:
        db.close()
    by_account: dict[str, list[str]] = {}
    for account_id, step, state in outbox:
        assert state == "sent"
        by_account.setdefault(account_id, []).append(step)
    assert by_account == {
        r["account_id"]: ["linkedin_visit", "linkedin_connect"] for r in approved
    }, by_account

    # Every send was logged to the CRM: one activity per action, on the right company.
    crm = sqlite3.connect(data / "crm.sqlite")
    try:
        n_activities = crm.execute("SELECT COUNT(*) FROM activities").fetchone()[0]
    finally:
        crm.close()
    assert n_activities == 2 * len(approved)

    status = _gtm(data, "status", env=env)
    assert "sent" in status.stdout and "linkedin_connect" in status.stdout

    # The API key never lands in the data directory or the output.
    for path in data.rglob("*"):
        if path.is_file():
            assert b"sk-e2e-secret-do-not-log" not in path.read_bytes(), path
    assert "sk-e2e-secret" not in done.stdout + done.stderr


def test_bad_rows_are_reported_and_good_rows_still_run(tmp_path: Path, env: dict[str, str]) -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    header, good = lines[0], lines[1]
    cols = header.split(",")
    bad = good.split(",")
    bad[cols.index("email")] = "not-an-email"
    bad[cols.index("domain")] = "bad domain"
    csv = tmp_path / "list.csv"
    csv.write_text("\n".join([header, good, ",".join(bad)]) + "\n", encoding="utf-8")
    res = _gtm(tmp_path / "d", "run", str(csv), "--campaign", "bad", env=env, check=False)
    assert res.returncode == 3, "rows were rejected: the exit status says so"
    assert re.search(r"list\.csv:3:(domain|email): ", res.stderr), res.stderr
    assert "rows rejected from the file" in res.stdout
    assert len(_ledger(tmp_path / "d")) == 1


@pytest.mark.timeout(400)
def test_json_logs_one_line_per_node_step_and_status_counts_the_tokens(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """`gtm --log-format json run`: every graph node step of the campaign is one JSON line on
    stderr (no message text, no key), and `gtm status` adds up the model calls and tokens."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    csv = tmp_path / "two.csv"
    csv.write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")
    data = tmp_path / "d"
    res = _gtm(data, "--log-format", "json", "run", str(csv), "--campaign", "logs", env=env)
    steps = []
    for line in res.stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("node"):
                steps.append(record)
    threads = {s["thread"] for s in steps}
    assert len(threads) == len(_ledger(data)) >= 1
    for thread in threads:
        nodes = [s["node"] for s in steps if s["thread"] == thread]
        assert nodes[:2] == ["intake", "research"], nodes
        assert all(s["campaign"] == "logs" and s["outcome"] in ("ok", "interrupted") for s in steps)
    written = [s for s in steps if s["node"] == "personalize"]
    assert written and all(s["prompt_tokens"] > 0 for s in written)
    assert "sk-e2e-secret-do-not-log" not in res.stderr
    for person in csv_rows(csv):  # no contact's name or address in a log line
        assert person["contact_name"] not in res.stderr and person["email"] not in res.stderr
    status = _gtm(data, "status", "--campaign", "logs", env=env)
    calls = sum(s["model_calls"] for s in steps)
    assert f"model scripted: {calls} call(s)" in status.stdout, status.stdout


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csvlib.DictReader(f))
