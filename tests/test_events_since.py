"""`since=` on the event stores' query, SQLite and Postgres alike, and the never-written-to
colleague rule (`agents.same_account.unwritten_colleague_stop_reason`) that reads through it.

The bound is inclusive and exact to the microsecond on both backends: SQLite compares its ISO
text (a whole second, stored without a fraction, against one with a fraction is the case that
would go wrong if the text were not uniform), Postgres its `timestamptz`. The rule counts what
happened from the campaign's first write to the account on, the same instant included.
"""

# ruff: noqa: F811  (test parameters name the imported fixtures)
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agents.same_account import PassLookups, unwritten_colleague_stop_reason
from gtm.domain.events import Event, EventKind
from gtm.domain.models import Account, Contact, OutboxEntry
from tests.support.postgres import postgres_server  # noqa: F401 (the fixture `backend` uses)
from tests.test_pg_stores import Backend, backend  # noqa: F401 (fixture)
from tests.test_several_people_more import LENA, OMAR, _event
from tools.fakes import InMemoryCRM

S = datetime(2026, 11, 9, 10, 0, tzinfo=UTC)  # a whole second: stored without a fraction
US = timedelta(microseconds=1)
KIM_URL = "https://www.linkedin.com/in/kim-park-signalry"


def _at(key: str, at: datetime, kind: EventKind = "email_reply", **who: str | None) -> Event:
    """An event keyed `key` (the stop line quotes it), by default a reply from the CTO."""
    who = who or {"email": "cto@signalry.io"}
    return _event(kind, at, key=key, **who)


# ------------------------------------------------------------------ the stores' filter

TIMES = {
    "day-before": S - timedelta(days=1),
    "before-1us": S - US,
    "at": S,
    "after-1us": S + US,
    "half": S + timedelta(milliseconds=500),
    "next-second": S + timedelta(seconds=1),
    "at-in-berlin": S.astimezone(ZoneInfo("Europe/Berlin")),  # the same instant as "at"
}


def test_since_returns_exactly_the_events_at_or_after_it(backend: Backend) -> None:
    store = backend.events()
    for key, at in TIMES.items():
        assert store.ingest(_at(key, at))

    def keys(**kw: Any) -> list[str]:
        return [e.event.key for e in store.events(**kw)]

    assert keys(since=S) == ["at", "at-in-berlin", "after-1us", "half", "next-second"]
    assert keys(since=S + US) == ["after-1us", "half", "next-second"]
    assert keys(since=S - US)[:1] == ["before-1us"]
    # A fraction against a whole second, both ways round.
    assert keys(since=S + timedelta(milliseconds=500)) == ["half", "next-second"]
    assert keys(since=S + timedelta(milliseconds=500) + US) == ["next-second"]
    assert keys(since=S + timedelta(seconds=1)) == ["next-second"]
    # The bound's own timezone does not matter, only its instant.
    assert keys(since=S.astimezone(timezone(timedelta(hours=-5)))) == keys(since=S)
    assert keys(since=S + timedelta(seconds=2)) == []

    # Every bound, against what comparing the instants in Python gives (oldest first, ties in
    # the order they came in).
    ordered = sorted(TIMES.items(), key=lambda kv: kv[1])
    bounds = {*TIMES.values(), S - timedelta(days=2), S + timedelta(microseconds=250_000)}
    for since in bounds:
        assert keys(since=since) == [k for k, at in ordered if at >= since], since
    assert keys() == [k for k, _ in ordered]  # no bound: everything, as before


def test_since_combines_with_the_other_filters(backend: Backend) -> None:
    store = backend.events()
    store.ingest(_at("old-unsub", S - US, "unsubscribe"))
    store.ingest(_at("new-unsub", S, "unsubscribe"))
    store.ingest(_at("new-matched", S, "unsubscribe"), outbox_key="k-1")
    store.ingest(_at("new-elsewhere", S, "unsubscribe", email="kim@other.example"))
    store.ingest(_at("new-li", S, "message_received", linkedin_url=KIM_URL))

    def keys(**kw: Any) -> list[str]:
        return sorted(e.event.key for e in store.events(since=S, **kw))

    assert keys(kind="unsubscribe", matched=False) == ["new-elsewhere", "new-unsub"]
    assert keys(domain="signalry.io") == ["new-matched", "new-unsub"]
    assert keys(person="CTO@Signalry.io") == ["new-matched", "new-unsub"]
    assert keys(person=KIM_URL.upper()) == ["new-li"]
    assert keys(outbox_key="k-1") == ["new-matched"]


def test_a_bound_without_a_timezone_is_refused(backend: Backend) -> None:
    store = backend.events()
    store.ingest(_at("at", S))
    with pytest.raises(ValueError, match="without a timezone"):
        store.events(since=datetime(2026, 11, 9, 10, 0))


