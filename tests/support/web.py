"""A seeded campaign and a real `gtm inbox --web` process, for the web inbox tests.

Seeding runs the real pipeline in-process (research → personalize → review → approve) against
the scripted OpenAI-compatible server, so the drafts, checkpoints and ledger are the product's.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from gtm.app.accounts import load_accounts
from gtm.app.runner import run_campaign, take_decision
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from gtm.domain.models import Channel, Decision
from tests.support.openai_server import write_from_facts

ROOT = Path(__file__).resolve().parents[2]
WEB_ACCOUNTS = ROOT / "tests" / "fixtures" / "web_accounts.csv"


BLANK_ACCOUNT = (
    "Blankpage,blankpage.dev,https://blankpage.dev,AI coding assistant,"
    "Code review bot for game studios.,Mara Olsen,CTO,https://www.linkedin.com/in/mara-olsen,"
    "mara@blankpage.dev,,Shipped a Unity plugin in 2026,no,,"
)
"""An account whose drafts always come back empty: a note its channel cannot carry."""


def write_with_one_fabrication(request: dict[str, Any]) -> dict[str, Any]:
    """`write_from_facts`, except that Briefcase Labs' (and Clausewise's) drafts claim numbers
    no fact supports, so review flags them and the inbox has offending spans to highlight, and
    Blankpage's are empty."""
    answer = write_from_facts(request)
    prompt = request["messages"][-1]["content"]
    call = answer["choices"][0]["message"]["tool_calls"][0]["function"]
    args = json.loads(call["arguments"])
    if "Company: Briefcase Labs" in prompt or "Company: Clausewise" in prompt:
        args["body"] = args["body"][:180] + " We cut review time by 90% for 500 legal teams."
    elif "Company: Blankpage" in prompt:
        args["body"] = ""
    call["arguments"] = json.dumps(args)
    return answer


def seed(data: Path, model_url: str, campaigns: list[tuple[str, Channel, Path]]) -> None:
    """Run each (campaign, channel, csv) until every draft waits for approval."""
    settings = Settings(data_dir=data, model_base_url=model_url, model="scripted")

    async def go() -> None:
        async with open_workspace(settings, with_model=True) as rt:
            for name, channel, csv in campaigns:
                listing = load_accounts(csv)
                assert not listing.errors, listing.errors
                summary = await run_campaign(
                    rt, listing.accounts, campaign=name, channel=channel, concurrency=2
                )
                assert not summary.failures, summary.failures

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result()


def take_and_die(data: str, draft_id: int, reviewer: str) -> None:
    """Record an approval the way the inbox does, then die before the graph takes it: the
    process is gone, its claim is left behind, nothing has been sent."""

    async def go() -> None:
        async with open_workspace(Settings(data_dir=Path(data)), with_model=False) as rt:
            decision = Decision(action="approve", reviewer=reviewer, at=datetime.now(UTC))
            await take_decision(rt, draft_id, decision, confirmed=True)
            os._exit(0)

    asyncio.run(go())


def web_env(model_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    env.update(
        GTM_MODEL_BASE_URL=model_url,
        GTM_MODEL="scripted",
        GTM_REVIEWER="default-reviewer",
        ANONYMIZED_TELEMETRY="False",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


class WebInboxProcess:
    """`gtm inbox --web --port 0` in a subprocess; `login_url` is the link it prints."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.data = data
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.login_url = ""
        self.base_url = ""
        self.token = ""
        self.output: list[str] = []

    def __enter__(self) -> WebInboxProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gtm", "--data-dir", str(self.data), "inbox", "--web"]
            + ["--port", "0"],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("gtm inbox --web exited:\n" + "".join(self.output))
            self.output.append(line)
            if m := re.search(r"(http://127\.0\.0\.1:\d+)/login\?token=([\w-]+)", line):
                self.base_url, self.token = m.group(1), m.group(2)
                self.login_url = m.group(0)
                break
        else:
            raise RuntimeError("no sign-in link within 60 s:\n" + "".join(self.output))
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/login", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the web inbox never answered")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            rest, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rest, _ = self.proc.communicate()
        self.output.append(rest or "")
