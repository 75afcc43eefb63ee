"""Events in, once each, matched to the sent touch they answer by exact identifier only."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gtm.app.loop import ingest_folder, ingest_into, local_event, match, why_invalid
from gtm.domain.events import Event
from gtm.domain.models import Channel, Step
from tests.support.cli import run_gtm
from tools.events import EventStore
from tools.outbox import Outbox

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ANN = "https://www.linkedin.com/in/ann-lee"
BOB_MSGID = "<abc.123@vectorly.example>"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _sent(
    outbox: Outbox,
    clock: Clock,
    *,
    key: str,
    contact_key: str,
    step: Step,
    channel: Channel,
    provider_id: str,
    campaign: str = "spring",
    at: datetime = T0,
) -> None:
    clock.now = at
    outbox.reserve(
        key=key,
        campaign=campaign,
        account_id="acme.ai",
        contact_key=contact_key,
        step=step,
        channel=channel,
        sender="seat",
    )
    outbox.mark_sent(key, provider_id)


@pytest.fixture
def stores(tmp_path: Path) -> tuple[EventStore, Outbox, Clock]:
    clock = Clock()
    outbox = Outbox(tmp_path / "outbox.sqlite", clock=clock)
    store = EventStore(tmp_path / "events.sqlite", clock=clock)
    _sent(
        outbox,
        clock,
        key="k-visit",
        contact_key=ANN,
        step="linkedin_visit",
        channel="linkedin",
        provider_id="li_1",
    )
    _sent(
        outbox,
        clock,
        key="k-connect",
        contact_key=ANN,
        step="linkedin_connect",
        channel="linkedin",
        provider_id="li_2",
        at=T0 + timedelta(minutes=5),
    )
    _sent(
        outbox,
        clock,
        key="k-email",
        contact_key="bob@acme.ai",
        step="email",
        channel="email",
        provider_id=BOB_MSGID,
        at=T0 + timedelta(minutes=10),
    )
    # Ann again, from a later campaign: a reply after it answers this one.
    _sent(
        outbox,
        clock,
        key="k-connect-2",
        contact_key=ANN,
        step="linkedin_connect",
        channel="linkedin",
        provider_id="li_3",
        campaign="summer",
        at=T0 + timedelta(days=3),
    )
    clock.now = T0 + timedelta(days=10)
    return store, outbox, clock


def _accept(url: str = ANN, at: datetime = T0 + timedelta(days=1), key: str = "dx:1") -> Event:
    return Event(
        key=key,
        source="duxsoup",
        kind="connection_accepted",
        channel="linkedin",
        at=at,
        linkedin_url=url,
    )


def test_the_same_event_twice_is_one_event(stores: tuple[EventStore, Outbox, Clock]) -> None:
    store, outbox, _ = stores
    ev = _accept()
    first = ingest_into(store, outbox, [ev])
    assert (first.new, first.duplicate, first.matched, first.unmatched) == (1, 0, 1, 0)
    before = [(s.event, s.outbox_key, s.ingested_at) for s in store.events()]

    again = ingest_into(store, outbox, [ev, ev])
    assert (again.new, again.duplicate, again.matched, again.unmatched) == (0, 2, 0, 0)
    assert [(s.event, s.outbox_key, s.ingested_at) for s in store.events()] == before
    # The store alone says so too, and keeps the first match.
    assert store.ingest(ev, outbox_key="something-else") is False
    stored = store.get(ev.key)
    assert stored is not None and stored.outbox_key == "k-connect"


def test_matching_is_by_exact_identifier(stores: tuple[EventStore, Outbox, Clock]) -> None:
    store, outbox, _ = stores
    sent = outbox.entries(state="sent")
    # Any spelling of Ann's profile is Ann; the connect before the event is the one it answers.
    hit = match(_accept("de.linkedin.com/in/Ann-Lee/?trk=x"), sent)
    assert hit is not None and hit.key == "k-connect"
    # After the second campaign's connect, that one is the latest touch.
    late = match(_accept(at=T0 + timedelta(days=4)), sent)
    assert late is not None and late.key == "k-connect-2"
    # Before any connect (only a visit): a visit is answered by nothing.
    assert match(_accept(at=T0 + timedelta(minutes=1)), sent) is None
    # Someone never contacted, or a similar-looking profile, is never guessed.
    assert match(_accept("https://www.linkedin.com/in/ann-lee-2"), sent) is None

    reply = Event(
        key="<r1@acme.ai>",
        source="imap",
        kind="email_reply",
        channel="email",
        at=T0 + timedelta(days=1),
        email="Bob@ACME.ai",
        text="Sounds good",
    )
    hit = match(reply, sent)
    assert hit is not None and hit.key == "k-email"
    # A reply from a colleague is matched by the Message-ID it answers, not by the person.
    fwd = reply.model_copy(
        update={
            "key": "<r2@acme.ai>",
            "email": "carol@acme.ai",
            "in_reply_to": ("abc.123@vectorly.example",),
        }
    )
    hit = match(fwd, sent)
    assert hit is not None and hit.key == "k-email"
    # Same domain, no Message-ID: unmatched.
    assert match(fwd.model_copy(update={"in_reply_to": ()}), sent) is None


def test_linkedin_profile_from_the_action_log(stores: tuple[EventStore, Outbox, Clock]) -> None:
    """A contact keyed by email was connected on LinkedIn: the action log's profile matches."""
    store, outbox, clock = stores
    _sent(
        outbox,
        clock,
        key="k-dan",
        contact_key="dan@acme.ai",
        step="linkedin_connect",
        channel="linkedin",
        provider_id="li_9",
    )
    ev = _accept("https://www.linkedin.com/in/dan", key="dx:dan")
    assert match(ev, outbox.entries(state="sent")) is None
    got = ingest_into(store, outbox, [ev], profiles={"k-dan": "https://www.linkedin.com/in/dan"})
    assert got.matched == 1


