"""Routes, sessions and the decision worker behind `gtm inbox --web`.

Security model: the server binds to loopback, answers only to loopback host names, and lets in
whoever presents the token it printed at start. The login form exchanges the token (and the
reviewer's name, recorded with every decision) for an HttpOnly, SameSite=Strict session cookie.
Every POST carries the session's CSRF token. Pages are sent with a strict Content-Security-Policy
and every value is escaped by Jinja, so research text that holds HTML or script stays inert.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import hmac
import logging
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import uvicorn
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gtm.app.ledger import ThreadRow
from gtm.app.llm import open_chat_model
from gtm.app.runner import (
    EDIT_BLOCKERS,
    DecisionRefused,
    Unsendable,
    apply_decision,
    pending_payload,
    review_edit,
    take_decision,
    unsendable,
)
from gtm.app.settings import Settings
from gtm.app.workspace import Workspace, open_workspace
from gtm.domain.models import Contact, Decision, Draft, Fact, Touch
from gtm.web.views import QueueFilters, build_queue, fmt_age, marked, source_link

__all__ = ["WebInbox", "create_app", "serve"]

log = logging.getLogger("gtm.web")

COOKIE = "gtm_session"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclasses.dataclass
class Session:
    reviewer: str
    csrf: str
    flash: list[tuple[str, str]] = dataclasses.field(default_factory=list)


class DecisionWorker:
    """Applies recorded decisions in the background, so a page answers at once even when a send
    waits out a pacing gap. A decision is durable before it gets here (`take_decision`)."""

    def __init__(self, apply: Callable[[ThreadRow], Awaitable[ThreadRow]], concurrency: int = 2):
        self._apply = apply
        self._gate = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.errors: dict[int, str] = {}

    def submit(self, row: ThreadRow) -> None:
        task = asyncio.create_task(self._run(row))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, row: ThreadRow) -> None:
        async with self._gate:
            try:
                done = await self._apply(row)
                log.info("#%s %s: %s → %s", row.id, row.company, row.decision, done.status)
            except Exception as exc:  # noqa: BLE001 - reported on the page; `gtm run` retries it
                self.errors[row.id] = f"{type(exc).__name__}: {exc}"
                log.exception("applying the decision on #%s failed", row.id)

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    @property
    def busy(self) -> int:
        return len(self._tasks)


class WebInbox:
    """Application state: the open runtime, sessions, the worker and the lazily started model."""

    def __init__(self, rt: Workspace, token: str, stack: contextlib.AsyncExitStack) -> None:
        self.rt = rt
        self.token = token
        self.sessions: dict[str, Session] = {}
        self._stack = stack
        self._model_rt: Workspace | None = None
        self._model_lock = asyncio.Lock()
        self.worker = DecisionWorker(self._apply)
        self.templates = Environment(
            loader=PackageLoader("gtm.web", "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["age"] = fmt_age
        self.templates.globals["marked"] = marked
        self.templates.globals["source_link"] = source_link

    async def _runtime_with_model(self) -> Workspace:
        """Regenerate needs the writer; start it on first use, not for every reviewer."""
        async with self._model_lock:
            if self._model_rt is None:
                settings = self.rt.settings
                model, desc = await self._stack.enter_async_context(
                    open_chat_model(settings.model_settings(), log_dir=settings.data_dir / "logs")
                )
                deps = dataclasses.replace(self.rt.deps, model=model, model_name=desc)
                self._model_rt = dataclasses.replace(self.rt, deps=deps, model_description=desc)
            return self._model_rt

    async def _apply(self, row: ThreadRow) -> ThreadRow:
        try:
            rt = await self._runtime_with_model() if row.decision == "regenerate" else self.rt
        except BaseException:
            self.rt.ledger.release(row.id)  # the next `gtm run` applies it with its own model
            raise
        return await apply_decision(rt, row)

    def replay_recorded(self) -> int:
        """Apply decisions recorded by a process that died before applying them."""
        n = 0
        for row in self.rt.ledger.rows(status="waiting_for_approval"):
            if row.deciding and self.rt.ledger.claim(row.id, "web replay"):
                self.worker.submit(row)
                n += 1
        return n

    def render(self, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(**ctx)
        return HTMLResponse(html, status_code=status)


# --------------------------------------------------------------------------- middleware


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


# --------------------------------------------------------------------------- helpers


def _inbox(request: Request) -> WebInbox:
    inbox: WebInbox = request.app.state.inbox
    return inbox


def _session(request: Request) -> Session | None:
    sid = request.cookies.get(COOKIE)
    return _inbox(request).sessions.get(sid) if sid else None


def _login_required(request: Request) -> Response:
    return _inbox(request).render(
        "message.html",
        status=401,
        title="Sign in",
        message="Open the sign-in link that `gtm inbox --web` printed when it started.",
        session=None,
    )


async def _posted(request: Request) -> tuple[Session, FormData] | Response:
    """The session and POSTed form, or the response that refuses them: no session, a wrong or
    missing CSRF token, another site's origin."""
    session = _session(request)
    if session is None:
        return _login_required(request)
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
    return _inbox(request).render(
        "message.html", status=403, title="Refused", message=message, session=session
    )


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- auth


