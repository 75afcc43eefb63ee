"""`gtm serve` as a real process on loopback: the inbox answers, Dux-Soup's secret URL takes a
post once, the scheduler takes in the drop folder on its own, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from gtm.app.accounts import load_accounts
from gtm.app.loop import ingest, local_event
from gtm.app.runner import decide, run_campaign
from gtm.app.settings import Settings
from gtm.app.workspace import ModelNotStarted, open_workspace
from gtm.cli.serve import Tick, parse_every
from gtm.domain.events import Event
from gtm.domain.models import Decision
from tests.support.cli import ctrl_c_reaches_it, run_gtm
from tests.support.openai_server import (
    ScriptedOpenAIServer,
    tool_call_response,
    write_from_facts,
)
from tests.test_sequences import HEADER, ROW, T0, URL
from tools.events import EventStore
from tools.unsubscribe import token

ROOT = Path(__file__).resolve().parents[1]
SECRET = "serve-Test_Secret-0123456789abcdefXYZ"
UNSUB_SECRET = "unsub-Test_Secret-0123456789abcdefXYZ"
ANN = "https://www.linkedin.com/in/ann-lee"


def _not_now(request: dict[str, Any]) -> dict[str, Any]:
    """The scripted model as the reply classifier: every reply says "not now"."""
    args = {"signals": ["not_now"], "evidence": [{"signal": "not_now", "quote": "not now"}]}
    return tool_call_response(request["tool_choice"]["function"]["name"], args)


def _env(model_url: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    if model_url:
        env.update(GTM_MODEL_BASE_URL=model_url, GTM_MODEL="scripted")
    env.update(
        GTM_DUXSOUP_WEBHOOK_SECRET=SECRET,
        GTM_UNSUBSCRIBE_SECRET=UNSUB_SECRET,
        ANONYMIZED_TELEMETRY="False",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def model() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(responder=_not_now) as srv:
        yield srv


@pytest.fixture
def served(
    tmp_path: Path, model: ScriptedOpenAIServer
) -> Iterator[tuple[subprocess.Popen[str], str, list[str]]]:
    """`gtm serve --port 0 --every 1s`; yields the process, its base URL and its output."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gtm", "--data-dir", str(tmp_path / "data"), "serve"]
        + ["--port", "0", "--every", "1s"],
        env=_env(model.base_url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=ctrl_c_reaches_it,
    )
    assert proc.stdout is not None
    output: list[str] = []
    base = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not base:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line)
        if m := re.search(r"(http://127\.0\.0\.1:\d+)/login\?token=[\w-]+", line):
            base = m.group(1)
    if not base:
        proc.kill()
        raise RuntimeError("gtm serve printed no sign-in link:\n" + "".join(output))
    try:
        yield proc, base, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def _dux(type_: str = "connected", event: str = "create") -> dict[str, object]:
    return {
        "userid": "117917531760586753354",
        "time": "2026-03-03T08:45:03.239Z",
        "type": type_,
        "event": event,
        "data": {"id": "id.11964767", "Profile": ANN},
    }


