"""The funnel, counted from a seeded history whose every number is worked out by hand below.

Reported: three ISO weeks to as_of = Wed 2026-11-18 12:00 UTC, so W1 = Mon 11-02, W2 = Mon
11-09, W3 = Mon 11-16 (not complete). Windows: accept 7 days, response 7 days, so a request
counts in the accept rate only if sent by 11-11 12:00, a message or email likewise.

Campaign alpha (LinkedIn), people A1..A7:
  A1 visit 11-02, request 11-03, accepted 11-04, message 11-06, replies 11-09 (interested) and
     11-10 (question), meeting 11-10, opportunity 11-17
  A2 visit 11-02, request 11-03, accepted 11-05, message 11-07, reply 11-08 classified only
     out_of_office (an auto-reply: never a reply)
  A3 request 11-03, accepted 11-12, message 11-16
  A4 request 11-03, accepted 11-19 (after as_of: ignored)
  A5 request 11-12 (too fresh for the accept rate), accepted 11-13
  A6 request 11-10, reply to the note 11-11 (not classified yet)
  A7 request 11-17, accepted 11-17
  A0 request 10-27 (before W1), accepted 10-28 (before W1: ignored)
  plus one message_received matched to no touch (unmatched)
Campaign beta (email), people E1..E5:
  E1 email 11-03, reply 11-05 (meeting_request), meeting 11-06
  E2 email 11-03, bounce 11-03
  E3 email 11-04, auto_reply 11-04
  E4 email 11-04, follow-up 11-10, reply to it 11-12 (not_interested)
  E5 email 11-16, reply 11-17 (not classified yet)
Campaign gamma: one visit 11-16, nothing back. Campaign delta: nothing at all.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gtm.app.escalations import open_store
from gtm.app.funnel import NO_DATA, FunnelInputs, compute_funnel
from gtm.app.funnel_model import Filters, FunnelReport, Rate, wilson
from gtm.app.funnel_specificity import genericness_bucket, variant_verdict
from gtm.app.loop import ingest_into, local_event
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from gtm.domain.events import Event, EventKind
from gtm.domain.models import OutboxEntry, Step, TouchFacts
from gtm.domain.playbook import Goals, load_playbook
from tools.events import StoredEvent

AS_OF = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
W1, W2, W3 = date(2026, 11, 2), date(2026, 11, 9), date(2026, 11, 16)
PB = load_playbook()
# beta's playbook sets no accept_rate goal and no opportunities goal: neither may be shown.
PB_BETA = PB.model_copy(
    update={"goals": Goals(response_rate=0.2, meetings_per_week=5, email_responses_per_week=20)}
)


def at(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2026, month, day, hour, 0, tzinfo=UTC)


def sent(
    key: str, campaign: str, who: str, step: Step, when: datetime, *, position: int = 0,
    tier: int | None = None, pv: str | None = None, gen: float | None = None,
    vd: Any = None,
) -> OutboxEntry:  # fmt: skip
    channel = "email" if step == "email" else "linkedin"
    return OutboxEntry(
        key=key, campaign=campaign, account_id=f"acct-{who}", contact_key=f"{who}@x.io",
        step=step, channel=channel, sender="seat-1", state="sent", provider_id=f"<{key}>",
        created_at=when - timedelta(minutes=1), updated_at=when,
        touch=TouchFacts(position=position, tier=tier, prompt_version=pv, genericness=gen,
                         verdict=vd),
    )  # fmt: skip


def event(key: str, kind: EventKind, when: datetime, outbox_key: str | None) -> StoredEvent:
    channel = "email" if kind in ("email_reply", "auto_reply", "bounce") else "linkedin"
    ev = Event(key=key, source="local", kind=kind, channel=channel, at=when)
    return StoredEvent(ev, None, outbox_key, when)


def history() -> FunnelInputs:
    n1: dict[str, Any] = {"tier": 1, "pv": "note@1"}
    touches = [
        sent("a0c", "alpha", "a0", "linkedin_connect", at(10, 27), **n1),
        sent("a1v", "alpha", "a1", "linkedin_visit", at(11, 2), tier=1),
        sent("a2v", "alpha", "a2", "linkedin_visit", at(11, 2), tier=1),
        sent("a1c", "alpha", "a1", "linkedin_connect", at(11, 3), gen=0.3, vd="findings", **n1),
        sent("a2c", "alpha", "a2", "linkedin_connect", at(11, 3)),  # written before facts
        sent("a3c", "alpha", "a3", "linkedin_connect", at(11, 3)),
        sent("a4c", "alpha", "a4", "linkedin_connect", at(11, 3), gen=0.8, vd="findings", **n1),
        sent("a5c", "alpha", "a5", "linkedin_connect", at(11, 12), **n1),
        sent("a6c", "alpha", "a6", "linkedin_connect", at(11, 10), gen=0.3, vd="clean", **n1),
        sent("a7c", "alpha", "a7", "linkedin_connect", at(11, 17), **n1),
        sent("a1m", "alpha", "a1", "linkedin_message", at(11, 6), tier=1, pv="message@2",
             gen=0.1, vd="clean"),
        sent("a2m", "alpha", "a2", "linkedin_message", at(11, 7), tier=1, pv="message@2",
             gen=0.15, vd="findings"),
        sent("a3m", "alpha", "a3", "linkedin_message", at(11, 16), tier=1, pv="message@2"),
        sent("e1", "beta", "e1", "email", at(11, 3), tier=2, pv="email@1", gen=0.5, vd="clean"),
        sent("e2", "beta", "e2", "email", at(11, 3), tier=2, pv="email@1", gen=0.2),
        sent("e3", "beta", "e3", "email", at(11, 4), tier=2, pv="email@1", gen=0.45,
             vd="clean"),
        sent("e4", "beta", "e4", "email", at(11, 4), tier=2, pv="email@1", gen=0.45,
             vd="findings"),
        sent("e4f", "beta", "e4", "email", at(11, 10), position=1, tier=2, pv="email@1",
             gen=0.55, vd="clean"),
        sent("e5", "beta", "e5", "email", at(11, 16), tier=2, pv="email@1"),
        sent("g1v", "gamma", "g1", "linkedin_visit", at(11, 16)),
    ]  # fmt: skip
    events = [
        event("x0", "connection_accepted", at(10, 28), "a0c"),  # before W1: ignored
        event("x1", "connection_accepted", at(11, 4), "a1c"),
        event("x2", "connection_accepted", at(11, 5), "a2c"),
        event("x3", "message_received", at(11, 8), "a2m"),  # out_of_office only
        event("x4", "message_received", at(11, 9), "a1m"),
        event("x5", "message_received", at(11, 10), "a1m"),
        event("x6", "meeting_booked", at(11, 10, 15), "a1m"),
        event("x7", "message_received", at(11, 10, 16), None),  # unmatched
        event("x8", "message_received", at(11, 11), "a6c"),
        event("x9", "connection_accepted", at(11, 12), "a3c"),
        event("x10", "connection_accepted", at(11, 13), "a5c"),
        event("x11", "connection_accepted", at(11, 17), "a7c"),
        event("x12", "opportunity", at(11, 17), "a1m"),
        event("x13", "connection_accepted", at(11, 19), "a4c"),  # after as_of: ignored
        event("y1", "bounce", at(11, 3, 11), "e2"),
        event("y2", "auto_reply", at(11, 4, 11), "e3"),
        event("y3", "email_reply", at(11, 5), "e1"),
        event("y4", "meeting_booked", at(11, 6), "e1"),
        event("y5", "email_reply", at(11, 12), "e4f"),
        event("y6", "email_reply", at(11, 17), "e5"),
    ]
    signals = {
        "x3": ("out_of_office",),
        "x4": ("interested",),
        "x5": ("question",),
        "y3": ("meeting_request",),
        "y5": ("not_interested",),
    }  # x8 and y6 are not classified yet
    books = {"beta": PB_BETA}
    return FunnelInputs.of(touches, events, signals, lambda c: books.get(c, PB), ("delta",))


@pytest.fixture(scope="module")
def report() -> FunnelReport:
    return compute_funnel(history(), as_of=AS_OF, weeks=3)


def _week(r: FunnelReport, campaign: str, week: date) -> Any:
    f = r.week(campaign, week)
    assert f is not None, (campaign, week)
    return f


def test_weeks_campaigns_and_what_is_not_counted(report: FunnelReport) -> None:
    assert report.weeks == (W1, W2, W3)
    assert report.campaigns == ("alpha", "beta", "delta", "gamma")
    assert [f.complete for f in report.figures if f.campaign == "alpha"] == [True, True, False]
    assert report.unmatched_events == 1  # x7
    assert report.ignored_events == 2  # x0 (10-28) and x13 (11-19)
    assert "delta: no data yet: nothing sent in these weeks" in report.notes
    assert "gamma: nothing came back yet (no events in these weeks)" in report.notes


def test_linkedin_stages_count_people_per_week(report: FunnelReport) -> None:
    w1, w2, w3 = (_week(report, "alpha", w).linkedin for w in (W1, W2, W3))
    # W1: visits A1, A2; requests A1..A4; accepted A1 (11-04), A2 (11-05); messaged A1, A2;
    # A2's reply is out_of_office only -> 0 replies, 1 auto-reply.
    assert (w1.visited, w1.requested, w1.accepted, w1.messaged) == (2, 4, 2, 2)
    assert (w1.replied, w1.auto_replies, w1.positive) == (0, 1, 0)
    # W2: requests A6 (11-10), A5 (11-12); accepted A3 (11-12), A5 (11-13); replies: A1 twice
    # (one person) and A6 (unclassified); positive A1 (interested); meeting A1.
    assert (w2.visited, w2.requested, w2.accepted, w2.messaged) == (0, 2, 2, 0)
    assert (w2.replied, w2.positive, w2.unclassified, w2.meetings) == (2, 1, 1, 1)
    # W3: request A7, accepted A7 (A4's 11-19 accept is after as_of), message A3, opp A1.
    assert (w3.requested, w3.accepted, w3.messaged, w3.opportunities) == (1, 1, 1, 1)
    assert w3.replied == 0


def test_accept_rate_counts_only_requests_old_enough(report: FunnelReport) -> None:
    w1, w2, w3 = (_week(report, "alpha", w).linkedin for w in (W1, W2, W3))
    # W1 cohort: A1..A4 (11-03, older than 7 days); accepted by as_of: A1, A2, A3 (A4 only
    # after as_of) -> 3/4.
    assert w1.accept_rate == Rate(3, 4) and w1.accept_rate.value == 0.75
    # W2: A6 (11-10 10:00 <= 11-11 12:00) is in; A5 (11-12) is too fresh -> 0/1.
    assert w2.accept_rate == Rate(0, 1)
    # W3: A7 too fresh -> 0/0, no value, no division by zero.
    assert w3.accept_rate == Rate(0, 0) and w3.accept_rate.value is None


def test_linkedin_response_rate_skips_auto_replies_and_fresh_messages(
    report: FunnelReport,
) -> None:
    w1, w3 = _week(report, "alpha", W1).linkedin, _week(report, "alpha", W3).linkedin
    # W1 cohort: A1 (11-06), A2 (11-07) messaged; A1 replied, A2 only auto-replied -> 1/2.
    assert w1.response_rate == Rate(1, 2)
    # W3: A3 messaged 11-16, fresher than 7 days -> out of the denominator.
    assert w3.response_rate == Rate(0, 0)


def test_email_funnel(report: FunnelReport) -> None:
    w1, w2, w3 = (_week(report, "beta", w).email for w in (W1, W2, W3))
    # W1: sent E1..E4 = 4; E2 bounced -> delivered 3; replied E1 (meeting_request -> positive);
    # E3 auto-replied; meeting E1.
    assert (w1.sent, w1.delivered, w1.bounced) == (4, 3, 1)
    assert (w1.replied, w1.positive, w1.auto_replies, w1.meetings) == (1, 1, 1, 1)
    # Cohort of first emails in W1, not bounced: E1, E3, E4 = 3; replied by as_of: E1, and E4
    # (to its follow-up) -> 2/3.
    assert w1.response_rate == Rate(2, 3)
    # W2: E4's follow-up (sent 1, delivered 1), E4 replied (not_interested: not positive);
    # no first email in W2 -> 0/0.
    assert (w2.sent, w2.delivered, w2.replied, w2.positive) == (1, 1, 1, 0)
    assert w2.response_rate == Rate(0, 0)
    # W3: E5 sent and replied (unclassified); too fresh for the rate.
    assert (w3.sent, w3.replied, w3.unclassified, w3.response_rate) == (1, 1, 1, Rate(0, 0))


def test_goals_beside_the_figures_and_a_missing_goal_is_not_shown(report: FunnelReport) -> None:
    a1 = {g.metric: g for g in _week(report, "alpha", W1).goals}
    assert set(a1) == {
        "accept_rate", "response_rate", "meetings_per_week", "email_responses_per_week"
    }  # fmt: skip
    # 3/4 = 0.75 >= 0.30 met; 1/2 = 0.5 >= 0.20 met; 0 meetings < 5 in a finished week: missed.
    assert (a1["accept_rate"].value, a1["accept_rate"].met, a1["accept_rate"].sample) == (
        0.75, True, 4
    )  # fmt: skip
    assert (a1["response_rate"].value, a1["response_rate"].met) == (0.5, True)
    assert (a1["meetings_per_week"].value, a1["meetings_per_week"].met) == (0, False)
    # W3 is not over: 0 meetings is not yet a miss, and its accept rate has no denominator.
    a3 = {g.metric: g for g in _week(report, "alpha", W3).goals}
    assert a3["meetings_per_week"].met is None and a3["accept_rate"].met is None
    b1 = {g.metric: g for g in _week(report, "beta", W1).goals}
    assert "accept_rate" not in b1  # beta's playbook sets no accept goal
    assert (b1["email_responses_per_week"].value, b1["email_responses_per_week"].met) == (1, False)
    assert (b1["meetings_per_week"].value, b1["meetings_per_week"].goal) == (1, 5)
    beta_month = [m for m in report.months if m.campaign == "beta"]
    assert [(m.month, m.goal, m.met) for m in beta_month] == [("2026-11", None, None)]
    alpha_month = [m for m in report.months if m.campaign == "alpha"]
    # November is not over at as_of: 1 opportunity (A1) against 20 is not yet a miss.
    assert [(m.month, m.opportunities, m.goal, m.complete, m.met) for m in alpha_month] == [
        ("2026-11", 1, 20, False, None)
    ]


def test_campaign_with_no_data_shows_zeros_not_a_crash(report: FunnelReport) -> None:
    for w in (W1, W2, W3):
        f = _week(report, "delta", w)
        assert f.note == NO_DATA
        assert f.linkedin.requested == 0 and f.email.sent == 0 and f.meetings == 0
        assert f.linkedin.accept_rate.value is None and f.email.response_rate.value is None
    assert _week(report, "gamma", W3).linkedin.visited == 1
    assert _week(report, "gamma", W3).note is None


def test_specificity_by_genericness_verdict_tier_and_prompt(report: FunnelReport) -> None:
    # Messages delivered by 11-11 12:00: connects A1,A2,A3,A4 (11-03), A6 (11-10); messages
    # A1 (11-06), A2 (11-07); emails E1, E3, E4 (11-03/04), E4f (11-10). E2 bounced; A0 is
    # before W1; A5, A7, A3m, E5 are too fresh. Replies matched to them: A1m, A6c, E1, E4f.
    by = {b.dimension: dict(b.rates) for b in report.specificity}
    assert by["genericness"] == {
        "0.0–0.2": Rate(1, 2),  # A1m 0.1 (replied), A2m 0.15
        "0.2–0.4": Rate(1, 2),  # A1c 0.3, A6c 0.3 (replied)
        "0.4–0.6": Rate(2, 4),  # E3 0.45, E4 0.45, E1 0.5 (replied), E4f 0.55 (replied)
        "0.8–1.0": Rate(0, 1),  # A4c 0.8
        "unknown": Rate(0, 2),  # A2c, A3c: rows without touch facts
    }
    assert by["verdict"] == {
        "clean": Rate(4, 5),  # A6c, A1m, E1, E3, E4f; all but E3 replied
        "findings": Rate(0, 4),  # A1c, A4c, A2m, E4
        "unknown": Rate(0, 2),
    }
    assert by["tier"] == {"tier 1": Rate(2, 5), "tier 2": Rate(2, 4), "unknown": Rate(0, 2)}
    assert by["prompt_version"] == {
        "email@1": Rate(2, 4),
        "message@2": Rate(1, 2),
        "note@1": Rate(1, 3),  # A1c, A4c, A6c (replied)
        "unknown": Rate(0, 2),
    }
    alpha = next(v for v in report.variants if v.campaign == "alpha")
    assert alpha.verdict == (
        "too few sends to tell: message@2 has 2, note@1 has 3 (at least 20 each are needed)"
    )


def test_filters_and_breakdowns() -> None:
    r = compute_funnel(history(), as_of=AS_OF, weeks=3, filters=Filters(prompt_version="note@1"))
    assert r.campaigns == ("alpha", "beta", "delta", "gamma")  # the others show zeros
    assert _week(r, "beta", W1).email.sent == 0
    w1 = _week(r, "alpha", W1).linkedin
    # note@1 requests in W1: A1, A4 (A2, A3 have no facts); accepted by as_of: A1 -> 1/2.
    assert (w1.requested, w1.accepted, w1.accept_rate) == (2, 1, Rate(1, 2))
    by_tier = compute_funnel(history(), as_of=AS_OF, weeks=3, by="tier")
    groups = {(f.campaign, f.group) for f in by_tier.figures}
    assert {("alpha", "tier 1"), ("alpha", "unknown"), ("beta", "tier 2")} <= groups
    # alpha's W1 requests by tier: A1, A4 tier 1; A2, A3 unknown.
    assert by_tier.week("alpha", W1, "tier 1").linkedin.requested == 2  # type: ignore[union-attr]
    assert by_tier.week("alpha", W1, "unknown").linkedin.requested == 2  # type: ignore[union-attr]


def test_json_and_rows(report: FunnelReport) -> None:
    data = report.to_json()
    import json

    json.dumps(data)  # JSON-safe
    assert data["weeks"] == ["2026-11-02", "2026-11-09", "2026-11-16"]
    rows = report.rows()
    assert len(rows) == 4 * 3 * 2  # campaigns x weeks x channels
    row = next(
        r
        for r in rows
        if (r["campaign"], r["week"], r["channel"]) == ("alpha", "2026-11-02", "linkedin")
    )
    assert (row["requested"], row["accept_rate_num"], row["accept_rate_den"]) == (4, 3, 4)
    assert row["accept_rate_value"] == 0.75 and row["sent"] is None


def test_no_events_at_all_is_no_data_not_an_error() -> None:
    r = compute_funnel(FunnelInputs([], [], {}, lambda c: PB), as_of=AS_OF, weeks=2)
    assert r.campaigns == () and r.figures == () and r.unmatched_events == 0
    r = compute_funnel(
        FunnelInputs([], [], {}, lambda c: PB), as_of=AS_OF, weeks=2, filters=Filters("new")
    )
    assert [f.note for f in r.figures] == [NO_DATA, NO_DATA]
    assert r.notes == ("new: no data yet: nothing sent in these weeks",)


def test_wilson_interval_and_variant_sentences() -> None:
    # 3/4: p = .75, z^2 = 3.8415; centre = (.75 + 3.8415/8)/(1 + 3.8415/4) = 1.23018/1.96037
    # = .62753; half = 1.96 * sqrt(.75*.25/4 + 3.8415/64)/1.96037 = .32689 -> (.3006, .9544)
    low, high = wilson(3, 4) or (0, 0)
    assert low == pytest.approx(0.3006, abs=1e-4) and high == pytest.approx(0.9544, abs=1e-4)
    assert wilson(0, 0) is None and Rate(0, 0).value is None and str(Rate(0, 0)) == "— (0/0)"
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    # 60/200 = 30% [23.9%, 36.8%] vs 20/200 = 10% [6.6%, 14.9%]: apart.
    ahead = variant_verdict((("a@1", Rate(60, 200)), ("b@1", Rate(20, 200))), 20)
    assert ahead.startswith("a@1 is ahead: 30.0% (60/200)")
    # 25/100 [17.6%, 34.2%] vs 20/100 [13.3%, 28.9%]: they overlap.
    close = variant_verdict((("a@1", Rate(25, 100)), ("b@1", Rate(20, 100))), 20)
    assert close.startswith("too few sends to tell: the 95% intervals of a@1")
    small = variant_verdict((("a@1", Rate(9, 10)), ("b@1", Rate(0, 100))), 20)
    assert small == "too few sends to tell: a@1 has 10 (at least 20 each are needed)"
    assert genericness_bucket(1.0) == "0.8–1.0" and genericness_bucket(0.2) == "0.2–0.4"


async def test_loads_through_the_real_stores(tmp_path: Path) -> None:
    """Outbox, event store and escalation notes on disk, events matched by the real `ingest`."""
    now = [at(11, 3)]
    settings = Settings(data_dir=tmp_path / "data")
    async with open_workspace(settings, with_model=False, clock=lambda: now[0]) as ws:
        for who in ("ann", "bob", "cy"):
            key = f"k-{who}"
            ws.deps.outbox.reserve(
                key=key, campaign="spring", account_id=f"{who}.io", contact_key=f"{who}@{who}.io",
                step="email", channel="email", sender="me@us.io",
                touch=TouchFacts(recipient=f"{who}@{who}.io", tier=1, prompt_version="e@1"),
            )  # fmt: skip
            ws.deps.outbox.mark_sent(key, f"<{who}@us.io>")
        events = [
            local_event(kind="email_reply", at=at(11, 4), email="ann@ann.io", text="Yes, keen"),
            local_event(kind="auto_reply", at=at(11, 4), email="bob@bob.io", text="Away"),
            local_event(kind="email_reply", at=at(11, 5), email="zed@zed.io", text="Who?"),
        ]
        report = ingest_into(ws.events, ws.deps.outbox, events)
        assert (report.matched, report.unmatched) == (2, 1)
        with open_store(ws) as store:
            store.mark_stage(events[0].key, "escalated", "interested,question")
        r = compute_funnel(ws, as_of=AS_OF, weeks=3)
    w1 = _week(r, "spring", W1).email
    # sent 3, none bounced; Ann replied (interested: positive), Bob auto-replied; the stranger
    # is unmatched. Cohort: 3 emailed on 11-03, Ann replied -> 1/3.
    assert (w1.sent, w1.delivered, w1.replied, w1.positive, w1.auto_replies) == (3, 3, 1, 1, 1)
    assert w1.response_rate == Rate(1, 3)
    assert r.unmatched_events == 1


def test_a_playbook_without_goals_or_flags_loads_and_shows_none(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load((Path(__file__).parents[1] / PB.source).read_text(encoding="utf-8"))
    del data["goals"], data["red_flags"], data["metrics"]
    data["goals"] = {"meetings_per_week": 3}
    path = tmp_path / "pb.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    pb = load_playbook(path)
    assert pb.goals.accept_rate is None and pb.goals.meetings_per_week == 3
    assert pb.red_flags.accept_rate_below is None and pb.red_flags.min_sample == 20
    assert (pb.metrics.accept_window_days, pb.metrics.positive_signals) == (
        7, ("interested", "meeting_request")
    )  # fmt: skip
    r = compute_funnel(
        FunnelInputs(history().sent, history().events, {}, lambda c: pb), as_of=AS_OF, weeks=3
    )
    assert {g.metric for f in r.figures for g in f.goals} == {"meetings_per_week"}
    assert all(m.goal is None and m.met is None for m in r.months)
