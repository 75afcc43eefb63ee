"""Closing the loop: events in, once each, matched to the sent touch they answer.

Events arrive from Dux-Soup's webhook (`gtm.web.webhooks`), from a person at the terminal
(`gtm events add`) and from the drop folder `<data dir>/events/incoming/` (`gtm sync`). All of
them go through `ingest`: an event whose key was seen changes nothing; a new one is matched to a
`sent` outbox entry by an exact identifier only, and stored matched or unmatched.

Matching, in order:
1. an email whose `In-Reply-To`/`References` holds the Message-ID the outbox recorded for a sent
   email is that email's answer;
2. otherwise the person's identifier, in its canonical form (an address as `tools.suppression`
   keeps it, a profile URL as `gtm.domain.identity.profile_url` gives it), must equal the sent
   entry's contact key or the address the action went to (kept with the outbox row: a contact
   with an email is keyed by it, and Dux-Soup names only the profile), or, for rows written
   before the outbox kept it, the profile the local action log recorded under that entry's key.
   Among the person's sent touches of a step the event can answer (an acceptance answers a
   connection request, a reply answers a note or a message) the latest one sent at or before
   the event is the one it answers.
Nothing else (names, companies, domains) is ever used: no exact match means unmatched.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from gtm.app.escalation_pass import apply_rules
from gtm.app.workspace import Workspace
from gtm.domain.events import Event, EventKind
from gtm.domain.identity import PROFILE_URL_EXAMPLE, profile_url
from gtm.domain.models import Channel, OutboxEntry, Step
from tools.events import EventStore, person_of
from tools.local_outbox import LocalLinkedInOutbox
from tools.outbox import Outbox
from tools.suppression import canonical, email_address

__all__ = [
    "IngestReport",
    "FolderReport",
    "ingest",
    "ingest_into",
    "ingest_folder",
    "sync",
    "local_event",
    "match",
    "why_invalid",
    "drop_folder",
    "CHANNEL_OF",
    "MAX_EVENT_FILE_BYTES",
]

CHANNEL_OF: Mapping[EventKind, Channel | None] = {
    "connection_accepted": "linkedin",
    "message_received": "linkedin",
    "email_reply": "email",
    "auto_reply": "email",
    "bounce": "email",
    "unsubscribe": None,
    "meeting_booked": None,
    "opportunity": None,
}
"""The channel a kind of event comes from; None when it can come from either."""

_ANSWERS: Mapping[EventKind, frozenset[Step]] = {
    "connection_accepted": frozenset({"linkedin_connect"}),
    "message_received": frozenset({"linkedin_connect", "linkedin_message"}),
    "email_reply": frozenset({"email"}),
    "auto_reply": frozenset({"email"}),
    "bounce": frozenset({"email"}),
    "unsubscribe": frozenset({"linkedin_connect", "linkedin_message", "email"}),
    "meeting_booked": frozenset({"linkedin_connect", "linkedin_message", "email"}),
    "opportunity": frozenset({"linkedin_connect", "linkedin_message", "email"}),
}
"""Which sent steps an event of each kind can answer (a profile visit is answered by nothing)."""

MAX_EVENT_FILE_BYTES = 1_000_000


@dataclass
class IngestReport:
    """What one ingest did: each event is counted as `new` or `duplicate`, and each new one as
    `matched` or `unmatched`."""

    new: int = 0
    duplicate: int = 0
    matched: int = 0
    unmatched: int = 0

    def add(self, other: IngestReport) -> None:
        self.new += other.new
        self.duplicate += other.duplicate
        self.matched += other.matched
        self.unmatched += other.unmatched


@dataclass
class FolderReport:
    """What `gtm sync` did with the drop folder: the ingest counts, and each rejected file
    with the reason (which field) it was refused."""

    ingested: IngestReport = field(default_factory=IngestReport)
    done: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


def why_invalid(event: Event) -> str | None:
    """Why `event` cannot be taken in, naming the field; None when it can. An event must name
    its person by the identifier of its channel, in a valid form, and say when it happened with
    a time zone (a naive time cannot be ordered against the outbox)."""
    want = CHANNEL_OF[event.kind]
    if want is not None and event.channel != want:
        return f"channel: a {event.kind} event comes from {want}, not {event.channel}"
    if event.at.tzinfo is None or event.at.utcoffset() is None:
        return "at: give a time zone, e.g. 2025-03-01T09:30:00Z"
    if event.email is not None and email_address(event.email) is None:
        return f"email: {event.email!r} is not an email address"
    if event.linkedin_url is not None and profile_url(event.linkedin_url) is None:
        return f"linkedin_url: not a profile URL like {PROFILE_URL_EXAMPLE!r}"
    if event.channel == "email" and event.email is None:
        return "email: an email event needs the person's address"
    if event.channel == "linkedin" and event.linkedin_url is None:
        return "linkedin_url: a LinkedIn event needs the person's profile URL"
    return None


def _message_id(value: str) -> str:
    v = value.strip()
    return v if v.startswith("<") else f"<{v}>"


def _person_key(contact_key: str) -> str:
    return canonical("person_key", contact_key) or contact_key.strip().lower()


def match(
    event: Event, sent: Sequence[OutboxEntry], profiles: Mapping[str, str] | None = None
) -> OutboxEntry | None:
    """The sent touch `event` answers, by exact identifier (see the module docstring), or None.

    `sent` are the outbox's `sent` entries, each with the address it went to (`touch.recipient`);
    `profiles` maps an outbox key to the canonical profile URL the local twin performed the
    action on, for rows written before the outbox kept the address.
    """
    can_answer = [e for e in sent if e.state == "sent" and e.step in _ANSWERS[event.kind]]
    if event.channel == "email" and event.in_reply_to:
        ids = {_message_id(m) for m in event.in_reply_to}
        by_id = [e for e in can_answer if e.provider_id and _message_id(e.provider_id) in ids]
        if by_id:
            return max(by_id, key=lambda e: e.created_at)
    person = person_of(event)
    if person is None:
        return None
    profiles = profiles or {}
    mine = [
        e
        for e in can_answer
        if e.channel == event.channel
        and person in (_person_key(e.contact_key), e.touch.recipient, profiles.get(e.key))
        and e.created_at <= event.at
    ]
    return max(mine, key=lambda e: e.created_at) if mine else None


def ingest_into(
    store: EventStore,
    outbox: Outbox,
    events: Iterable[Event],
    *,
    profiles: Mapping[str, str] | None = None,
) -> IngestReport:
    """Take `events` in: each new one is matched and stored; a seen key changes nothing.

    Every event must pass `why_invalid` (the caller checks and refuses the batch first); a
    ValueError here means a caller skipped that.
    """
    report = IngestReport()
    batch = list(events)
    for ev in batch:
        if (why := why_invalid(ev)) is not None:
            raise ValueError(f"event {ev.key!r}: {why}")
    sent = outbox.entries(state="sent")
    for ev in batch:
        if store.seen(ev.key):
            report.duplicate += 1
            continue
        hit = match(ev, sent, profiles)
        if store.ingest(ev, outbox_key=hit.key if hit else None):
            report.new += 1
            if hit is not None:
                report.matched += 1
            else:
                report.unmatched += 1
        else:  # another process stored it between seen() and ingest()
            report.duplicate += 1
    return report


def _profiles(ws: Workspace) -> dict[str, str]:
    """Outbox key → profile URL, from the local LinkedIn action log (the embedded default)."""
    li = ws.deps.linkedin
    if not isinstance(li, LocalLinkedInOutbox):
        return {}
    return {a.key: url for a in li.actions() if (url := profile_url(a.profile_url))}


def ingest(ws: Workspace, events: Iterable[Event]) -> IngestReport:
    """Take `events` into the workspace's event store, matched against its outbox; opt-outs
    and bounces among them suppress at once (`gtm.app.escalation_pass.apply_rules`, no model)."""
    batch = list(events)
    report = ingest_into(ws.events, ws.deps.outbox, batch, profiles=_profiles(ws))
    apply_rules(ws, keys=[e.key for e in batch])
    return report


def local_event(
    *,
    kind: EventKind,
    at: datetime,
    email: str | None = None,
    linkedin_url: str | None = None,
    channel: Channel | None = None,
    text: str = "",
    subject: str | None = None,
    in_reply_to: Sequence[str] = (),
) -> Event:
    """An event a person adds by hand. Its key is a hash of what it says, so adding the same
    event (same kind, person, time and text) twice is one event."""
    ch: Channel = channel or CHANNEL_OF[kind] or ("linkedin" if linkedin_url else "email")
    who = [email or "", linkedin_url or ""]
    raw = json.dumps(
        [kind, ch, *who, at.astimezone(UTC).isoformat(), subject or "", text, list(in_reply_to)]
    )
    return Event(
        key="local:" + hashlib.sha256(raw.encode()).hexdigest()[:32],
        source="local",
        kind=kind,
        channel=ch,
        at=at,
        email=email,
        linkedin_url=linkedin_url,
        in_reply_to=tuple(in_reply_to),
        subject=subject,
        text=text,
    )


def drop_folder(data_dir: Path) -> Path:
    """`<data dir>/events/incoming`: one Event JSON per `*.json` file."""
    return data_dir / "events" / "incoming"


def _why_file(path: Path) -> tuple[Event | None, str]:
    try:
        if path.stat().st_size > MAX_EVENT_FILE_BYTES:
            return None, f"file: larger than {MAX_EVENT_FILE_BYTES} bytes"
        raw = path.read_bytes()
    except OSError as exc:
        return None, f"file: cannot read it ({exc.strerror or exc})"
    try:
        ev = Event.model_validate_json(raw)
    except ValidationError as exc:
        problems = []
        for e in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(p) for p in e["loc"]) or "file"
            problems.append(f"{where}: {e['msg']}")
        return None, "; ".join(problems)
    why = why_invalid(ev)
    return (None, why) if why else (ev, "")


def _move(path: Path, folder: Path) -> Path:
    """Move `path` into `folder` without overwriting a file of the same name there."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists():
        target = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    os.replace(path, target)
    return target


