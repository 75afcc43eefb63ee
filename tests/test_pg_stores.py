"""The outbox, the suppression list and the event store: one contract, SQLite and Postgres alike.

The contract is the existing tests of the SQLite stores, run here unchanged against both
backends (their module's store class is swapped for the backend's for the length of one test),
plus scenarios that exercise every method and compare the two backends' answers value for
value. The Postgres side runs on a real server (`tests.support.postgres`), a fresh database per
test. Races between processes on Postgres are in `test_pg_races.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import tests.test_backends as backends_tests
import tests.test_cooldown_race as cooldown_tests
import tests.test_events as events_tests
import tests.test_identity as identity_tests
import tests.test_outbox_touch as touch_tests
from gtm.domain.events import Event
from gtm.domain.models import Account, Contact, TouchFacts
from tests.support.postgres import (  # noqa: F401
    PostgresServer,
    StoreBackend,
    backend_for,
    postgres_server,
)
from tests.test_graph import NOW, Clock
from tools.events import EventStore
from tools.outbox import Cooldowns, Limit, Outbox
from tools.pg_events import PgEventStore
from tools.pg_outbox import PgOutbox
from tools.pg_suppression import PgSuppressionList
from tools.suppression import SuppressionList

Now = Callable[[], datetime]


class Backend(StoreBackend):
    """Opens the three stores on one backend: files in `tmp` or one Postgres database. Two
    stores of a kind opened here share their data, as two processes would."""

    def outbox(self, clock: Now = lambda: datetime.now(UTC)) -> Any:
        if self.db is None:
            return self._keep(Outbox(self.tmp / "outbox.sqlite", clock=clock))
        return self._keep(PgOutbox(self.db, clock=clock))

    def suppression(self, clock: Now = lambda: datetime.now(UTC)) -> Any:
        if self.db is None:
            return self._keep(SuppressionList(self.tmp / "sup.sqlite", clock=clock))
        return self._keep(PgSuppressionList(self.db, clock=clock))

    def events(self, clock: Now = lambda: datetime.now(UTC)) -> Any:
        if self.db is None:
            return self._keep(EventStore(self.tmp / "events.sqlite", clock=clock))
        return self._keep(PgEventStore(self.db, clock=clock))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend_for(Backend, request, tmp_path) as b:
        yield b


def _swap(monkeypatch: pytest.MonkeyPatch, module: Any, b: Backend) -> None:
    """Point a test module's store classes at the backend, ignoring the file path it gives."""
    for name, open_ in (
        ("Outbox", b.outbox),
        ("SuppressionList", b.suppression),
        ("EventStore", b.events),
    ):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, lambda _path, _o=open_, **kw: _o(**kw))


# ------------------------------------------------------------------ the existing contract tests