def test_unmatched_events_are_listed(stores: tuple[EventStore, Outbox, Clock]) -> None:
    store, outbox, _ = stores
    stranger = _accept("https://www.linkedin.com/in/zed", key="dx:zed")
    report = ingest_into(store, outbox, [_accept(), stranger])
    assert (report.new, report.matched, report.unmatched) == (2, 1, 1)
    assert [s.event.key for s in store.unmatched()] == ["dx:zed"]
    assert [s.event.key for s in store.events(person="linkedin.com/in/ZED/")] == ["dx:zed"]
    assert [s.event.key for s in store.events(kind="connection_accepted", matched=True)] == ["dx:1"]
    assert store.erase_person([], ["https://www.linkedin.com/in/zed"]) == 1
    assert store.unmatched() == []


def test_events_that_cannot_be_taken_in_say_which_field() -> None:
    naive = local_event(kind="email_reply", at=datetime(2026, 3, 1, 9, 0), email="a@b.example")
    assert (why_invalid(naive) or "").startswith("at:")
    wrong = _accept().model_copy(update={"channel": "email", "email": "a@b.example"})
    assert (why_invalid(wrong) or "").startswith("channel:")
    bad = local_event(kind="email_reply", at=T0, email="not-an-address")
    assert (why_invalid(bad) or "").startswith("email:")
    nobody = local_event(kind="connection_accepted", at=T0, email="a@b.example")
    assert (why_invalid(nobody) or "").startswith("linkedin_url:")
    assert why_invalid(_accept()) is None
    # Hand-added events: the same content is the same key, different text a different one.
    a = local_event(kind="message_received", at=T0, linkedin_url=ANN, text="hi")
    assert a.key == local_event(kind="message_received", at=T0, linkedin_url=ANN, text="hi").key
    assert a.key != local_event(kind="message_received", at=T0, linkedin_url=ANN, text="ho").key