def ingest_folder(
    store: EventStore,
    outbox: Outbox,
    incoming: Path,
    *,
    profiles: Mapping[str, str] | None = None,
) -> FolderReport:
    """Ingest every `*.json` in `incoming`, oldest name first. A good file moves to `../done/`
    after its event is stored (a crash before the move only re-ingests a duplicate); a file that
    does not validate moves to `../rejected/` with a `.why` file naming the field, and nothing of
    it is recorded."""
    report = FolderReport()
    if not incoming.is_dir():
        return report
    done, rejected = incoming.parent / "done", incoming.parent / "rejected"
    for path in sorted(incoming.glob("*.json")):
        if not path.is_file():
            continue
        ev, why = _why_file(path)
        if ev is None:
            moved = _move(path, rejected)
            moved.with_name(moved.name + ".why").write_text(why + "\n", encoding="utf-8")
            report.rejected.append((path.name, why))
            continue
        report.ingested.add(ingest_into(store, outbox, [ev], profiles=profiles))
        _move(path, done)
        report.done.append(path.name)
    return report


def sync(ws: Workspace) -> FolderReport:
    """Take in the drop folder and apply the opt-out rules to what came in (what `gtm run`
    does before it advances sequences; `gtm.app.sync.sync_all` adds the mailbox and the
    escalation pass)."""
    incoming = drop_folder(ws.settings.data_dir)
    incoming.mkdir(parents=True, exist_ok=True)
    report = ingest_folder(ws.events, ws.deps.outbox, incoming, profiles=_profiles(ws))
    apply_rules(ws)
    return report
