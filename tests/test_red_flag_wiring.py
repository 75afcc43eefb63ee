"""Red flags are evaluated wherever what came back is taken in: at the end of `gtm run`, on each
`gtm serve` tick and on `gtm sync`; each fires (prints and alerts) once, and a failure to
evaluate or to alert never fails the pass.

Real stores in a temporary data directory with an injected clock: 20 connection requests sent
on Monday of ISO week 2026-W46, 2 accepted (10% < 15% on a sample of 20 = min_sample), and no
meeting in a week 20 people were messaged, so two flags cross when W46 is over.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from gtm.app.loop import ingest_into, local_event
from gtm.app.red_flags import open_flags, raise_red_flags
from gtm.app.runner import run_campaign
from gtm.app.settings import Settings
from gtm.app.workspace import Workspace, open_workspace
from gtm.cli.serve import Tick
from gtm.domain.identity import profile_url
from gtm.domain.models import TouchFacts
from tests.support.cli import run_gtm
from tools.alerts import AlertKind, Alerts

SENT = datetime(2026, 11, 9, 10, 0, tzinfo=UTC)  # Monday of ISO week 2026-W46
ACCEPTED = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
AS_OF = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # W46 is over; requests are 9 days old
FLAGS = ["accept_rate_below", "meetings_per_week_below"]


class Clock:
    def __init__(self) -> None:
        self.now = SENT

    def __call__(self) -> datetime:
        return self.now


def seed(
    ws: Workspace, clock: Clock, *, at: datetime = SENT, accepted_at: datetime = ACCEPTED
) -> None:
    """20 connection requests of campaign spring sent at `at`, 2 of them accepted."""
    saved, clock.now = clock.now, at
    urls = [profile_url(f"https://www.linkedin.com/in/person-{i:02d}") or "" for i in range(20)]
    for i, url in enumerate(urls):
        key = f"connect-{i:02d}"
        ws.deps.outbox.reserve(
            key=key, campaign="spring", account_id=f"acct-{i:02d}", contact_key=url,
            step="linkedin_connect", channel="linkedin", sender="seat-1",
            touch=TouchFacts(recipient=url, tier=1),
        )  # fmt: skip
        ws.deps.outbox.mark_sent(key, f"dux-{i}")
    events = [
        local_event(kind="connection_accepted", at=accepted_at, linkedin_url=url)
        for url in urls[:2]
    ]
    assert ingest_into(ws.events, ws.deps.outbox, events).matched == 2
    clock.now = saved


def alerts(data: Path) -> list[dict[str, str]]:
    path = data / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class BrokenAlerts:
    """An alert channel that raises on every alert (a misconfigured custom channel)."""

    def __init__(self) -> None:
        self.tried = 0

    async def alert(self, kind: AlertKind, text: str) -> None:
        self.tried += 1
        raise ConnectionError("alert channel down")

    async def flush(self) -> int:
        return 0

    async def check(self) -> str:
        return "broken"

    async def aclose(self) -> None:
        pass


def _with_alerts(ws: Workspace, alerts_: Alerts) -> Workspace:
    return dataclasses.replace(ws, deps=dataclasses.replace(ws.deps, alerts=alerts_))


async def test_a_run_whose_history_crosses_a_red_flag_alerts_once_across_two_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gtm.cli.campaign import _print_summary

    data, clock = tmp_path / "data", Clock()
    async with open_workspace(Settings(data_dir=data), with_model=False, clock=clock) as ws:
        seed(ws, clock)
        clock.now = AS_OF
        first = await run_campaign(ws, [], campaign="spring", channel="linkedin")
        assert sorted(f.flag for f in first.red_flags) == FLAGS
        _print_summary(first, rejected_rows=0)
        printed = [ln for ln in capsys.readouterr().out.splitlines() if "red flag" in ln]
        assert len(printed) == 2, printed
        accept = next(ln for ln in printed if "accept rate" in ln)
        assert re.match(
            r"red flag \d+: campaign spring, week of 2026-11-09 \(ISO 2026-W46\)", accept
        )
        assert "10.0% (2 of 20" in accept and "threshold of 15%" in accept

        clock.now = AS_OF + timedelta(hours=1)
        second = await run_campaign(ws, [], campaign="spring", channel="linkedin")
        assert second.red_flags == []
        _print_summary(second, rejected_rows=0)
        assert "red flag" not in capsys.readouterr().out
        assert sorted(f.flag for f in open_flags(ws)) == FLAGS  # the banner keeps them
    assert [a["kind"] for a in alerts(data)] == ["red_flag", "red_flag"]


async def test_a_serve_tick_alerts_a_crossed_red_flag_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, clock = tmp_path / "data", Clock()
    settings = Settings(data_dir=data)
    async with open_workspace(settings, with_model=False, clock=clock) as rt:
        seed(rt, clock)
        clock.now = AS_OF
        tick = Tick(settings, mailbox=None)
        async with tick.running(SimpleNamespace(rt=rt), timedelta(hours=1)):  # type: ignore[arg-type]
            await tick.once()
            first = capsys.readouterr().out
            clock.now = AS_OF + timedelta(minutes=30)
            await tick.once()
            second = capsys.readouterr().out
    lines = [ln for ln in first.splitlines() if ln.startswith("red flag ")]
    assert len(lines) == 2 and all("campaign spring, week of 2026-11-09" in ln for ln in lines)
    assert "red flag" not in second
    assert len(alerts(data)) == 2


async def test_an_alert_channel_that_fails_does_not_fail_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, clock = tmp_path / "data", Clock()
    async with open_workspace(Settings(data_dir=data), with_model=False, clock=clock) as ws:
        seed(ws, clock)
        clock.now = AS_OF
        broken = BrokenAlerts()
        summary = await run_campaign(
            _with_alerts(ws, broken), [], campaign="spring", channel="linkedin"
        )
        assert summary.red_flags == [] and broken.tried == 2  # tried, failed, nothing raised
        assert "red flag alert failed" in caplog.text
        assert sorted(f.flag for f in open_flags(ws)) == FLAGS  # kept for the banner
        assert all(f.alerted_at is None for f in open_flags(ws))

        # Once the claim lapses, a later run with a working channel alerts each, once.
        clock.now = AS_OF + timedelta(minutes=11)
        later = await run_campaign(ws, [], campaign="spring", channel="linkedin")
        assert sorted(f.flag for f in later.red_flags) == FLAGS
        again = await run_campaign(ws, [], campaign="spring", channel="linkedin")
        assert again.red_flags == []
    assert len(alerts(data)) == 2


async def test_red_flags_that_cannot_be_evaluated_do_not_fail_the_run_or_the_tick(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, clock = tmp_path / "data", Clock()
    settings = Settings(data_dir=data)
    async with open_workspace(settings, with_model=False, clock=clock) as ws:
        seed(ws, clock)
        clock.now = AS_OF
        (data / "funnel.sqlite").mkdir()  # the flag store cannot be opened
        summary = await run_campaign(ws, [], campaign="spring", channel="linkedin")
        assert summary.red_flags == [] and summary.sequences is not None
        tick = Tick(settings, mailbox=None)
        async with tick.running(SimpleNamespace(rt=ws), timedelta(hours=1)):  # type: ignore[arg-type]
            await tick.run()
        assert tick.failures == 0
    assert caplog.text.count("red flags not evaluated this time") == 2
    assert alerts(data) == []


def test_gtm_sync_alerts_a_crossed_red_flag_once(tmp_path: Path) -> None:
    """`gtm sync` (e.g. from cron, without `gtm serve`) evaluates too. A real process uses
    the real clock: the history is put in last ISO week, whose requests are 7+ days old."""
    data = tmp_path / "data"
    now = datetime.now(UTC)
    this_monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0)
    sent = this_monday.replace(microsecond=0) - timedelta(days=7) + timedelta(minutes=1)
    clock = Clock()

    async def prepare() -> None:
        async with open_workspace(Settings(data_dir=data), with_model=False, clock=clock) as ws:
            seed(ws, clock, at=sent, accepted_at=sent + timedelta(hours=1))

    import asyncio

    asyncio.run(prepare())
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    env.update(GTM_DATA_DIR=str(data), ANONYMIZED_TELEMETRY="False")

    def sync() -> str:
        done = run_gtm(env, "sync", timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    first = [ln for ln in sync().splitlines() if ln.startswith("red flag ")]
    assert len(first) == 2, first
    assert all(f"week of {sent:%Y-%m-%d}" in ln for ln in first)
    assert not [ln for ln in sync().splitlines() if ln.startswith("red flag ")]
    assert len(alerts(data)) == 2
    with sqlite3.connect(data / "funnel.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM red_flags").fetchone()[0] == 2


def test_gtm_inbox_heads_with_the_open_flags_and_gtm_flags_dismiss_closes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from typer.testing import CliRunner

    from gtm.cli import app

    data, clock = tmp_path / "data", Clock()

    async def prepare() -> list[int]:
        async with open_workspace(Settings(data_dir=data), with_model=False, clock=clock) as ws:
            seed(ws, clock)
            clock.now = AS_OF
            return [f.id for f in await raise_red_flags(ws)]

    accept_id, meetings_id = asyncio.run(prepare())
    monkeypatch.setenv("GTM_DATA_DIR", str(data))
    monkeypatch.setenv("GTM_REVIEWER", "founder@us.example")
    runner = CliRunner()
    shown = runner.invoke(app, ["inbox"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert "red flags (2 open)" in lines[0]
    accept = next(ln for ln in lines if f"│ {accept_id} " in ln)
    for cell in ("accept rate", "10.0%", "below 15%", "20", "2026-W46 (2026-11-09)", "spring"):
        assert cell in accept, (cell, accept)
    meetings = next(ln for ln in lines if f"│ {meetings_id} " in ln)
    assert "meetings a week" in meetings and "below 1" in meetings
    assert "gtm flags dismiss ID" in shown.output

    done = runner.invoke(app, ["flags", "dismiss", str(accept_id)])
    assert done.exit_code == 0, done.output
    assert f"red flag {accept_id} (accept rate, 2026-W46, campaign spring) dismissed by" in (
        " ".join(done.output.split())
    )
    with sqlite3.connect(data / "funnel.sqlite") as db:
        by = db.execute("SELECT dismissed_by FROM red_flags WHERE id = ?", (accept_id,))
        assert by.fetchone()[0] == "founder@us.example"
    again = runner.invoke(app, ["flags", "dismiss", str(accept_id)])
    assert again.exit_code == 0 and "was already dismissed at" in again.output
    listed = runner.invoke(app, ["flags", "list"], env={"COLUMNS": "200"})
    assert "meetings a week" in listed.output and "accept rate" not in listed.output
    everything = runner.invoke(app, ["flags", "list", "--all"], env={"COLUMNS": "200"})
    assert "accept rate" in everything.output
    missing = runner.invoke(app, ["flags", "dismiss", "999"])
    assert missing.exit_code == 2 and "no red flag 999" in missing.output
    after = runner.invoke(app, ["inbox"], env={"COLUMNS": "200"})
    assert "red flags (1 open)" in after.output
