"""What comes back is acted on without a separate command: `gtm sync` and `gtm run` classify
new replies and raise the playbook's escalations, once each."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from tests.support.cli import run_gtm
from tests.support.openai_server import ScriptedOpenAIServer, tool_call_response, write_from_facts

HEADER = "company,domain,segment,description,contact_name,contact_title,linkedin_url,email,signals"
ROW = (
    "Lexora,lexora.law,legal tech,Contract review for mid-size law firms.,Omar Haddad,"
    "Head of Engineering,https://www.linkedin.com/in/omar-haddad,omar@lexora.law,"
    "Raised a Series B in June 2026"
)
REPLY = "Thanks Alex. Happy to talk: let's book a call next Tuesday afternoon."


def _model(request: dict[str, Any]) -> dict[str, Any]:
    """The writer as usual; the reply reader sees a meeting request and quotes it."""
    name = request["tool_choice"]["function"]["name"]
    if name != "ReplyAnswer":
        return write_from_facts(request)
    quote = "let's book a call next Tuesday afternoon"
    assert quote in request["messages"][-1]["content"]
    return tool_call_response(
        name,
        {
            "signals": ["meeting_request", "interested"],
            "evidence": [
                {"signal": "meeting_request", "quote": quote},
                {"signal": "interested", "quote": "Happy to talk"},
            ],
        },
    )


def test_a_meeting_request_that_comes_back_becomes_a_crm_task_on_sync(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(responder=_model) as model:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
        env.update(
            GTM_DATA_DIR=str(tmp_path / "data"),
            GTM_MODEL_BASE_URL=model.base_url,
            GTM_MODEL="scripted",
            ANONYMIZED_TELEMETRY="False",
        )

        def gtm(*args: str) -> subprocess.CompletedProcess[str]:
            done = run_gtm(env, *args)
            assert done.returncode == 0, done.stdout + done.stderr
            return done

        csv = tmp_path / "accounts.csv"
        csv.write_text(f"{HEADER}\n{ROW}\n", encoding="utf-8")
        gtm("run", str(csv), "--campaign", "c")
        assert "→ sent" in gtm("approve", "1").stdout
        gtm(
            "events", "add", "--kind", "message_received",
            "--linkedin", "https://de.linkedin.com/in/Omar-Haddad/", "--text", REPLY,
        )  # fmt: skip
        synced = gtm("sync")
        assert re.search(r"escalations: [1-9]\d* new from 1 event", synced.stdout), synced.stdout
        again = gtm("sync")  # each event is acted on once
        assert "escalations: 0 new from 0 event" in again.stdout, again.stdout

    db = sqlite3.connect(tmp_path / "data" / "crm.sqlite")
    try:
        tasks = db.execute("SELECT title, due_at FROM tasks").fetchall()
    finally:
        db.close()
    assert len(tasks) == 1, tasks
    listed = run_gtm({**env, "COLUMNS": "250"}, "escalations", "list", timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "meeting request" in listed.stdout and "Omar Haddad" in listed.stdout, listed.stdout