def test_outbox_states_and_weekly_counts(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _swap(monkeypatch, backends_tests, backend)
    backends_tests.test_outbox_states_and_weekly_counts(tmp_path)
    assert backend.opened, "the test opened its stores through the backend"


def test_suppression_list_matches_email_domain_and_profile(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _swap(monkeypatch, backends_tests, backend)
    backends_tests.test_suppression_list_matches_email_domain_and_profile(tmp_path)
    assert backend.opened, "the test opened its stores through the backend"


def test_touch_kept_and_erased(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _swap(monkeypatch, touch_tests, backend)
    touch_tests.test_the_touch_is_kept_with_the_row_and_an_erasure_forgets_the_address(tmp_path)
    assert backend.opened, "the test opened its stores through the backend"


@pytest.mark.parametrize(
    "check",
    [
        cooldown_tests.test_what_counts_toward_a_cooldown,
        cooldown_tests.test_person_and_account_windows,
    ],
    ids=lambda f: f.__name__.removeprefix("test_"),
)
def test_cooldown_rules(check: Callable[[Any], None], backend: Backend) -> None:
    clock = Clock(NOW)
    check((backend.outbox(clock=clock), clock))


async def test_two_campaigns_approved_at_once_through_the_graph(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The graph race (two campaigns approving one person at once, 30 rounds): one send."""
    _swap(monkeypatch, cooldown_tests, backend)
    await cooldown_tests.test_two_campaigns_approved_at_once_contact_a_person_once(tmp_path)
    assert backend.opened, "the test opened its stores through the backend"


@pytest.fixture
def event_stores(backend: Backend) -> tuple[Any, Any, events_tests.Clock]:
    """`tests.test_events.stores` on the backend: the same four sent touches."""
    clock = events_tests.Clock()
    outbox, store = backend.outbox(clock=clock), backend.events(clock=clock)
    sent = events_tests._sent
    sent(
        outbox,
        clock,
        key="k-visit",
        contact_key=events_tests.ANN,
        step="linkedin_visit",
        channel="linkedin",
        provider_id="li_1",
    )
    sent(
        outbox,
        clock,
        key="k-connect",
        contact_key=events_tests.ANN,
        step="linkedin_connect",
        channel="linkedin",
        provider_id="li_2",
        at=events_tests.T0 + timedelta(minutes=5),
    )
    sent(
        outbox,
        clock,
        key="k-email",
        contact_key="bob@acme.ai",
        step="email",
        channel="email",
        provider_id=events_tests.BOB_MSGID,
        at=events_tests.T0 + timedelta(minutes=10),
    )
    sent(
        outbox,
        clock,
        key="k-connect-2",
        contact_key=events_tests.ANN,
        step="linkedin_connect",
        channel="linkedin",
        provider_id="li_3",
        campaign="summer",
        at=events_tests.T0 + timedelta(days=3),
    )
    clock.now = events_tests.T0 + timedelta(days=10)
    return store, outbox, clock


@pytest.mark.parametrize(
    "check",
    [
        events_tests.test_the_same_event_twice_is_one_event,
        events_tests.test_matching_is_by_exact_identifier,
        events_tests.test_linkedin_profile_from_the_action_log,
        events_tests.test_unmatched_events_are_listed,
    ],
    ids=lambda f: f.__name__.removeprefix("test_"),
)
def test_event_contract(check: Callable[[Any], None], event_stores: Any) -> None:
    check(event_stores)


def test_event_drop_folder(event_stores: Any, tmp_path: Path) -> None:
    events_tests.test_drop_folder(event_stores, tmp_path)


@pytest.mark.parametrize("entered", identity_tests.SPELLINGS[:3])
def test_a_profile_under_one_spelling_is_found_under_every_other(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, entered: str
) -> None:
    _swap(monkeypatch, identity_tests, backend)
    identity_tests.test_a_profile_suppressed_under_one_spelling_is_found_under_every_other(
        tmp_path, entered
    )
    assert backend.opened, "the test opened its stores through the backend"


def test_junk_is_refused_with_what_is_wrong(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _swap(monkeypatch, identity_tests, backend)
    identity_tests.test_junk_is_refused_with_what_is_wrong(
        tmp_path, "linkedin", "https://example.com/in/dana", "is not a LinkedIn profile URL"
    )
    assert backend.opened, "the test opened its stores through the backend"


# ------------------------------------------------------- every method, the same answers on both


def outbox_story(box: Any, clock: Clock) -> list[Any]:
    """Every outbox method once, what each answered, as plain data."""
    seen: list[Any] = []
    kw: dict[str, Any] = {"campaign": "c", "channel": "linkedin", "sender": "seat"}
    week = NOW - timedelta(days=1)
    cap = [Limit(2, week, week + timedelta(days=7), "per week")]
    gap = timedelta(minutes=5)
    touch = TouchFacts(recipient="https://www.linkedin.com/in/a", tier=2, genericness=0.5)
    for i, minutes in enumerate((0, 1, 6, 12, 20)):
        clock.t = NOW + timedelta(minutes=minutes)
        got = box.reserve(
            key=f"k{i}",
            account_id=f"a{i}",
            contact_key=f"p{i}",
            step="linkedin_connect",
            limits=cap,
            min_gap=gap,
            touch=touch,
            **kw,
        )
        seen.append((got.created, got.full, got.used, got.not_before, got.cooldown))
        if got.created and i == 2:
            box.mark_failed(f"k{i}", "refused")
    box.mark_sent("k0", "li_1")
    box.release("k3")  # still pending: dropped, so the key may be taken again
    seen.append([(e.key, e.state, e.error, e.provider_id, e.touch) for e in box.entries()])
    seen.append([e.key for e in box.entries(campaign="c", state="sent")])
    seen.append(box.entries(campaign="other"))
    seen.append(sorted(box.sent_briefs()))
    seen.append(box.count("seat", "linkedin_connect", week))
    clock.t = NOW + timedelta(hours=1)
    seen.append([(e.key, e.state, e.error) for e in box.recover_stale_pending(clock.t)])
    seen.append(box.recover_stale_pending(clock.t))
    windows = Cooldowns(person=timedelta(days=30), account=timedelta(days=7))
    hit = box.cooldown_hit(campaign="d", contact_key="p0", account_id="zz", cooldown=windows)
    seen.append((hit.entry.key, hit.scope, hit.window, hit.age) if hit else None)
    seen.append(box.erase_contact("p0", "erased-p0"))
    seen.append([e.contact_key for e in box.entries()])
    seen.append(box.get("nope"))
    return seen


def test_every_outbox_method_answers_alike(tmp_path: Path, backend: Backend) -> None:
    clock = Clock(NOW)
    story = outbox_story(backend.outbox(clock=clock), clock)
    sqlite_clock = Clock(NOW)
    reference = Outbox(tmp_path / "reference.sqlite", clock=sqlite_clock)
    assert story == outbox_story(reference, sqlite_clock)
    reference.close()
    # and what it says is right, not only alike: k1 waits out the 5-minute gap after k0; k2
    # fails (so does not count); k3 takes the second slot of the cap; k4 finds it full.
    assert [s[0] for s in story[:5]] == [True, False, True, True, False], story[:5]
    assert story[1][3] == NOW + timedelta(minutes=5)
    assert story[4][1] is not None and story[4][2] == 2
    # k3 was released (deleted while pending); k0 sent, k2 failed: nothing left to recover.
    assert [(k, state) for k, state, *_ in story[5]] == [("k0", "sent"), ("k2", "failed")]
    assert story[10] == [] and story[11] == []
    assert story[12] == ("k0", "person", timedelta(days=30), timedelta(hours=1))
    assert story[9] == 1 and story[13] == 1 and story[14] == ["erased-p0", "p2"]


DANA = Contact(name="Dana Ruiz", email="Dana@Quill.dev", linkedin_url="de.linkedin.com/in/dana")
QUILL = Account(account_id="quill.dev", company="Quill", domain="quill.dev")


def suppression_story(sup: Any, tmp_path: Path) -> list[Any]:
    seen: list[Any] = []
    seen.append(sup.check(DANA, QUILL))
    seen.append(
        sup.add_person(
            email="Dana@Quill.dev",
            linkedin_url="de.linkedin.com/in/dana",
            person_key="dana@quill.dev",
            reason="opted out",
        )
    )
    seen.append(sup.add_person(email=" ", linkedin_url=None, person_key="Malformed@", reason="x"))
    seen.append(sup.check(DANA, QUILL))
    seen.append(sup.check_identifiers(person_key="malformed@"))
    seen.append(sup.entries())
    ids: list[Any] = [("email", "dana@quill.dev"), ("linkedin", "linkedin.com/in/dana")]
    seen.append(sup.named(ids))
    seen.append(sup.erase(ids, "erased on request"))
    seen.append(sup.named(ids))
    seen.append(sup.is_erased(DANA))
    seen.append(sup.check(DANA.model_copy(update={"email": None}), QUILL))
    sup.record_erasure("f" * 64, "reviewer", {"emails": 1})
    seen.append(sup.erasures())
    csv = tmp_path / "dnc.csv"
    csv.write_text("email,domain,reason\nbad,,\nx@y.dev,rival.io,legal\n,,\n", encoding="utf-8")
    report = sup.import_csv(csv, default_reason="imported")
    seen.append((report.added, [e.replace(str(csv), "F") for e in report.errors]))
    seen.append(sup.check(Contact(name="Jo", email="jo@rival.io"), QUILL))
    with pytest.raises(ValueError, match="not a domain"):
        sup.add("domain", "rival", "x")
    seen.append(sorted(sup.entries()))
    return seen


def test_every_suppression_method_answers_alike(tmp_path: Path, backend: Backend) -> None:
    at = lambda: NOW  # noqa: E731
    story = suppression_story(backend.suppression(clock=at), tmp_path)
    reference = SuppressionList(tmp_path / "reference.sqlite", clock=at)
    assert story == suppression_story(reference, tmp_path)
    reference.close()
    assert story[0] is None and "opted out" in story[3]
    assert story[7] == 2 and story[8] == (0, True) and story[9] is True
    assert "(erased person) is on the do-not-contact list: erased on request" in story[10]
    assert story[12] == (
        2,
        [
            "F: row 2: email: 'bad' is not an email address",
            "F: row 4: email/domain/linkedin_url: all empty",
        ],
    )
    assert story[11] == [(NOW.isoformat(), "f" * 64, "reviewer", json.dumps({"emails": 1}))]


def events_story(store: Any) -> list[Any]:
    t = datetime(2026, 3, 2, 9, tzinfo=UTC)
    reply = Event(
        key="<r1@q>",
        source="imap",
        kind="email_reply",
        channel="email",
        at=t,
        email="Dana@Quill.dev",
        text="Sounds good",
    )
    accept = Event(
        key="dx:1",
        source="duxsoup",
        kind="connection_accepted",
        channel="linkedin",
        at=t - timedelta(hours=1),
        linkedin_url="de.linkedin.com/in/dana/",
    )
    seen: list[Any] = [store.empty(), store.seen("dx:1")]
    seen.append([store.ingest(reply, outbox_key="k-email"), store.ingest(accept)])
    seen.append([store.ingest(reply), store.empty(), store.seen("dx:1")])
    shown = lambda xs: [(s.event, s.person, s.outbox_key, s.ingested_at) for s in xs]  # noqa: E731
    seen.append(shown(store.events()))
    seen.append(shown(store.events(person="DANA@quill.dev ")))
    seen.append(shown(store.events(kind="email_reply", matched=True)))
    seen.append(shown(store.unmatched()))
    seen.append(shown(store.events(outbox_key="k-email")))
    seen.append(sorted(store.briefs()))
    seen.append(store.keys())  # oldest first, as `events`
    got = store.get("dx:1")
    seen.append((got.event, got.person, got.outbox_key) if got else None)
    seen.append(store.erase_person(["dana@QUILL.dev"], ["https://www.linkedin.com/in/dana"]))
    seen.append([store.empty(), store.get("dx:1"), store.erase_person(["x@y.dev"], [])])
    return seen


def test_every_event_method_answers_alike(tmp_path: Path, backend: Backend) -> None:
    at = lambda: NOW  # noqa: E731
    story = events_story(backend.events(clock=at))
    reference = EventStore(tmp_path / "reference.sqlite", clock=at)
    assert story == events_story(reference)
    reference.close()
    assert story[:4] == [True, False, [True, True], [False, False, True]]
    assert [e[0].key for e in story[4]] == ["dx:1", "<r1@q>"]  # oldest first
    assert story[10] == ["dx:1", "<r1@q>"]
    assert story[12] == 2 and story[13] == [True, None, 0]