async def login(request: Request) -> Response:
    inbox = _inbox(request)
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
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    _inbox(request).sessions.pop(request.cookies.get(COOKIE, ""), None)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


# --------------------------------------------------------------------------- pages


async def queue(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _login_required(request)
    inbox = _inbox(request)
    filters = QueueFilters.parse(request.query_params)
    q = build_queue(inbox.rt.ledger, inbox.rt.playbook, filters, now=_now())
    recent = inbox.rt.ledger.recently_decided(limit=15)
    needs_human = inbox.rt.deps.outbox.entries(state="unknown")
    flash, session.flash = session.flash, []
    return inbox.render(
        "queue.html",
        session=session,
        q=q,
        filters=filters,
        recent=recent,
        errors=inbox.worker.errors,
        needs_human=needs_human,
        flash=flash,
        now=_now(),
    )


async def _draft_context(inbox: WebInbox, row: ThreadRow) -> dict[str, Any]:
    """Everything the draft view shows; empty if the draft is no longer waiting."""
    rt = inbox.rt
    snapshot = await rt.graph.aget_state({"configurable": {"thread_id": row.thread_id}})
    if not snapshot.interrupts or not isinstance(snapshot.interrupts[0].value, dict):
        return {}
    payload: dict[str, Any] = snapshot.interrupts[0].value
    values = snapshot.values or {}
    draft = Draft.model_validate(payload["draft"])
    facts = [Fact.model_validate(f) for f in payload["facts"]]
    contact = Contact.model_validate(payload["contact"])
    account = values.get("account")
    crm: dict[str, Any] = {}
    try:
        if account is not None:
            crm["company"] = await rt.deps.crm.find_company(account.domain)
        crm["contact"] = await rt.deps.crm.find_contact(contact)
    except Exception as exc:  # noqa: BLE001 - the draft view still works without the CRM
        crm["error"] = f"{type(exc).__name__}: {exc}"
    touches: list[Touch] = [  # earlier touches: not research facts, not this thread's drafts
        t
        for t in await rt.deps.memory.history(row.account_id, limit=30)
        if t.kind != "fact" and not (t.kind == "draft" and t.campaign == row.campaign)
    ]
    return {
        "payload": payload,
        "draft": draft,
        "cited": [f for fid in draft.cited_fact_ids for f in facts if f.id == fid],
        "missing_citations": [
            fid for fid in draft.cited_fact_ids if fid not in {f.id for f in facts}
        ],
        "other_facts": [f for f in facts if f.id not in draft.cited_fact_ids],
        "quarantined": list(values.get("quarantined") or []),
        "findings": payload.get("findings") or [],
        "spans": [s for fnd in payload.get("findings") or [] for s in fnd.get("spans", [])],
        "unsendable": unsendable(payload),
        "contact": contact,
        "account": account,
        "crm": crm,
        "touches": touches,
    }


async def draft_page(
    request: Request,
    *,
    status: int = 200,
    error: str | None = None,
    notes: list[str] | None = None,
    edited: str | None = None,
) -> Response:
    session = _session(request)
    if session is None:
        return _login_required(request)
    inbox = _inbox(request)
    row = inbox.rt.ledger.get(request.path_params["draft_id"])
    if row is None:
        return inbox.render(
            "message.html", status=404, title="No such draft", message="", session=session
        )
    filters = QueueFilters.parse(request.query_params)
    q = build_queue(inbox.rt.ledger, inbox.rt.playbook, filters, now=_now())
    prev_id, next_id = q.neighbours(row.id)
    open_ = row.status == "waiting_for_approval" and not row.deciding
    ctx = await _draft_context(inbox, row) if open_ else {}
    flash, session.flash = session.flash, []
    return inbox.render(
        "draft.html",
        status=status,
        session=session,
        row=row,
        filters=filters,
        prev_id=prev_id,
        next_id=next_id,
        batch_ok=q.batch_allowed(row),
        error=error,
        notes=notes or [],
        edited=edited,
        flash=flash,
        worker_error=inbox.worker.errors.get(row.id),
        history=inbox.rt.ledger.history(row.thread_id),
        now=_now(),
        **ctx,
    )


# --------------------------------------------------------------------------- actions


def _decision(form: FormData, reviewer: str) -> Decision | str:
    """The decision a form asks for, or what is missing from it."""

    def text(name: str) -> str:
        v = form.get(name)
        return v.strip() if isinstance(v, str) else ""

    action = text("action")
    at = _now()
    if action == "approve":
        return Decision(action="approve", reviewer=reviewer, at=at)
    if action == "edit":
        if not text("text"):
            return "The edited text is empty; nothing was sent."
        return Decision(
            action="edit",
            text=text("text"),
            subject=text("subject") or None,
            reviewer=reviewer,
            at=at,
        )
    if action == "reject":
        if not text("reason"):
            return "Say why you reject it; the reason is kept for next time."
        return Decision(action="reject", reason=text("reason"), reviewer=reviewer, at=at)
    if action == "regenerate":
        if not text("instructions"):
            return "Say what the rewrite should change."
        return Decision(
            action="regenerate", instructions=text("instructions"), reviewer=reviewer, at=at
        )
    return f"Unknown action {action!r}."


VERB = {
    "approve": "Approved",
    "edit": "Edited and approved",
    "reject": "Rejected",
    "regenerate": "Sent back for a rewrite",
}


async def decide(request: Request) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    inbox = _inbox(request)
    ref = request.path_params["draft_id"]
    decision = _decision(form, session.reviewer)
    text = form.get("text")
    edited = text if isinstance(text, str) else None
    if isinstance(decision, str):
        return await draft_page(request, status=422, error=decision, edited=edited)
    notes: list[str] = []
    current = inbox.rt.ledger.get(ref)
    confirmed = form.get("confirm") == "yes"
    if decision.action == "approve" and current and current.flagged and not confirmed:
        return await draft_page(
            request,
            status=422,
            error="The guardrails flagged this draft. Tick the box to say you checked the "
            "findings and it is right to send as written, or edit it.",
        )
    if decision.action == "edit":
        payload = await pending_payload(inbox.rt, current) if current else None
        if payload is not None:
            verdict = review_edit(inbox.rt, payload, decision.text or "", decision.subject)
            blockers = [r for r in verdict.failures if r.check in EDIT_BLOCKERS]
            if blockers:
                msg = "; ".join(f"{r.check}: {r.finding}" for r in blockers)
                return await draft_page(
                    request, status=422, error=f"Edit refused — {msg}", edited=decision.text
                )
            notes = [f"{r.check}: {r.finding}" for r in verdict.failures]
    filters = QueueFilters.parse(request.query_params)
    q = build_queue(inbox.rt.ledger, inbox.rt.playbook, filters, now=_now())
    try:
        row = await take_decision(inbox.rt, ref, decision)
    except DecisionRefused as exc:
        status = 422 if isinstance(exc, Unsendable) else 409
        return await draft_page(request, status=status, error=str(exc)[:1].upper() + str(exc)[1:])
    inbox.worker.submit(row)
    session.flash.append(("ok", f"{VERB[decision.action]} #{row.id} {row.company}."))
    session.flash += [("note", f"Note on #{row.id}: {n}") for n in notes]
    nxt = q.after(row.id)
    target = f"/drafts/{nxt}" if nxt is not None else "/"
    qs = filters.query()
    return RedirectResponse(f"{target}?{qs}" if qs else target, status_code=303)


async def batch(request: Request) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    inbox = _inbox(request)
    filters = QueueFilters.parse(request.query_params)
    q = build_queue(inbox.rt.ledger, inbox.rt.playbook, filters, now=_now())
    approved, refused = [], []
    for raw in form.getlist("ids"):
        row = inbox.rt.ledger.get(raw) if isinstance(raw, str) and raw.isdigit() else None
        if row is None:
            refused.append(f"#{raw}: no such draft")
            continue
        if not q.batch_allowed(row):
            why = "flagged by the guardrails" if row.flagged else "its tier needs one-by-one review"
            refused.append(f"#{row.id} {row.company}: {why}")
            continue
        try:
            taken = await take_decision(
                inbox.rt, row.id, Decision(action="approve", reviewer=session.reviewer, at=_now())
            )
        except DecisionRefused as exc:
            refused.append(str(exc))
            continue
        inbox.worker.submit(taken)
        approved.append(f"#{taken.id}")
    if approved:
        session.flash.append(("ok", f"Batch-approved {len(approved)}: {', '.join(approved)}."))
    if not approved and not refused:
        session.flash.append(("note", "Nothing was selected."))
    session.flash += [("error", f"Not approved: {r}") for r in refused]
    qs = filters.query()
    return RedirectResponse(f"/?{qs}" if qs else "/", status_code=303)


# --------------------------------------------------------------------------- app


def create_app(settings: Settings, *, token: str, host: str = "127.0.0.1") -> Starlette:
    """The ASGI app. Its lifespan opens the runtime (stores, checkpointer, providers)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            rt = await stack.enter_async_context(open_workspace(settings, with_model=False))
            inbox = WebInbox(rt, token, stack)
            app.state.inbox = inbox
            # Everything loaded so far (langgraph, chromadb, onnxruntime...) lives as long as the
            # server: keep it out of the collector, whose full passes over it took ~150 ms and
            # landed on whichever page was rendering.
            gc.freeze()
            replayed = inbox.replay_recorded()
            if replayed:
                log.warning("applying %d decision(s) recorded before a crash", replayed)
            try:
                yield
            finally:
                await inbox.worker.drain(timeout=60)

    static = Path(__file__).with_name("static")
    routes = [
        Route("/", queue),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/drafts/{draft_id:int}", draft_page),
        Route("/drafts/{draft_id:int}/decide", decide, methods=["POST"]),
        Route("/batch", batch, methods=["POST"]),
        Mount("/static", StaticFiles(directory=static), name="static"),
    ]
    hosts = sorted({*LOOPBACK_NAMES, host})
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
        ],
    )


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    announce: Callable[[str], None] = print,
) -> None:
    """Bind, print the sign-in link with a fresh token, and serve until interrupted."""
    token = secrets.token_urlsafe(24)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    app = create_app(settings, token=token, host=host)
    # No access log: the sign-in URL carries the token, and secrets never go to logs.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    announce(f"gtm inbox: http://{shown}:{bound}/login?{urlencode({'token': token})}")
    announce("Open it in your browser; the token is valid until this server stops (Ctrl+C).")
    sys.stdout.flush()
    server.run(sockets=[sock])
