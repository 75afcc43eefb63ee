"""Red flags: fired once per (flag, week, campaign), alerted once, never on a small sample.

Real stores in a temporary data directory: the outbox, the event store (events matched by the
real `ingest_into`), `funnel.sqlite`, and the default alerts channel (`alerts.jsonl`).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from gtm.app.funnel import FunnelInputs, compute_funnel
from gtm.app.loop import ingest_into, local_event
from gtm.app.red_flags import dismiss_flag, evaluate, open_flags, raise_red_flags
from gtm.app.settings import Settings
from gtm.app.workspace import Workspace, open_workspace
from gtm.domain.identity import profile_url
from gtm.domain.models import OutboxEntry, TouchFacts
from gtm.domain.playbook import load_playbook

SENT = datetime(2026, 11, 9, 10, 0, tzinfo=UTC)  # Monday of ISO week 2026-W46
ACCEPTED = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
AS_OF = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # W46 is over; requests are 9 days old
PB = load_playbook()


class Clock:
    def __init__(self) -> None:
        self.now = SENT

    def __call__(self) -> datetime:
        return self.now


def seed(ws: Workspace, clock: Clock, *, requests: int, accepted: int) -> None:
    """`requests` connection requests on Monday of W46, the first `accepted` of them accepted."""
    clock.now = SENT
    urls = [
        profile_url(f"https://www.linkedin.com/in/person-{i:02d}") or "" for i in range(requests)
    ]
    for i, url in enumerate(urls):
        key = f"connect-{i:02d}"
        ws.deps.outbox.reserve(
            key=key, campaign="spring", account_id=f"acct-{i:02d}", contact_key=url,
            step="linkedin_connect", channel="linkedin", sender="seat-1",
            touch=TouchFacts(recipient=url, tier=1),
        )  # fmt: skip
        ws.deps.outbox.mark_sent(key, f"dux-{i}")
    events = [
        local_event(kind="connection_accepted", at=ACCEPTED, linkedin_url=url)
        for url in urls[:accepted]
    ]
    report = ingest_into(ws.events, ws.deps.outbox, events)
    assert report.matched == accepted
    clock.now = AS_OF


def alerts(data: Path) -> list[dict[str, str]]:
    path = data / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_a_red_flag_fires_exactly_once(tmp_path: Path) -> None:
    data, clock = tmp_path / "data", Clock()
    async with open_workspace(Settings(data_dir=data), with_model=False, clock=clock) as ws:
        seed(ws, clock, requests=20, accepted=2)
        fired = await raise_red_flags(ws)
        # W46: accept rate 2/20 = 10% < 15% with 20 >= min_sample 20; the week is over, 20
        # people got a connection note and 0 meetings were booked (< 1).
        assert sorted(f.flag for f in fired) == ["accept_rate_below", "meetings_per_week_below"]
        sent = alerts(data)
        assert [a["kind"] for a in sent] == ["red_flag", "red_flag"]
        accept = next(a["text"] for a in sent if "accept rate" in a["text"])
        assert "campaign spring, week of 2026-11-09 (ISO 2026-W46)" in accept
        assert "the LinkedIn accept rate is 10.0% (2 of 20 connection requests" in accept
        assert "below the red-flag threshold of 15%" in accept
        assert "(sample 20, minimum 20)" in accept
        meetings = next(a["text"] for a in sent if "meeting" in a["text"])
        assert "0 meeting(s) booked, below the red-flag threshold of 1 a week" in meetings
        assert "with 20 people messaged (sample 20, minimum 20)" in meetings

        assert await raise_red_flags(ws) == []  # the second evaluation is silent
        assert len(alerts(data)) == 2
        banner = open_flags(ws)
        assert sorted(f.flag for f in banner) == ["accept_rate_below", "meetings_per_week_below"]
        assert all(f.alerted_at is not None and f.outcome == "alerted" for f in banner)
        dismissed = dismiss_flag(ws, banner[0].id, "founder@us.io")
        assert dismissed is not None and dismissed.dismissed_at is not None
        assert [f.id for f in open_flags(ws)] == [banner[1].id]
        assert await raise_red_flags(ws) == []  # a dismissed flag does not come back
        assert len(alerts(data)) == 2
    with sqlite3.connect(data / "funnel.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM red_flags").fetchone()[0] == 2


async def test_a_sample_below_the_minimum_does_not_fire(tmp_path: Path) -> None:
    data, clock = tmp_path / "data", Clock()
    async with open_workspace(Settings(data_dir=data), with_model=False, clock=clock) as ws:
        seed(ws, clock, requests=19, accepted=1)
        # 1/19 = 5.3% is under 15%, but 19 requests are fewer than min_sample 20; 19 people
        # messaged is too few for "no meetings" as well.
        report = compute_funnel(ws, as_of=AS_OF, weeks=2)
        week = report.week("spring", SENT.date())
        assert week is not None and (week.linkedin.accept_rate.num, week.reached) == (1, 19)
        assert await raise_red_flags(ws) == []
        assert open_flags(ws) == []
    assert alerts(data) == []


def _connects(n: int, at: datetime) -> list[OutboxEntry]:
    return [
        OutboxEntry(
            key=f"c{i}",
            campaign="spring",
            account_id=f"a{i}",
            contact_key=f"p{i}",
            step="linkedin_connect",
            channel="linkedin",
            sender="seat-1",
            state="sent",
            created_at=at,
            updated_at=at,
        )  # fmt: skip
        for i in range(n)
    ]


def test_no_meetings_waits_for_the_week_to_end_and_fresh_requests_do_not_count() -> None:
    # 30 requests on Monday 11-16, as_of Wednesday 11-18: the week is not over (no "no
    # meetings" yet) and the requests are 2 days old (not in the accept rate's denominator).
    inputs = FunnelInputs.of(
        _connects(30, datetime(2026, 11, 16, 9, tzinfo=UTC)), [], {}, lambda c: PB
    )
    report = compute_funnel(inputs, as_of=AS_OF, weeks=1)
    assert report.figures[0].reached == 30 and report.figures[0].linkedin.accept_rate.den == 0
    assert evaluate(report, lambda c: PB) == []
    # A week later the same numbers fire both flags.
    later = compute_funnel(inputs, as_of=datetime(2026, 11, 25, 12, tzinfo=UTC), weeks=2)
    assert {f.flag for f in evaluate(later, lambda c: PB)} == {
        "accept_rate_below",
        "meetings_per_week_below",
    }


def test_an_unset_red_flag_is_never_evaluated() -> None:
    pb = PB.model_copy(update={"red_flags": PB.red_flags.model_copy(update={
        "accept_rate_below": None, "meetings_per_week_below": None})})  # fmt: skip
    inputs = FunnelInputs.of(
        _connects(30, datetime(2026, 11, 9, 9, tzinfo=UTC)), [], {}, lambda c: pb
    )
    assert evaluate(compute_funnel(inputs, as_of=AS_OF, weeks=2), lambda c: pb) == []
