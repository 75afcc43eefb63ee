"""Who may use the web inbox: sign-in and out, sessions, CSRF, and the security headers.

Security model: the server binds to loopback, answers only to loopback host names, and lets in
whoever presents the token it printed at start. The login form exchanges the token (and the
reviewer's name, recorded with every decision) for an HttpOnly, SameSite=Strict session cookie.
Every POST carries the session's CSRF token. Pages are sent with a strict Content-Security-Policy
and every value is escaped by Jinja, so research text that holds HTML or script stays inert.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import time
from typing import TYPE_CHECKING

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from gtm.web.app import WebInbox

__all__ = [
    "COOKIE",
    "LOOPBACK_NAMES",
    "SecurityHeaders",
    "Session",
    "inbox_of",
    "login",
    "login_required",
    "logout",
    "posted",
    "session_of",
]

COOKIE = "gtm_session"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclasses.dataclass
class Session:
    reviewer: str
    csrf: str
    flash: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    """Messages for the next page: (kind, text), kind one of ok, note, error."""


class SecurityHeaders:
    """Strict CSP and friends on every response, plus Server-Timing for the benchmark."""

    HEADERS = [
        (
            b"content-security-policy",
            b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
        (b"x-content-type-options", b"nosniff"),
        # same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on forms.
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
        (b"cache-control", b"no-store"),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - started) * 1000
                headers = list(message.get("headers", []))
                headers += self.HEADERS
                headers.append((b"server-timing", f"app;dur={ms:.1f}".encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def inbox_of(request: Request) -> WebInbox:
    """The running inbox (workspace, sessions, worker, templates) a request is served by."""
    inbox: WebInbox = request.app.state.inbox
    return inbox


def session_of(request: Request) -> Session | None:
    sid = request.cookies.get(COOKIE)
    return inbox_of(request).sessions.get(sid) if sid else None


def login_required(request: Request) -> Response:
    return inbox_of(request).render(
        "message.html",
        status=401,
        title="Sign in",
        message="Open the sign-in link that `gtm inbox --web` printed when it started.",
        session=None,
    )


async def posted(request: Request) -> tuple[Session, FormData] | Response:
    """The session and POSTed form, or the response that refuses them: no session, a wrong or
    missing CSRF token, another site's origin."""
    session = session_of(request)
    if session is None:
        return login_required(request)
    form = await request.form()
    sent = form.get("csrf")
    origin = request.headers.get("origin")
    if origin not in (None, "null") and origin != f"{request.url.scheme}://{request.url.netloc}":
        return _refuse(request, session, "This request came from another site and was refused.")
    if not _same(sent, session.csrf):
        return _refuse(request, session, "The form's security token is missing or stale. Reload.")
    return session, form


def _same(sent: object, secret: str) -> bool:
    """Constant-time comparison of a submitted secret (bytes, so any input is safe)."""
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), secret.encode())


def _refuse(request: Request, session: Session | None, message: str) -> Response:
    return inbox_of(request).render(
        "message.html", status=403, title="Refused", message=message, session=session
    )


async def login(request: Request) -> Response:
    inbox = inbox_of(request)
    if request.method == "GET":
        return inbox.render(
            "login.html",
            token=request.query_params.get("token", ""),
            reviewer=inbox.rt.settings.reviewer,
            error=None,
            session=None,
        )
    form = await request.form()
    sent, name = form.get("token"), form.get("reviewer")
    if not _same(sent, inbox.token):
        return inbox.render(
            "login.html",
            status=403,
            token="",
            reviewer=name if isinstance(name, str) else "",
            error="That token is not the one this server printed.",
            session=None,
        )
    reviewer = (name if isinstance(name, str) else "").strip()[:80] or inbox.rt.settings.reviewer
    sid = secrets.token_urlsafe(32)
    inbox.sessions[sid] = Session(reviewer=reviewer, csrf=secrets.token_urlsafe(32))
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/")
    return resp


async def logout(request: Request) -> Response:
    checked = await posted(request)
    if isinstance(checked, Response):
        return checked
    inbox_of(request).sessions.pop(request.cookies.get(COOKIE, ""), None)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp
