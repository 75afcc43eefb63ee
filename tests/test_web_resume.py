"""A web inbox killed while it applies a decision finishes the job when it starts again.

The kill lands after the graph took the approval (the pause is gone, the checkpoint is past the
approve step) and before the first provider call. The decision is durable, so the restarted
inbox must carry the thread on to its send, without waiting for a `gtm run`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gtm.app.runner import apply_decision, take_decision
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from gtm.domain.models import Decision
from tests.support.openai_server import ScriptedOpenAIServer
from tests.support.web import ROOT, WEB_ACCOUNTS, WebInboxProcess, seed, web_env

pytestmark = pytest.mark.timeout(300)


class _DiesAtSendTime:
    """The CRM, except that the send step's suppression check kills the process."""

    def __init__(self, crm: Any) -> None:
        self._crm = crm

    def __getattr__(self, name: str) -> Any:
        return getattr(self._crm, name)

    async def find_company(self, domain: str) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)


def apply_and_die_mid_send(data: str, draft_id: int) -> None:
    """Record an approval and start applying it, then die inside the send step."""

    async def go() -> None:
        async with open_workspace(Settings(data_dir=Path(data)), with_model=False) as ws:
            decision = Decision(action="approve", reviewer="Crashy", at=datetime.now(UTC))
            taken = await take_decision(ws, draft_id, decision, confirmed=True)
            ws.deps = dataclasses.replace(ws.deps, crm=_DiesAtSendTime(ws.deps.crm))
            await apply_decision(ws, taken.row)

    asyncio.run(go())


def _row(data: Path, company: str) -> sqlite3.Row:
    db = sqlite3.connect(data / "ledger.sqlite")
    db.row_factory = sqlite3.Row
    try:
        row: sqlite3.Row = db.execute(
            "SELECT * FROM threads WHERE company = ?", (company,)
        ).fetchone()
        return row
    finally:
        db.close()


def _outbox(data: Path, account_id: str) -> list[tuple[str, str]]:
    db = sqlite3.connect(data / "outbox.sqlite")
    try:
        return db.execute(
            "SELECT step, state FROM outbox WHERE account_id = ? ORDER BY step", (account_id,)
        ).fetchall()
    finally:
        db.close()


def test_an_inbox_killed_mid_send_applies_the_decision_when_it_restarts(
    tmp_path: Path, model_server: ScriptedOpenAIServer
) -> None:
    data = tmp_path / "mid-send"
    seed(data, model_server.base_url, [("crash", "linkedin", WEB_ACCOUNTS)])
    target = _row(data, "Tallyho Finance")
    env = web_env(model_server.base_url)
    code = (
        "from tests.test_web_resume import apply_and_die_mid_send; "
        f"apply_and_die_mid_send({str(data)!r}, {target['id']})"
    )
    died = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, timeout=120)
    assert died.returncode == -signal.SIGKILL
    left = _row(data, "Tallyho Finance")
    assert left["pending_decision"] is not None, "the decision was recorded"
    assert _outbox(data, target["account_id"]) == [], "and nothing was sent before the kill"

    with WebInboxProcess(data, env):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = _row(data, "Tallyho Finance")
            if row["status"] == "sent":
                break
            time.sleep(0.2)
    assert row["status"] == "sent" and row["decided_by"] == "Crashy", dict(row)
    assert row["pending_decision"] is None
    assert _outbox(data, target["account_id"]) == [
        ("linkedin_connect", "sent"),
        ("linkedin_visit", "sent"),
    ]