# ------------------------------------------------------------------ the rule that uses it

PRIYA = Contact(name="Priya Shah", title="Staff Engineer", email="priya.shah@gmail.com")
SIGNALRY = Account(
    account_id="signalry.io",
    company="Signalry",
    domain="signalry.io",
    owner="rita@yourcompany.example",
    contacts=(LENA, OMAR, PRIYA),
)


def _sent(contact: Contact, at: datetime) -> OutboxEntry:
    return OutboxEntry(
        key=f"q1:signalry.io:{contact.key}:email",
        campaign="q1",
        account_id="signalry.io",
        contact_key=contact.key,
        step="email",
        channel="email",
        sender="alex@vectorly.example",
        state="sent",
        created_at=at,
        updated_at=at,
    )


@pytest.mark.parametrize(
    ("kind", "email", "linkedin_url", "how"),
    [
        ("unsubscribe", "cto@signalry.io", None, "address at the company's domain"),
        ("email_reply", PRIYA.email, None, "on the account list"),
        ("message_received", None, KIM_URL, "a CRM contact of the company"),
    ],
    ids=["domain", "account-list", "crm-contact"],
)
async def test_the_rule_counts_from_the_first_write_on_that_instant_included(
    backend: Backend, kind: EventKind, email: str | None, linkedin_url: str | None, how: str
) -> None:
    """Each of the rule's three ways of finding a colleague: an event a microsecond before the
    campaign first wrote to the account pauses nothing; one at that very instant does."""
    crm = InMemoryCRM()
    try:
        company = await crm.upsert_company(SIGNALRY)
        kim = Contact(name="Kim Park", title="CTO", linkedin_url=KIM_URL)
        await crm.upsert_contact(kim, company.id)
        entries = [_sent(LENA, S), _sent(OMAR, S + timedelta(days=2))]  # the first write: S
        store = backend.events()
        store.ingest(_at("before", S - US, kind, email=email, linkedin_url=linkedin_url))
        why = await unwritten_colleague_stop_reason(store, crm, entries, SIGNALRY, OMAR)
        assert why is None
        store.ingest(_at("at-first-write", S, kind, email=email, linkedin_url=linkedin_url))
        why = await unwritten_colleague_stop_reason(store, crm, entries, SIGNALRY, OMAR)
        assert why is not None and how in why and "(event at-first-write)" in why, why
        assert "2026-11-09 10:00 UTC" in why
    finally:
        crm.close()


class CountingCRM(InMemoryCRM):
    """Counts the two questions the rule asks."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    async def find_company(self, domain: str) -> Any:
        self.asked.append(f"company {domain}")
        return await super().find_company(domain)

    async def find_contact(self, contact: Contact) -> Any:
        self.asked.append(f"contact {contact.email or contact.linkedin_url}")
        return await super().find_contact(contact)


async def test_a_pass_asks_the_crm_about_each_unmatched_event_once(backend: Backend) -> None:
    """A follow-up pass asks the rule for every thread at an account the campaign wrote to,
    and the same unmatched events come up for each: asking the CRM directly, T threads and E
    events made T x E lookups a pass. With the pass's `PassLookups` each person is asked once,
    and every thread gets the answer it got from the CRM itself."""
    crm = CountingCRM()
    try:
        company = await crm.upsert_company(SIGNALRY)
        kim = Contact(name="Kim Park", title="CTO", linkedin_url=KIM_URL)
        await crm.upsert_contact(kim, company.id)
        crm.asked.clear()  # what setting the CRM up asked
        store = backend.events()
        for i in range(5):  # LinkedIn messages from people the CRM does not know
            url = f"https://www.linkedin.com/in/stranger-{i}"
            store.ingest(
                _at(f"loose-{i}", S + timedelta(hours=i + 1), "message_received", linkedin_url=url)
            )
        store.ingest(_at("kim", S + timedelta(hours=9), "message_received", linkedin_url=KIM_URL))
        entries = [_sent(LENA, S), _sent(OMAR, S + timedelta(days=2))]
        threads = [LENA, OMAR, PRIYA]

        direct = [
            await unwritten_colleague_stop_reason(store, crm, entries, SIGNALRY, c) for c in threads
        ]
        assert len([a for a in crm.asked if a.startswith("contact")]) == 6 * len(threads)
        crm.asked.clear()
        lookups = PassLookups(crm)
        through = [
            await unwritten_colleague_stop_reason(store, lookups, entries, SIGNALRY, c)
            for c in threads
        ]
        assert through == direct
        assert all(a is not None and "a CRM contact of the company" in a for a in through)
        assert sorted(crm.asked) == sorted(
            ["company signalry.io", f"contact {KIM_URL}"]
            + [f"contact https://www.linkedin.com/in/stranger-{i}" for i in range(5)]
        )
    finally:
        crm.close()
