"""Write a seeded, realistic outreach history into real stores, for the funnel report benchmark.

.venv/bin/python bench/funnel_data.py DATA_DIR [ACCOUNTS] [EVENTS] [SEED]

`generate(data_dir, accounts=10_000, events=100_000, seed=7)` fills `outbox.sqlite` and
`events.sqlite` under `data_dir` (the files a workspace opens there) and returns the counts:
3 campaigns (LinkedIn, email, and both), 2 sender seats, tiers 1-3, two prompt versions per
channel, 12 ISO weeks from Monday 2025-01-06, 3 people per account on average. Each person gets the
campaign's sequence: a profile visit and a connection request, then two messages once accepted;
or up to three emails. What comes back follows realistic rates: ~30% of connection requests
accepted, ~15% of people reply (more in tier 1, with prompt v2 and with specific notes; a
reply is often a short conversation), 3% of first emails bounce, ~10% of emails get an
auto-reply, ~1% unsubscribe, ~a quarter of positive replies book a meeting. Every reply has
the signals the escalation pass would have recorded (`escalation_events`, stage "escalated",
note = comma-joined signals). Events from people the tool never contacted (Dux-Soup reports a
seat's whole inbox) are stored unmatched and fill the history up to `events`. Times come from
an injected clock, spread over the weeks; some answers land after the last week.

How it writes: the first `api_accounts` accounts (100 by default) go through the product's own
calls (`Outbox.reserve` + `mark_sent` with `touch=TouchFacts(...)`, `EventStore.ingest(...,
outbox_key=)`, `EscalationStore.mark_stage`). Those calls commit one row at a time (`reserve`
takes SQLite's write lock per call, ingest autocommits), ~0.5 ms a row here, which would be ~1
min for this history. The rest is inserted with `executemany` in one transaction per file,
into the schema those classes created, with the values the same code computes (the outbox
key from `idempotency_key`, the facts from `TouchFacts`, the person from `person_of`, the body
from `Event.model_dump_json`); the column names are read from the file, so a schema the bulk
rows do not fit fails loudly. `check_same_shape` then compares an API-written row of each table
with a bulk-written one.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gtm.domain.events import Event, EventKind
from gtm.domain.models import Channel, Step, TouchFacts, idempotency_key
from tools.escalations import EscalationStore
from tools.events import EventStore, person_of
from tools.outbox import Outbox

START = datetime(2025, 1, 6, 8, tzinfo=UTC)  # Monday of ISO week 2025-W02
WEEKS = 12
SEATS = ("ana@acme.example", "ben@acme.example")
CAMPAIGNS: tuple[tuple[str, tuple[Channel, ...], float], ...] = (
    ("q1-linkedin", ("linkedin",), 0.40),
    ("q1-email", ("email",), 0.35),
    ("q1-reactivation", ("linkedin", "email"), 0.25),
)
SIGNALS = (  # (signals, weight, positive)
    ("interested", 25, True),
    ("interested,question", 8, True),
    ("meeting_request", 7, True),
    ("not_now", 20, False),
    ("not_interested", 25, False),
    ("question", 10, False),
    ("referral", 5, False),
)


@dataclass
class _Sink:
    """Rows for the bulk insert, and the API-written sample."""

    outbox: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    stages: list[tuple[str, str, str, str]] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    steps: Counter[str] = field(default_factory=Counter)
    matched: int = 0


class _Api:
    """The product's own calls, with a clock the generator moves."""

    def __init__(self, data_dir: Path) -> None:
        self.now = START
        clock: Callable[[], datetime] = lambda: self.now  # noqa: E731
        self.outbox = Outbox(data_dir / "outbox.sqlite", clock=clock)
        self.events = EventStore(data_dir / "events.sqlite", clock=clock)
        self.stages = EscalationStore(data_dir / "events.sqlite", clock=clock)

    def close(self) -> None:
        self.outbox.close()
        self.events.close()
        self.stages.close()