def _wait_ready(base: str) -> httpx.Response:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            return httpx.get(f"{base}/login", timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("gtm serve never answered")


def test_serve_runs_inbox_webhook_and_scheduler(
    served: tuple[subprocess.Popen[str], str, list[str]],
    tmp_path: Path,
    model: ScriptedOpenAIServer,
) -> None:
    proc, base, output = served
    data = tmp_path / "data"

    # (c) the inbox's sign-in page answers, and it is the token-guarded inbox
    login = _wait_ready(base)
    assert login.status_code == 200
    assert httpx.get(f"{base}/", timeout=5, follow_redirects=False).status_code in (302, 303, 401)

    # (a) a genuine post is stored once; a forged one is an unknown page and stores nothing
    genuine = f"{base}/webhooks/duxsoup/{SECRET}"
    first = httpx.post(genuine, json=_dux(), timeout=10)
    assert first.status_code == 200 and first.json()["new"] == 1, first.text
    again = httpx.post(genuine, json=_dux(), timeout=10)
    assert again.json() == {"new": 0, "duplicate": 1, "matched": 0, "unmatched": 0, "ignored": []}
    forged = httpx.post(f"{base}/webhooks/duxsoup/{SECRET[:-1]}x", json=_dux(), timeout=10)
    assert forged.status_code == 404
    assert httpx.get(genuine, timeout=10).status_code == 405  # POST only

    # the one-click unsubscribe route is served too; a token it did not sign is unknown
    assert httpx.get(f"{base}/unsubscribe/{token('k1', UNSUB_SECRET)}", timeout=10).is_success
    assert httpx.get(f"{base}/unsubscribe/{token('k1', SECRET)}", timeout=10).status_code == 404

    store = EventStore(data / "events.sqlite")
    try:
        assert [e.event.linkedin_url for e in store.events()] == [ANN]

        # (b) a file in the drop folder is taken in by the scheduler, with no command run
        reply = local_event(
            kind="email_reply",
            at=datetime.now(UTC) - timedelta(minutes=1),
            email="bob@example.com",
            text="Thanks, not now.",
        )
        incoming = data / "events" / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        (incoming / "reply.tmp").write_text(reply.model_dump_json(), encoding="utf-8")
        os.replace(incoming / "reply.tmp", incoming / "reply.json")  # appears whole
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and store.get(reply.key) is None:
            time.sleep(0.2)
        assert store.get(reply.key) is not None, "the scheduler never took the file in"
        assert (data / "events" / "done" / "reply.json").exists()
        assert not (incoming / "reply.json").exists()
        assert len(store.events()) == 2
        # (e) the reply waits for a model: the tick starts one and classifies it once
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not model.requests:
            time.sleep(0.2)
        time.sleep(2.5)  # two more ticks: the reply is not classified again
        assert len(model.requests) == 1
    finally:
        store.close()

    # (d) Ctrl-C stops it cleanly
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    text = "".join(output) + (rest or "")
    # 130 is Ctrl-C's status, as for every gtm command; the lifespan ran its shutdown first
    assert proc.returncode == 130, text
    assert re.search(r"scheduler stopped after [1-9]\d* tick", text), text
    assert "starting the model for replies and follow-ups" in text
    assert "Traceback" not in text and "Error" not in text, text
    assert SECRET not in text and UNSUB_SECRET not in text  # secrets are never printed
    assert "/webhooks/duxsoup/<GTM_DUXSOUP_WEBHOOK_SECRET>" in text


def test_every_parses_intervals() -> None:
    assert parse_every("15m") == timedelta(minutes=15)
    assert parse_every("1s") == timedelta(seconds=1)
    assert parse_every(" 2h ") == timedelta(hours=2)
    assert parse_every("1d") == timedelta(days=1)
    for bad in ("0s", "15", "m", "1.5m", "-1m", "15 minutes"):
        with pytest.raises(ValueError, match="not an interval"):
            parse_every(bad)


async def test_a_failing_tick_is_logged_and_does_not_raise(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tick = Tick(Settings(data_dir=tmp_path), mailbox=None)
    calls = 0

    async def boom() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("provider down")

    monkeypatch.setattr(tick, "once", boom)
    await tick.run()
    await tick.run()
    assert (calls, tick.ticks, tick.failures) == (2, 2, 2)
    assert "scheduled sync failed" in caplog.text and "provider down" in caplog.text


def test_serve_refuses_a_bad_interval(tmp_path: Path) -> None:
    done = run_gtm(_env(), "--data-dir", str(tmp_path), "serve", "--every", "soon", timeout=60)
    assert done.returncode != 0
    assert "--every" in done.stderr and "not an interval" in done.stderr


async def test_a_tick_starts_the_model_only_when_a_follow_up_is_due(tmp_path: Path) -> None:
    """On the embedded defaults `gtm serve` has no model until a tick has work for one: then it
    starts it (here the configured endpoint) and drafts the due follow-up, as `gtm run` would."""
    now = [T0]
    calls: list[str] = []

    def counting(request: dict[str, Any]) -> dict[str, Any]:
        calls.append(request["tool_choice"]["function"]["name"])
        return write_from_facts(request)

    csv = tmp_path / "accounts.csv"
    csv.write_text(f"{HEADER}\n{ROW}\n", encoding="utf-8")
    accounts = load_accounts(csv).accounts
    with ScriptedOpenAIServer(responder=counting) as srv:
        settings = Settings(data_dir=tmp_path / "data", model_base_url=srv.base_url, model="x")
        async with open_workspace(settings, with_model=True, clock=lambda: now[0]) as ws:
            await run_campaign(ws, accounts, campaign="fall", channel="linkedin")
            (row,) = ws.ledger.rows(campaign="fall")
            await decide(ws, row.id, Decision(action="approve", reviewer="tess", at=now[0]))
        first_touch = len(calls)
        async with open_workspace(settings, with_model=False, clock=lambda: now[0]) as rt:
            tick = Tick(settings, mailbox=None)
            async with tick.running(SimpleNamespace(rt=rt), timedelta(hours=1)):  # type: ignore[arg-type]
                now[0] = T0 + timedelta(days=3)
                await tick.once()  # nothing due (never accepted): no model started
                assert tick.rt is not None and isinstance(tick.rt.deps.model, ModelNotStarted)
                assert len(calls) == first_touch

                accepted = Event(
                    key="accepted-1",
                    source="local",
                    kind="connection_accepted",
                    channel="linkedin",
                    at=T0 + timedelta(days=1),
                    linkedin_url=URL,
                )
                assert ingest(rt, [accepted]).matched == 1
                await tick.once()  # day 3: accepted on day 1, two days to wait: due now
                assert not isinstance(tick.rt.deps.model, ModelNotStarted)
                assert len(calls) > first_touch
                (row,) = rt.ledger.rows(campaign="fall")
                assert (row.status, row.seq_pos) == ("waiting_for_approval", 1)
                drafted = len(calls)
                await tick.once()  # waiting for approval: nothing drafted twice
                assert len(calls) == drafted
                assert rt.ledger.rows(campaign="fall")[0].seq_pos == 1
