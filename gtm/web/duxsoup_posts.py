"""What a Dux-Soup webhook post carries: events, profile visits, and the pairs we do not map.

Parsing only; `gtm.web.webhooks` receives the posts (the secret URL, size limit, answers) and
hands their bodies here. Nothing here does I/O.

How Dux-Soup delivers (its support article "Webhook by Example",
support.dux-soup.com/article/114-webhook-by-example): in Dux-Soup Options → Connect tab the user
switches webhooks on and sets a *Target URL*, picks the event types to send, and can press *Send
Sample*. Each event is one HTTP POST whose JSON body is an envelope
`{"userid", "time", "type", "event", "data"}`: the Dux-Soup user, when the event was created
(ISO 8601), the event type and its stage (e.g. `visit` / `create`), and the details, where a
profile's `data` carries `id` and `Profile` (the profile URL).

Which (type, stage) pairs mean "connection accepted" and "message received" is not confirmed:
the article shows only the visit event, and no public integration we could find (searched:
Dux-Soup's support pages, GitHub code and issues, n8n/Zapier/Make material) shows a real post
of either. Third-party receivers name `message`, `action` and `rccommand` types besides `visit`
and `scan`, without samples. So `DUXSOUP_KINDS` is a guess that a user checks and corrects
without a code change: `GTM_DUXSOUP_WEBHOOK_KINDS` (or `duxsoup_webhook_kinds` in the config
file) adds `type.stage` → kind pairs, or turns a built-in one off with `ignore` (`duxsoup_kinds`).
A pair that is not mapped is named in `DuxSoupPost.ignored`, so the receiver can acknowledge it,
record nothing and say so.

Profile visits (`visit.create`, `visit.update`) are not events: `read_visits` turns each into a
snapshot of the profile's text fields (`tools.profiles`), which research turns into facts about
that contact. Nothing is ever fetched from LinkedIn.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from gtm.app.loop import why_invalid
from gtm.domain.events import Event, EventKind
from gtm.domain.identity import profile_url
from tools.profiles import ProfileField, ProfileSnapshot

__all__ = [
    "DUXSOUP_KINDS",
    "VISIT_FIELDS",
    "VISIT_STAGES",
    "DuxSoupPost",
    "PayloadError",
    "WebhookConfigError",
    "duxsoup_events",
    "duxsoup_kinds",
    "read_post",
    "read_visits",
]

DUXSOUP_KINDS: Mapping[tuple[str, str], EventKind] = {
    ("connected", "create"): "connection_accepted",
    ("message", "received"): "message_received",
}
"""(type, stage) of a Dux-Soup post → the event it is, built in. Unconfirmed (see the module
docstring): these follow the article's `type`/`event` scheme; `duxsoup_kinds` puts the user's
`GTM_DUXSOUP_WEBHOOK_KINDS` on top. Every other pair is acknowledged and ignored."""

VISIT_STAGES = ("create", "update")
"""Stages of Dux-Soup's `visit` type that carry profile details (see the module docstring)."""
VISIT_FIELDS: Mapping[str, ProfileField] = {
    "Title": "title",
    "Company": "company",
    "Summary": "summary",
    "Location": "location",
    "Industry": "industry",
}
"""A visit's `data` field → the profile field kept (`tools.profiles`: capped, one line, text as
text). Documented: the article's visit example shows `Title` and `Company`, and says the create
stage "contains most of the profile details" and the update stage completes them; a receiver's
field reference (harehimself/duxsoup-etl, docs/WEBHOOK_PAYLOADS.md) adds `Summary`, `Location`,
`Industry`. Contact details, pictures and tags are never kept."""

_KINDS: Mapping[str, EventKind] = {
    "connection_accepted": "connection_accepted",
    "message_received": "message_received",
}
_UNSAFE = re.compile(r"[^a-z0-9_-]")


class WebhookConfigError(ValueError):
    """The webhook's configuration cannot be used: a secret that cannot guard a URL (too short,
    or not URL-safe; `gtm.web.webhooks.check_secret`), or a bad `GTM_DUXSOUP_WEBHOOK_KINDS`
    entry (`duxsoup_kinds`)."""


class PayloadError(ValueError):
    """A post that is not a Dux-Soup event we can take; the message names the field only."""


def duxsoup_kinds(extra: Mapping[str, str] | None = None) -> dict[tuple[str, str], EventKind]:
    """`DUXSOUP_KINDS` with `extra` (`"type.stage"` → `connection_accepted`, `message_received`
    or `ignore`, as `GTM_DUXSOUP_WEBHOOK_KINDS` holds them) on top. Raises `WebhookConfigError`
    naming the first bad entry."""
    kinds = dict(DUXSOUP_KINDS)
    for key, value in (extra or {}).items():
        type_, dot, stage = key.lower().partition(".")
        if not (type_ and dot and stage):
            raise WebhookConfigError(
                f"GTM_DUXSOUP_WEBHOOK_KINDS: entry {key!r}: the key must be type.stage"
            )
        if value == "ignore":
            kinds.pop((type_, stage), None)
        elif value in _KINDS:
            kinds[(type_, stage)] = _KINDS[value]
        else:
            raise WebhookConfigError(
                f"GTM_DUXSOUP_WEBHOOK_KINDS: entry {key!r} = {value!r}: must be one of "
                f"{', '.join([*_KINDS, 'ignore'])}"
            )
    return kinds


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    userid: str
    time: AwareDatetime
    type: str
    event: str
    data: dict[str, Any]


