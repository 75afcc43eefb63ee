"""Dux-Soup's webhook: LinkedIn events in, from a post only the user's secret URL can make.

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
file) adds `type.stage` → kind pairs, or turns a built-in one off with `ignore`. Every post of
a pair that is not mapped is acknowledged (202), recorded nowhere, named in the JSON answer
(`"ignored": ["visit.create"]`) and logged once per new pair (a warning: `gtm serve` shows
warnings), so what Dux-Soup really sends shows up the first time it sends it.

Dux-Soup offers no signing secret and no custom header: the target URL is all a user can set. So
the secret is the URL: the receiver listens on `/webhooks/duxsoup/<secret>`, where the secret is
`GTM_DUXSOUP_WEBHOOK_SECRET` (at least 32 URL-safe characters), compared in constant time. A post
to any other path gets the same 404 as an unknown page. The secret is never logged: the server
runs without an access log, and nothing here writes the path anywhere.

Profile visits (`visit.create`, `visit.update`) are not events: given a profile store (`gtm
serve` gives it the workspace's), the receiver keeps each as a snapshot of the profile's text
fields (`read_visits`), which research turns into facts about that contact, and answers how many
changed what is known (`"profiles"`, in the answer to a post that carries visits). Without a
store they are ignored as above. Nothing is ever fetched from LinkedIn.

Refused posts (wrong secret, body too large, not JSON, not the envelope, a mapped event or a
visit taken as a profile with no usable profile) get a 4xx and nothing of them is recorded.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gtm.app.loop import IngestReport, why_invalid
from gtm.app.settings import Settings
from gtm.domain.events import Event, EventKind
from gtm.domain.identity import profile_url
from gtm.domain.models import OutboxEntry
from tools.profiles import ProfileField, ProfileSnapshot
from tools.unsubscribe import ONE_CLICK_BODY, check_unsubscribe_secret, key_of

__all__ = [
    "DUXSOUP_KINDS",
    "MAX_BODY_BYTES",
    "VISIT_FIELDS",
    "VISIT_STAGES",
    "DuxSoupPost",
    "PayloadError",
    "WebhookConfigError",
    "check_secret",
    "duxsoup_events",
    "duxsoup_kinds",
    "duxsoup_route",
    "read_post",
    "read_visits",
    "unsubscribe_route",
    "webhook_path",
    "webhook_routes",
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
MAX_BODY_BYTES = 256 * 1024
MAX_PAIRS_LOGGED = 64
"""Distinct unmapped pairs a receiver logs; past that a sender cannot grow its memory."""
_SECRET = re.compile(r"[A-Za-z0-9_-]{32,256}")
_UNSAFE = re.compile(r"[^a-z0-9_-]")
log = logging.getLogger("gtm.web.webhooks")


class WebhookConfigError(ValueError):
    """The configured webhook secret cannot guard a URL (too short, or not URL-safe)."""


class PayloadError(ValueError):
    """A post that is not a Dux-Soup event we can take; the message names the field only."""


def check_secret(secret: str) -> str:
    """`secret` if it can be the URL's secret path segment; raises `WebhookConfigError`."""
    if not _SECRET.fullmatch(secret):
        raise WebhookConfigError(
            "GTM_DUXSOUP_WEBHOOK_SECRET must be 32 to 256 characters of A-Z a-z 0-9 _ - "
            "(e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return secret


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


def webhook_path(secret: str) -> str:
    """The path to give Dux-Soup as its Target URL (after this server's address)."""
    return f"/webhooks/duxsoup/{check_secret(secret)}"


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


async def _body(request: Request) -> bytes | None:
    """The body, or None once it passes `MAX_BODY_BYTES` (read no further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def duxsoup_route(
    secret: str,
    ingest: Callable[[Sequence[Event]], IngestReport],
    *,
    kinds: Mapping[tuple[str, str], EventKind] = DUXSOUP_KINDS,
    profiles: Callable[[Sequence[ProfileSnapshot]], int] | None = None,
) -> Route:
    """A Starlette route for Dux-Soup's posts, to add to any app's routes (`gtm serve`,
    `gtm inbox --web`). `ingest` takes the events in (`gtm.app.loop.ingest` bound to the open
    workspace); it runs on the server's event loop, where the workspace's stores were opened.
    `kinds` maps (type, stage) to events (`duxsoup_kinds`); a pair it does not map is named in
    the answer's `ignored` and logged the first time this route sees it. `profiles`, when
    given, stores the post's visits (`read_visits`; the workspace's `ProfileStore.record`) and
    says how many changed what is known: visits are then taken, not ignored."""
    taken = {f"visit.{stage}" for stage in VISIT_STAGES} if profiles is not None else set()
    expected = check_secret(secret).encode()
    logged: set[str] = set()

    def note(ignored: list[str]) -> None:
        for pair in ignored:
            if pair not in logged and len(logged) < MAX_PAIRS_LOGGED:
                logged.add(pair)
                log.warning(
                    "Dux-Soup webhook: a post of type.stage %s, which no mapping takes, was "
                    "acknowledged and not recorded (if it is an accept or a reply, map it in "
                    "GTM_DUXSOUP_WEBHOOK_KINDS)",
                    pair,
                )

    async def receive(request: Request) -> Response:
        given = str(request.path_params.get("secret", "")).encode()
        if not hmac.compare_digest(given, expected):
            return PlainTextResponse("Not Found", status_code=404)
        body = await _body(request)
        if body is None:
            return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return JSONResponse({"error": "body: not JSON"}, status_code=400)
        try:
            post = read_post(payload, kinds)
            visits = read_visits(payload) if profiles is not None else []
        except PayloadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        ignored = [pair for pair in post.ignored if pair not in taken]
        note(ignored)
        seen = {"profiles": profiles(visits)} if profiles is not None and visits else {}
        if not post.events:
            return JSONResponse({**seen, "ignored": ignored}, status_code=200 if visits else 202)
        report = ingest(post.events)
        return JSONResponse(
            {
                "new": report.new,
                "duplicate": report.duplicate,
                "matched": report.matched,
                "unmatched": report.unmatched,
                **seen,
                "ignored": ignored,
            }
        )

    return Route("/webhooks/duxsoup/{secret}", receive, methods=["POST"])


_CONFIRM_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unsubscribe</title>
<meta name="robots" content="noindex"></head><body>
<p>Stop receiving these emails?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form></body></html>
"""
_DONE_PAGE = "You are unsubscribed: you will not hear from us again.\n"