class _History:
    def __init__(self, rng: random.Random, sink: _Sink, api: _Api | None) -> None:
        self.rng, self.sink, self.api = rng, sink, api
        self.n = 0

    # --- writing -----------------------------------------------------------------------
    def touch(
        self, campaign: str, account: str, person: dict[str, Any], step: Step, position: int,
        at: datetime, facts: dict[str, Any],
    ) -> str:  # fmt: skip
        channel: Channel = "email" if step == "email" else "linkedin"
        key = idempotency_key(campaign, account, person["email"], step, position)
        recipient = person["email"] if channel == "email" else person["url"]
        touch = TouchFacts(recipient=recipient, position=position, **facts)
        sender = person["seat"]
        provider_id = (
            f"<gtm.{hashlib.sha256(key.encode()).hexdigest()[:32]}@acme.example>"
            if channel == "email"
            else f"dux-{key[:12]}"
        )
        sent_at = at + timedelta(seconds=self.rng.randint(5, 90))
        self.sink.steps[step] += 1
        if self.api is not None:
            self.api.now = at
            self.api.outbox.reserve(
                key=key, campaign=campaign, account_id=account, contact_key=person["email"],
                step=step, channel=channel, sender=sender, touch=touch,
            )  # fmt: skip
            self.api.now = sent_at
            self.api.outbox.mark_sent(key, provider_id)
        else:
            self.sink.outbox.append(
                dict(key=key, campaign=campaign, account_id=account, contact_key=person["email"],
                     step=step, channel=channel, sender=sender, state="sent",
                     provider_id=provider_id, error=None, created_at=at.isoformat(),
                     updated_at=sent_at.isoformat(), **touch.model_dump())
            )  # fmt: skip
        person.setdefault("sent", {})[key] = provider_id
        return key

    def event(
        self, kind: EventKind, at: datetime, person: dict[str, Any], outbox_key: str | None,
        channel: Channel, text: str = "", signals: str | None = None,
    ) -> None:  # fmt: skip
        self.n += 1
        email = person["email"] if channel == "email" else None
        reply_to = person.get("sent", {}).get(outbox_key) if email and outbox_key else None
        ev = Event(
            key=f"bench:{self.n}:{self.rng.getrandbits(32):08x}",
            source={"linkedin": "duxsoup", "email": "imap"}[channel]
            if kind != "meeting_booked"
            else "local",
            kind=kind, channel=channel, at=at, email=email,
            linkedin_url=None if email else person["url"],
            in_reply_to=(reply_to,) if reply_to else (), text=text,
        )  # fmt: skip
        self.sink.kinds[kind] += 1
        self.sink.matched += outbox_key is not None
        rules = {"bounce": "bounce", "unsubscribe": "opt-out"}.get(kind, "")
        stamp = at.astimezone(UTC).isoformat()
        if self.api is not None:
            self.api.now = at
            self.api.events.ingest(ev, outbox_key=outbox_key)
            self.api.stages.mark_stage(ev.key, "rules", rules)
            if signals is not None:
                self.api.stages.mark_stage(ev.key, "escalated", signals)
            return
        self.sink.events.append(
            dict(key=ev.key, source=ev.source, kind=kind, channel=channel, person=person_of(ev),
                 at=stamp, outbox_key=outbox_key, body=ev.model_dump_json(), ingested_at=stamp)
        )  # fmt: skip
        self.sink.stages.append((ev.key, "rules", stamp, rules))
        if signals is not None:
            self.sink.stages.append((ev.key, "escalated", stamp, signals))

    # --- one person's story -----------------------------------------------------------
    def reply_odds(self, facts: dict[str, Any]) -> float:
        """~15% overall: more in tier 1, with v2 of the prompt and with specific text."""
        odds = {1: 0.21, 2: 0.15, 3: 0.12}[facts["tier"]]
        odds *= 1.15 if facts["prompt_version"].endswith("@2") else 0.9
        return float(odds * (1.35 - 0.9 * facts["genericness"]))

    def conversation(
        self, at: datetime, person: dict[str, Any], key: str, channel: Channel,
        facts: dict[str, Any],
    ) -> None:  # fmt: skip
        """A reply (with its signals), sometimes more messages, sometimes a meeting."""
        rng = self.rng
        picks = rng.choices(SIGNALS, weights=[w for _, w, _ in SIGNALS])[0]
        signals, _, positive = picks
        kind: EventKind = "email_reply" if channel == "email" else "message_received"
        self.event(kind, at, person, key, channel, text="Thanks, " + signals, signals=signals)
        for _ in range(min(int(rng.expovariate(1 / 2.0)), 10)):
            at += timedelta(hours=rng.uniform(3, 72))
            self.event(kind, at, person, key, channel, text="More.", signals="question")
        if positive and rng.random() < 0.3:
            at += timedelta(days=rng.uniform(0.5, 5))
            self.event("meeting_booked", at, person, key, channel)

    def linkedin(self, campaign: str, account: str, person: dict[str, Any], t0: datetime,
                 facts: dict[str, Any]) -> None:  # fmt: skip
        rng = self.rng
        self.touch(campaign, account, person, "linkedin_visit", 0, t0, facts)
        at = t0 + timedelta(hours=rng.uniform(20, 30))
        key = self.touch(campaign, account, person, "linkedin_connect", 0, at, facts)
        if rng.random() < 0.03:
            self.event("unsubscribe", at + timedelta(days=1), person, key, "linkedin")
            return
        if rng.random() >= 0.30:
            return
        at += timedelta(days=rng.expovariate(1 / 2.5))
        self.event("connection_accepted", at, person, key, "linkedin")
        for position in (1, 2):
            at += timedelta(days=1 if position == 1 else 7, hours=rng.uniform(0, 6))
            key = self.touch(campaign, account, person, "linkedin_message", position, at, facts)
            if rng.random() < self.reply_odds(facts) * (1.1 if position == 1 else 0.5):
                self.conversation(at + timedelta(hours=rng.uniform(1, 96)), person, key,
                                  "linkedin", facts)  # fmt: skip
                return

    def email(self, campaign: str, account: str, person: dict[str, Any], t0: datetime,
              facts: dict[str, Any]) -> None:  # fmt: skip
        rng = self.rng
        at = t0
        for position, gap in ((0, 0), (1, 4), (2, 5)):
            at += timedelta(days=gap, minutes=rng.uniform(0, 240))
            key = self.touch(campaign, account, person, "email", position, at, facts)
            later = at + timedelta(hours=rng.uniform(0.1, 72))
            if position == 0 and rng.random() < 0.03:
                self.event("bounce", at + timedelta(minutes=2), person, key, "email")
                return
            if rng.random() < 0.10:
                self.event("auto_reply", at + timedelta(minutes=rng.uniform(1, 30)), person,
                           key, "email", text="I am out of the office.")  # fmt: skip
            if rng.random() < 0.012:
                self.event("unsubscribe", later, person, key, "email")
                return
            if rng.random() < self.reply_odds(facts) * (0.8, 0.4, 0.25)[position]:
                self.conversation(later, person, key, "email", facts)
                return

    def stranger(self, i: int) -> None:
        """An event about someone the tool never contacted: stored unmatched."""
        rng = self.rng
        channel: Channel = rng.choice(("linkedin", "linkedin", "email"))
        who = {"email": f"stranger{i}@elsewhere.example",
               "url": f"https://www.linkedin.com/in/stranger-{i}"}  # fmt: skip
        kind: EventKind = (
            rng.choice(("connection_accepted", "message_received"))
            if channel == "linkedin"
            else rng.choice(("email_reply", "auto_reply"))
        )
        at = START + timedelta(days=rng.uniform(0, WEEKS * 7))
        self.event(kind, at, who, None, channel, text="Hello")


