"""An alert that cannot be delivered never stops a run; it is kept and delivered later."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.support.cli import run_gtm
from tests.support.providers import FakeSlack
from tests.test_model_failures import HEADER, ROW, Endpoint


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(
    tmp_path: Path, model: Endpoint, webhook: str, csv: Path
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    env.update(
        GTM_DATA_DIR=str(tmp_path / "data"),
        GTM_MODEL_BASE_URL=model.base_url,
        GTM_MODEL="scripted",
        GTM_SLACK_WEBHOOK_URL=webhook,
        GTM_HTTP_TIMEOUT_S="2",
        ANONYMIZED_TELEMETRY="False",
    )
    return run_gtm(env, "run", str(csv), "--campaign", "c", timeout=240)


def test_an_unreachable_slack_never_stops_a_run_and_gets_the_alert_later(tmp_path: Path) -> None:
    csv = tmp_path / "accounts.csv"
    csv.write_text(f"{HEADER}\n{ROW}\n", encoding="utf-8")
    with Endpoint() as model:
        model.mode = "html"  # the account fails, so the run raises an "error" alert
        dead = f"http://127.0.0.1:{_closed_port()}{FakeSlack.PATH}"
        first = _run(tmp_path, model, dead, csv)
        shown = first.stdout + first.stderr
        assert "Traceback" not in shown, shown
        assert "campaign c" in first.stdout and "failed Quillcode" in shown, shown
        assert "Slack did not take 1 alert(s)" in shown, shown
        assert "secretXXXX" not in shown  # the webhook's path is its secret

        with FakeSlack() as slack:
            second = _run(tmp_path, model, slack.webhook_url, csv)
            assert "Traceback" not in second.stdout + second.stderr
            # The kept alert goes first, then this run's own.
            assert len(slack.posted) == 2, slack.posted
            assert all("campaign c: 1 account(s) failed" in p for p in slack.posted)
