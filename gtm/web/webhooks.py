"""Dux-Soup's webhook: LinkedIn events in, from a post only the user's secret URL can make; and
the one-click unsubscribe link of our emails.

What a post carries, and how Dux-Soup delivers it, is `gtm.web.duxsoup_posts` (parsing only):
its events, its profile visits, and the (type, stage) pairs no mapping takes. Here is the
receiving: every post of a pair that is not mapped is acknowledged (202), recorded nowhere,
named in the JSON answer (`"ignored": ["visit.create"]`) and logged once per new pair (a
warning: `gtm serve` shows warnings), so what Dux-Soup really sends shows up the first time it
sends it.

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
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gtm.app.loop import IngestReport, why_invalid
from gtm.app.settings import Settings
from gtm.domain.events import Event, EventKind
from gtm.domain.models import OutboxEntry
from gtm.web.duxsoup_posts import (
    DUXSOUP_KINDS,
    VISIT_FIELDS,
    VISIT_STAGES,
    DuxSoupPost,
    PayloadError,
    WebhookConfigError,
    duxsoup_events,
    duxsoup_kinds,
    read_post,
    read_visits,
)
from tools.profiles import ProfileSnapshot
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

MAX_BODY_BYTES = 256 * 1024
MAX_PAIRS_LOGGED = 64
"""Distinct unmapped pairs a receiver logs; past that a sender cannot grow its memory."""
_SECRET = re.compile(r"[A-Za-z0-9_-]{32,256}")
log = logging.getLogger("gtm.web.webhooks")


def check_secret(secret: str) -> str:
    """`secret` if it can be the URL's secret path segment; raises `WebhookConfigError`."""
    if not _SECRET.fullmatch(secret):
        raise WebhookConfigError(
            "GTM_DUXSOUP_WEBHOOK_SECRET must be 32 to 256 characters of A-Z a-z 0-9 _ - "
            "(e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return secret


def webhook_path(secret: str) -> str:
    """The path to give Dux-Soup as its Target URL (after this server's address)."""
    return f"/webhooks/duxsoup/{check_secret(secret)}"


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