def _asks_one_click(body: bytes, content_type: str) -> bool:
    """Whether a POST carries `List-Unsubscribe=One-Click`, form-encoded or multipart."""
    name, value = ONE_CLICK_BODY.split("=")
    if content_type.lower().startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        msg = BytesParser(policy=policy.default).parsebytes(head + body)
        for part in msg.iter_parts() if msg.is_multipart() else []:
            if part.get_param("name", header="content-disposition") == name:
                got = part.get_payload(decode=True)
                return isinstance(got, bytes) and got.strip() == value.encode()
        return False
    try:
        form = parse_qs(body.decode("ascii"), strict_parsing=False)
    except UnicodeDecodeError:
        return False
    return value in form.get(name, [])


def unsubscribe_route(
    secret: str,
    lookup: Callable[[str], OutboxEntry | None],
    ingest: Callable[[Sequence[Event]], IngestReport],
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Route:
    """RFC 8058 one-click unsubscribe at `/unsubscribe/<token>` (`tools.unsubscribe` signs the
    token; `lookup` is the outbox's `get`, `ingest` as for `duxsoup_route`).

    A POST whose body holds `List-Unsubscribe=One-Click` (form-encoded or multipart, as mail
    providers send it) records one `unsubscribe` event for the email's recipient, keyed by the
    outbox key, so a second click changes nothing; it answers 200 with no redirect. A GET only
    shows a button that makes that POST: link scanners that fetch every URL in a message must
    never unsubscribe anyone. A token we did not sign gets the 404 of an unknown page; a signed
    one whose email is gone from the outbox (the person was erased) gets the same 200 and
    records nothing.
    """
    check_unsubscribe_secret(secret)

    async def receive(request: Request) -> Response:
        key = key_of(str(request.path_params.get("token", "")), secret)
        if key is None:
            return PlainTextResponse("Not Found", status_code=404)
        if request.method == "GET":
            return HTMLResponse(_CONFIRM_PAGE, headers={"Cache-Control": "no-store"})
        body = await _body(request)
        if body is None:
            return PlainTextResponse("body too large", status_code=413)
        if not _asks_one_click(body, request.headers.get("content-type", "")):
            return PlainTextResponse(f"expected {ONE_CLICK_BODY}", status_code=400)
        entry = lookup(key)
        if entry is not None and entry.channel == "email" and entry.state == "sent":
            event = Event(
                key=f"one-click:{key}",
                source="web",
                kind="unsubscribe",
                channel="email",
                at=clock(),
                email=entry.contact_key,
                in_reply_to=(entry.provider_id,) if entry.provider_id else (),
            )
            if why_invalid(event) is None:
                ingest([event])
        return PlainTextResponse(_DONE_PAGE, headers={"Cache-Control": "no-store"})

    return Route("/unsubscribe/{token}", receive, methods=["GET", "POST"])


def webhook_routes(
    settings: Settings,
    ingest: Callable[[Sequence[Event]], IngestReport],
    *,
    profiles: Callable[[Sequence[ProfileSnapshot]], int] | None = None,
) -> list[Route]:
    """The webhook routes `settings` asks for: Dux-Soup's when `GTM_DUXSOUP_WEBHOOK_SECRET` is
    set, with `GTM_DUXSOUP_WEBHOOK_KINDS` on top of the built-in pairs (raising
    `WebhookConfigError` if the secret cannot guard a URL or a pair is bad), storing visits
    through `profiles` when given (`duxsoup_route`), else none."""
    secret = settings.duxsoup_webhook_secret
    if secret is None:
        return []
    kinds = duxsoup_kinds(settings.duxsoup_webhook_kinds)
    return [duxsoup_route(secret.get_secret_value(), ingest, kinds=kinds, profiles=profiles)]
