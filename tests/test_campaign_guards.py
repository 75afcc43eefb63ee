"""A campaign keeps its playbook, runs in one process at a time, and says how it ended.

Through the real CLI on the embedded local stores, with the scripted model on loopback.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gtm.app.campaigns import campaign_lock
from tests.support.cli import ctrl_c_reaches_it, run_gtm
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOK = ROOT / "gtm" / "domain" / "playbook.default.yaml"
HEADER = "company,domain,segment,description,contact_name,contact_title,linkedin_url,email,signals"
ROWS = [
    "Quillcode,quillcode.dev,AI coding assistant,Builds an AI coding assistant.,Dana Ruiz,"
    "VP Engineering,https://www.linkedin.com/in/dana-ruiz,dana@quillcode.dev,Hiring 4 ML engineers",
    "Lexora,lexora.law,legal tech,Contract review for law firms.,Omar Haddad,Head of Engineering,"
    "https://www.linkedin.com/in/omar-haddad,omar@lexora.law,Raised a Series B in June 2026",
    "Pulsecare,pulsecare.health,healthcare AI,Ambient scribe for clinics.,Ines Duarte,CTO,"
    "https://www.linkedin.com/in/ines-duarte,ines@pulsecare.health,Opened a Lisbon office in 2026",
]
Gtm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with ScriptedOpenAIServer(responder=write_from_facts) as model:
        e = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
        e.update(
            GTM_DATA_DIR=str(tmp_path / "data"),
            GTM_MODEL_BASE_URL=model.base_url,
            GTM_MODEL="scripted",
            ANONYMIZED_TELEMETRY="False",
            COLUMNS="60",  # narrow: a problem line must still be one line
        )
        yield e


def gtm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_gtm(env, *args)


def _csv(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "accounts.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def _connects(tmp_path: Path) -> list[str]:
    db = sqlite3.connect(tmp_path / "data" / "outbox.sqlite")
    try:
        rows = db.execute("SELECT state FROM outbox WHERE step = 'linkedin_connect'").fetchall()
        return [r[0] for r in rows]
    finally:
        db.close()


def test_a_campaign_keeps_the_playbook_it_was_started_with(
    tmp_path: Path, env: dict[str, str]
) -> None:
    tight = tmp_path / "tight.yaml"
    tight.write_text(
        PLAYBOOK.read_text(encoding="utf-8").replace(
            "linkedin_connection_requests_per_week: 100",
            "linkedin_connection_requests_per_week: 2",
        ),
        encoding="utf-8",
    )
    csv = _csv(tmp_path, *ROWS)
    first = gtm(env, "run", str(csv), "--campaign", "c", "--playbook", str(tight))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "tight.yaml" in first.stdout

    # Approved without --playbook, all three: the campaign's cap of 2 holds, not the default's.
    for draft in ("1", "2", "3"):
        done = gtm(env, "approve", draft)
        assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(_connects(tmp_path)) == ["sent", "sent"]
    again = gtm(env, "run", str(csv), "--campaign", "c")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "kept its playbook" in again.stderr and "tight.yaml" in again.stderr
    assert sorted(_connects(tmp_path)) == ["sent", "sent"], "still deferred under the cap"

    # Naming another playbook is refused, for a run and for a decision, until it is adopted.
    other = gtm(env, "run", str(csv), "--campaign", "c", "--playbook", str(PLAYBOOK))
    assert other.returncode == 2, other.stdout + other.stderr
    assert "--adopt-playbook" in other.stderr and "differs" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    decided = gtm(env, "--playbook", str(PLAYBOOK), "reject", "3", "--reason", "x")
    assert decided.returncode == 2 and "--adopt-playbook" in decided.stderr
    adopted = gtm(
        env, "run", str(csv), "--campaign", "c", "--playbook", str(PLAYBOOK), "--adopt-playbook"
    )
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert sorted(_connects(tmp_path)) == ["sent", "sent", "sent"], "the deferred one went out"


def test_a_second_run_of_a_running_campaign_refuses(tmp_path: Path, env: dict[str, str]) -> None:
    csv = _csv(tmp_path, ROWS[0])
    with campaign_lock(tmp_path / "data", "c"):
        busy = gtm(env, "run", str(csv), "--campaign", "c")
        other = gtm(env, "run", str(csv), "--campaign", "other")
    assert busy.returncode == 5, busy.stdout + busy.stderr
    assert "campaign 'c' is already running (pid" in busy.stderr, busy.stderr
    assert "Traceback" not in busy.stderr
    assert other.returncode == 0, "another campaign is not blocked"
    after = gtm(env, "run", str(csv), "--campaign", "c")
    assert after.returncode == 0, after.stdout + after.stderr


def test_exit_status_tells_rejected_rows_from_failed_accounts(
    tmp_path: Path, env: dict[str, str]
) -> None:
    bad = "Nowhere,not a domain,legal tech,x,Ann Wu,CTO,https://www.linkedin.com/in/ann-wu,,x"
    csv = _csv(tmp_path, ROWS[0], bad)
    run = gtm(env, "run", str(csv), "--campaign", "c")
    assert run.returncode == 3, run.stdout + run.stderr
    problems = [line for line in run.stderr.splitlines() if "rejected" in line]
    assert problems == [
        f"rejected {csv.name}:3:domain: 'not a domain' is not a domain like 'example.com'"
    ], run.stderr
    env["GTM_MODEL_BASE_URL"] = f"http://127.0.0.1:{_closed_port()}/v1"
    failed = gtm(env, "run", str(_csv(tmp_path, ROWS[1])), "--campaign", "d")
    assert failed.returncode == 4, failed.stdout + failed.stderr
    assert "failed Lexora" in failed.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _SlowModel:
    """A model endpoint that answers no request until it is closed: the run is mid-account."""

    def __init__(self) -> None:
        released = self.released = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                released.wait(60)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False
        self.server.block_on_close = True  # close() waits for the held requests
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def test_ctrl_c_says_the_run_can_continue(tmp_path: Path, env: dict[str, str]) -> None:
    slow = _SlowModel()
    env["GTM_MODEL_BASE_URL"] = slow.base_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "gtm", "run", str(_csv(tmp_path, ROWS[0])), "--campaign", "c"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_reaches_it,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the campaign's header: the run is under way
        assert "campaign c" in line, line
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        slow.close()
    assert proc.returncode == 130, stderr
    assert "interrupted: run the same command again to continue where it stopped" in stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr


def test_a_data_dir_that_is_a_file_and_a_huge_draft_id_get_one_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x", encoding="utf-8")
    bad = gtm(env, "--data-dir", str(a_file), "status")
    assert bad.returncode == 2
    assert re.fullmatch(
        r"error: --data-dir: data_dir: .*not-a-dir is a file, not a directory\n", bad.stderr
    ), bad.stderr
    huge = gtm(env, "approve", "9" * 30)
    assert huge.returncode == 1 and "Traceback" not in huge.stderr, huge.stderr
    assert f"no draft with id {'9' * 30}" in huge.stderr