def _people(
    rng: random.Random, accounts: int, mean: float
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Each account's people: 1 plus a geometric number more, `mean` on average."""
    for a in range(accounts):
        account = f"acct-{a:05d}"
        more = round(rng.expovariate(1 / (mean - 1))) if mean > 1 else 0
        for p in range(1 + min(more, 30)):
            slug = f"p{a:05d}-{p}"
            yield (
                a,
                account,
                {
                    "email": f"{slug}@company{a:05d}.example",
                    "url": f"https://www.linkedin.com/in/{slug}",
                    "seat": SEATS[(a + p) % 2],
                },
            )


def generate(
    data_dir: Path | str, *, accounts: int = 10_000, events: int = 100_000, seed: int = 7,
    api_accounts: int = 100, people_per_account: float = 3.0,
) -> dict[str, Any]:  # fmt: skip
    """Fill the stores under `data_dir` (which must hold none yet) and return the counts.
    `events` is a floor: what the people answer is kept, unmatched events make up the rest."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if (data_dir / "outbox.sqlite").exists() or (data_dir / "events.sqlite").exists():
        raise FileExistsError(f"{data_dir} already holds stores; give an empty directory")
    started = time.perf_counter()
    rng = random.Random(seed)
    sink = _Sink()
    api = _Api(data_dir)
    history = _History(rng, sink, api)
    plan = {}
    for a in range(accounts):
        campaign, channels, _ = rng.choices(CAMPAIGNS, weights=[w for *_, w in CAMPAIGNS])[0]
        version = rng.choice((1, 2))
        plan[a] = (campaign, channels, rng.choices((1, 2, 3), weights=(20, 35, 45))[0], version)
    people = 0
    try:
        for a, account, person in _people(rng, accounts, people_per_account):
            people += 1
            if a == api_accounts:
                history.api = None
            campaign, channels, tier, version = plan[a]
            t0 = START + timedelta(days=rng.uniform(0, WEEKS * 7 - 3))
            for channel in channels:
                generic = min(max(rng.gauss(0.35, 0.18), 0.0), 1.0)
                kind = "email" if channel == "email" else "linkedin_note"
                facts = dict(
                    tier=tier, prompt_version=f"personalize_{kind}@{version}",
                    genericness=round(generic, 3),
                    verdict="findings" if generic > 0.6 or rng.random() < 0.1 else "clean",
                )  # fmt: skip
                write = history.linkedin if channel == "linkedin" else history.email
                write(campaign, account, person, t0, facts)
                t0 += timedelta(days=14)
        history.api = None
        for i in range(max(events - history.n, 0)):
            history.stranger(i)
        _bulk(data_dir, sink)
        check_same_shape(data_dir)
    finally:
        api.close()
    seconds = time.perf_counter() - started
    return {
        "accounts": accounts,
        "people": people,
        "outbox_sent": sum(sink.steps.values()),
        "steps": dict(sink.steps),
        "events": history.n,
        "matched": sink.matched,
        "unmatched": history.n - sink.matched,
        "kinds": dict(sink.kinds),
        "api_accounts": min(api_accounts, accounts),
        "seconds": round(seconds, 2),
    }


def _insert(db: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    have = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
    missing = set(rows[0]) - set(have)
    if missing:
        raise RuntimeError(f"{table} has no column {sorted(missing)}: the schema moved on")
    cols = list(rows[0])
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    db.executemany(sql, ([r[c] for c in cols] for r in rows))


def _bulk(data_dir: Path, sink: _Sink) -> None:
    """The rows past the API sample, one transaction per file."""
    db = sqlite3.connect(data_dir / "outbox.sqlite")
    with db:  # one transaction: committed at the end, rolled back on an error
        _insert(db, "outbox", sink.outbox)
    db.close()
    db = sqlite3.connect(data_dir / "events.sqlite")
    with db:
        _insert(db, "events", sink.events)
        db.executemany(
            "INSERT INTO escalation_events (event_key, stage, at, note) VALUES (?, ?, ?, ?)",
            sink.stages,
        )
    db.close()


def check_same_shape(data_dir: Path) -> None:
    """An API-written row and a bulk-written row of each table have the same columns filled
    and the same kinds of values, and read back through the product's classes."""
    ends: dict[str, tuple[sqlite3.Row, sqlite3.Row]] = {}
    for path, table in (
        ("outbox.sqlite", "outbox"),
        ("events.sqlite", "events"),
        ("events.sqlite", "escalation_events"),
    ):
        db = sqlite3.connect(data_dir / path)
        db.row_factory = sqlite3.Row
        first = db.execute(f"SELECT * FROM {table} ORDER BY rowid LIMIT 1").fetchone()
        last = db.execute(f"SELECT * FROM {table} ORDER BY rowid DESC LIMIT 1").fetchone()
        db.close()
        if first is None or last is None:
            continue
        ends[table] = (first, last)
        shape = [(k, type(first[k]).__name__) for k in first.keys() if k != "note"]
        bulk = [(k, type(last[k]).__name__) for k in last.keys() if k != "note"]
        nullable = {"outbox_key", "provider_id"}
        diff = [(a, b) for a, b in zip(shape, bulk, strict=True) if a != b and a[0] not in nullable]
        if diff:
            raise RuntimeError(f"{table}: API rows and bulk rows differ: {diff}")
    outbox = Outbox(data_dir / "outbox.sqlite")
    store = EventStore(data_dir / "events.sqlite")
    try:
        for row in ends.get("outbox", ()):
            entry = outbox.get(row["key"])
            assert entry is not None and entry.touch.prompt_version, "read back with its facts"
        for row in ends.get("events", ()):
            assert store.get(row["key"]) is not None, "an event reads back"
    finally:
        outbox.close()
        store.close()


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    accounts = int(argv[1]) if len(argv) > 1 else 10_000
    events = int(argv[2]) if len(argv) > 2 else 100_000
    seed = int(argv[3]) if len(argv) > 3 else 7
    counts = generate(argv[0], accounts=accounts, events=events, seed=seed)
    for name, value in counts.items():
        print(f"{name:>13}: {value}")
    print(f"generated {counts['events']:,} events over {counts['outbox_sent']:,} sent touches "
          f"for {accounts:,} accounts in {counts['seconds']} s")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