def test_drop_folder(stores: tuple[EventStore, Outbox, Clock], tmp_path: Path) -> None:
    store, outbox, _ = stores
    incoming = tmp_path / "events" / "incoming"
    incoming.mkdir(parents=True)
    good = _accept().model_dump_json()
    (incoming / "a-good.json").write_text(good)
    (incoming / "b-not-json.json").write_text("{not json")
    missing = json.loads(good)
    del missing["kind"]
    (incoming / "c-no-kind.json").write_text(json.dumps(missing))
    bad_mail = json.loads(good) | {
        "channel": "email",
        "kind": "bounce",
        "linkedin_url": None,
        "email": "nope",
        "key": "x",
    }
    (incoming / "d-bad-email.json").write_text(json.dumps(bad_mail))
    (incoming / "notes.txt").write_text("not an event file: left alone")

    report = ingest_folder(store, outbox, incoming)
    assert report.done == ["a-good.json"]
    assert (report.ingested.new, report.ingested.matched) == (1, 1)
    assert [name for name, _ in report.rejected] == [
        "b-not-json.json",
        "c-no-kind.json",
        "d-bad-email.json",
    ]
    rejected = tmp_path / "events" / "rejected"
    assert "kind" in (rejected / "c-no-kind.json.why").read_text()
    assert (rejected / "d-bad-email.json.why").read_text().startswith("email:")
    assert (rejected / "b-not-json.json.why").read_text().strip()
    assert (tmp_path / "events" / "done" / "a-good.json").read_text() == good
    assert sorted(p.name for p in incoming.iterdir()) == ["notes.txt"]
    assert [s.event.key for s in store.events()] == ["dx:1"]  # nothing of the bad files

    # The same event dropped again is a duplicate; the file still moves, under a new name.
    (incoming / "a-good.json").write_text(good)
    again = ingest_folder(store, outbox, incoming)
    assert (again.ingested.new, again.ingested.duplicate) == (0, 1)
    assert (tmp_path / "events" / "done" / "a-good.1.json").exists()
    assert len(store.events()) == 1


# ------------------------------------------------------------------ the CLI, in a subprocess


def _gtm(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    env.update(ANONYMIZED_TELEMETRY="False", COLUMNS="200")
    return run_gtm(env, "--data-dir", str(data), *args)


def test_cli_add_list_and_sync(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    clock = Clock()
    outbox = Outbox(data / "outbox.sqlite", clock=clock)
    _sent(
        outbox,
        clock,
        key="k-connect",
        contact_key=ANN,
        step="linkedin_connect",
        channel="linkedin",
        provider_id="li_2",
    )
    outbox.close()

    at = (T0 + timedelta(days=1)).isoformat()
    added = _gtm(
        data,
        "events",
        "add",
        "--kind",
        "connection_accepted",
        "--linkedin",
        "linkedin.com/in/ANN-LEE",
        "--at",
        at,
    )
    assert added.returncode == 0, added.stderr
    assert "matched to linkedin_connect of campaign spring" in added.stdout
    again = _gtm(
        data,
        "events",
        "add",
        "--kind",
        "connection_accepted",
        "--linkedin",
        "linkedin.com/in/ANN-LEE",
        "--at",
        at,
    )
    assert again.returncode == 0 and "nothing changed" in again.stdout

    stranger = _gtm(
        data,
        "events",
        "add",
        "--kind",
        "message_received",
        "--linkedin",
        "https://www.linkedin.com/in/zed",
        "--text",
        "who are you?",
        "--at",
        at,
    )
    assert stranger.returncode == 0 and "unmatched" in stranger.stdout

    refused = _gtm(data, "events", "add", "--kind", "replied", "--email", "a@b.example")
    assert refused.returncode == 2 and "--kind" in refused.stderr
    refused = _gtm(data, "events", "add", "--kind", "bounce", "--email", "nope")
    assert refused.returncode == 2 and "email:" in refused.stderr

    listed = _gtm(data, "events", "list", "--unmatched")
    assert listed.returncode == 0, listed.stderr
    assert "who are you?" in listed.stdout and "ann-lee" not in listed.stdout
    everything = _gtm(data, "events", "list")
    assert "linkedin_connect · spring" in everything.stdout

    incoming = data / "events" / "incoming"
    incoming.mkdir(parents=True)
    (incoming / "bad.json").write_text('{"kind": "bounce"}')
    (incoming / "good.json").write_text(
        _accept("https://www.linkedin.com/in/yan", key="file:1").model_dump_json()
    )
    synced = _gtm(data, "sync")
    assert synced.returncode == 3, synced.stderr
    assert "1 new (0 matched, 1 unmatched)" in synced.stdout
    assert "bad.json" in synced.stderr and "key" in synced.stderr
    assert (data / "events" / "rejected" / "bad.json.why").exists()

    db = sqlite3.connect(data / "events.sqlite")
    try:
        rows = db.execute("SELECT key, outbox_key FROM events ORDER BY at, rowid").fetchall()
    finally:
        db.close()
    assert len(rows) == 3 and sum(1 for _, k in rows if k == "k-connect") == 1