def _text(data: Mapping[str, Any]) -> str:
    """The message text, from `data.Message` (or `data.message`; unconfirmed, like
    `DUXSOUP_KINDS`); empty when absent: the kind of event still holds without it."""
    for field in ("Message", "message"):
        value = data.get(field)
        if isinstance(value, str):
            return value
    return ""


def _pair(type_: str, stage: str) -> str:
    """`type.stage` as it may be shown or logged: lower case, 40 characters a part, anything
    but letters, digits, `_` and `-` replaced (a post cannot write into the log)."""
    return f"{_UNSAFE.sub('?', type_.lower()[:40])}.{_UNSAFE.sub('?', stage.lower()[:40])}"


@dataclass(frozen=True)
class DuxSoupPost:
    """What one post carries: the events we take, and the pairs we do not map."""

    events: list[Event]
    ignored: list[str]
    """`type.stage` of every envelope no mapping takes, each once, in the order they came."""


def read_post(
    payload: Any, kinds: Mapping[tuple[str, str], EventKind] = DUXSOUP_KINDS
) -> DuxSoupPost:
    """The events a Dux-Soup post carries (one envelope, or a list of them) and the pairs it
    carries that `kinds` does not map. Raises `PayloadError` naming the field when the post is
    malformed: then nothing of it is taken, mapped or not.

    The key is the Dux-Soup user, the type and stage, the record's `data.id` and the envelope's
    `time`: a redelivered post is the same event, two messages from one person are two.
    """
    events: list[Event] = []
    ignored: list[str] = []
    for where, env in _envelopes(payload):
        kind = kinds.get((env.type.lower(), env.event.lower()))
        if kind is None:
            if (pair := _pair(env.type, env.event)) not in ignored:
                ignored.append(pair)
            continue
        key, url = _key_and_profile(env, where)
        event = Event(
            key=key,
            source="duxsoup",
            kind=kind,
            channel="linkedin",
            at=env.time,
            linkedin_url=url,
            text=_text(env.data),
        )
        if (why := why_invalid(event)) is not None:
            raise PayloadError(f"{where}{why}")
        events.append(event)
    return DuxSoupPost(events=events, ignored=ignored)


def read_visits(payload: Any) -> list[ProfileSnapshot]:
    """The profile snapshots a post carries: one per `visit` envelope of a stage in
    `VISIT_STAGES`, with the `VISIT_FIELDS` its `data` holds as text, seen at the envelope's
    `time`, keyed like an event (user, type and stage, `data.id`, time), so a redelivery is the
    same snapshot. Raises `PayloadError` naming the field when the post is malformed or such a
    visit has no `data.id` or usable `data.Profile`: then nothing of the post is taken."""
    out: list[ProfileSnapshot] = []
    for where, env in _envelopes(payload):
        if env.type.lower() != "visit" or env.event.lower() not in VISIT_STAGES:
            continue
        key, url = _key_and_profile(env, where)
        data = env.data
        fields: dict[str, str] = {
            ours: v for k, ours in VISIT_FIELDS.items() if isinstance(v := data.get(k), str)
        }
        out.append(
            ProfileSnapshot(
                key=key, person=url, seen_at=env.time, source="duxsoup:visit", fields=fields
            )
        )
    return out


def _envelopes(payload: Any) -> list[tuple[str, _Envelope]]:
    """Each envelope of a post (one, or a list of them) with where it is (`[n].` in a list),
    validated; raises `PayloadError` naming the first bad one's fields."""
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise PayloadError("body: an empty list")
    out: list[tuple[str, _Envelope]] = []
    for n, item in enumerate(items):
        where = f"[{n}]." if isinstance(payload, list) else ""
        try:
            out.append((where, _Envelope.model_validate(item)))
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()})
            raise PayloadError(
                ", ".join(where + f for f in fields) + ": missing or invalid"
            ) from None
    return out


def _key_and_profile(env: _Envelope, where: str) -> tuple[str, str]:
    """The idempotency key of an envelope we take, and its canonical profile URL; raises
    `PayloadError` when `data.id` or `data.Profile` cannot give them."""
    record = env.data.get("id")
    if not isinstance(record, str | int) or isinstance(record, bool) or str(record) == "":
        raise PayloadError(f"{where}data.id: missing or invalid")
    raw_profile = env.data.get("Profile")
    url = profile_url(raw_profile) if isinstance(raw_profile, str) else None
    if url is None:
        raise PayloadError(f"{where}data.Profile: not a LinkedIn profile URL")
    stamp = env.time.isoformat()
    return f"duxsoup:{env.userid}:{env.type.lower()}.{env.event.lower()}:{record}:{stamp}", url


def duxsoup_events(
    payload: Any, kinds: Mapping[tuple[str, str], EventKind] = DUXSOUP_KINDS
) -> list[Event]:
    """The events of `read_post`, leaving out the pairs not mapped."""
    return read_post(payload, kinds).events
