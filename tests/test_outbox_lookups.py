"""Per-account and per-person outbox lookups: the same answers as filtering the whole campaign,
on SQLite and Postgres, through an index instead of a scan (issue 20, flat cost).

Every new account of a campaign asks the outbox whether its person was already reached through
another row, and whether a colleague at the account was written to; every follow-up asks which
actions its own thread sent. Each used to read the whole campaign's outbox and filter it in
Python: 135 ms an account once the campaign had sent 10,000 actions
(`bench/bench_outbox_growth.py`: +232 ms of CPU per new account, now +3.5 ms).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.eligibility import already_in_campaign
from agents.followup import thread_keys
from gtm.domain.models import Account, Contact
from tests.support.postgres import backend_for, postgres_server  # noqa: F401
from tests.test_graph import NOW, Clock
from tests.test_pg_stores import Backend
from tools.outbox import Outbox

FILTERS = {
    "campaign": [None, "spring", "autumn"],
    "state": [None, "sent", "failed"],
    "account_id": [None, "quill.dev", "acme.ai", "nobody.io"],
    "contact_key": [None, "dana@quill.dev", "lee@acme.ai", "nobody@example.org"],
}
DANA = Contact(name="Dana Ruiz", email="Dana@Quill.dev")  # her key: dana@quill.dev
NOBODY = Contact(name="No Body", email="nobody@example.org")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend_for(Backend, request, tmp_path) as b:
        yield b


def _fill(box: Any, clock: Clock) -> None:
    """Two campaigns; two accounts; two people, one of them at both accounts; sent and failed."""
    rows = [
        ("spring", "quill.dev", "dana@quill.dev", "linkedin_connect", "sent"),
        ("spring", "quill.dev", "lee@acme.ai", "linkedin_connect", "sent"),
        ("spring", "acme.ai", "dana@quill.dev", "linkedin_visit", "failed"),
        ("spring", "quill.dev", "dana@quill.dev", "linkedin_message", "sent"),
        ("autumn", "acme.ai", "lee@acme.ai", "linkedin_connect", "sent"),
        ("autumn", "quill.dev", "dana@quill.dev", "linkedin_visit", "pending"),
    ]
    for n, (campaign, account, person, step, state) in enumerate(rows):
        clock.t += timedelta(minutes=1)
        key = f"k{n}"
        got = box.reserve(
            key=key,
            campaign=campaign,
            account_id=account,
            contact_key=person,
            step=step,
            channel="linkedin",
            sender="seat",
        )
        assert got.created
        if state == "sent":
            box.mark_sent(key, f"p{n}")
        elif state == "failed":
            box.mark_failed(key, "refused")


def test_every_filter_answers_as_filtering_the_whole_outbox(backend: Backend) -> None:
    clock = Clock(NOW)
    box = backend.outbox(clock=clock)
    _fill(box, clock)
    everything = box.entries()
    assert [e.key for e in everything] == [f"k{n}" for n in range(6)]
    for values in itertools.product(*FILTERS.values()):
        given = {k: v for k, v in zip(FILTERS, values, strict=True) if v is not None}
        expected = [e for e in everything if all(getattr(e, k) == v for k, v in given.items())]
        assert box.entries(**given) == expected, given
    # and the answers are the right ones, not only consistent
    assert [e.key for e in box.entries(campaign="spring", contact_key=DANA.key)] == [
        "k0",
        "k2",
        "k3",
    ]
    assert [
        e.key for e in box.entries(campaign="spring", state="sent", account_id="quill.dev")
    ] == ["k0", "k1", "k3"]


def test_thread_keys_are_what_the_thread_sent_to_the_person(backend: Backend) -> None:
    clock = Clock(NOW)
    box = backend.outbox(clock=clock)
    _fill(box, clock)
    assert thread_keys(box, "spring", "quill.dev", DANA.key) == ["k0", "k3"]
    assert thread_keys(box, "spring", "acme.ai", DANA.key) == []  # k2 failed
    assert thread_keys(box, "autumn", "quill.dev", DANA.key) == []  # k5 still pending
    assert thread_keys(box, "autumn", "acme.ai", "lee@acme.ai") == ["k4"]


def test_the_sqlite_lookups_use_an_index(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite")
    for where in (
        "campaign = ? AND contact_key = ?",
        "campaign = ? AND state = ? AND account_id = ? AND contact_key = ?",
        "campaign = ? AND account_id = ?",
    ):
        plan = box._db.execute(  # noqa: SLF001 - the store's own connection
            f"EXPLAIN QUERY PLAN SELECT * FROM outbox WHERE {where} ORDER BY created_at, rowid",
            ["x"] * where.count("?"),
        ).fetchall()
        details = " ".join(str(row["detail"]) for row in plan)
        assert "USING INDEX outbox_person" in details or "USING INDEX outbox_account" in details, (
            where,
            details,
        )
    box.close()


def test_already_in_campaign_finds_the_person_through_another_row(backend: Backend) -> None:
    clock = Clock(NOW)
    box = backend.outbox(clock=clock)
    _fill(box, clock)
    deps: Any = type("Deps", (), {"outbox": box})()
    quill = Account(account_id="quill.dev", company="Quill", domain="quill.dev")
    acme = Account(account_id="acme.ai", company="Acme", domain="acme.ai")
    other = Account(account_id="other.io", company="Other", domain="other.io")
    # reached at quill.dev (k0, k3) and at acme.ai (k2, failed: any state counts, as before)
    assert already_in_campaign(deps, "spring", quill, DANA) == (
        "duplicate",
        "Dana Ruiz is already in this campaign via acme.ai",
    )
    assert already_in_campaign(deps, "spring", other, DANA) == (
        "duplicate",
        "Dana Ruiz is already in this campaign via quill.dev",
    )
    assert already_in_campaign(deps, "autumn", quill, DANA) is None  # only k5, this row
    assert already_in_campaign(deps, "autumn", acme, NOBODY) is None
