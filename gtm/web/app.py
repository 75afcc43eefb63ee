"""The web inbox wired together: its state (`WebInbox`), the ASGI app, and the server.

Who may get in is `gtm.web.security`; what the pages show and decide is `gtm.web.pages`; the
funnel report page is `gtm.web.report`; decisions are applied in the background by
`gtm.web.worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import secrets
import socket
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import uvicorn
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gtm.app.ledger import ThreadRow
from gtm.app.llm import open_chat_model
from gtm.app.runner import apply_decision
from gtm.app.settings import Settings
from gtm.app.workspace import Workspace, open_workspace
from gtm.web.pages import batch, decide, draft_page, escalation_done, flag_dismiss, queue
from gtm.web.report import report_page
from gtm.web.security import LOOPBACK_NAMES, SecurityHeaders, Session, login, logout
from gtm.web.views import fmt_age, marked, source_link
from gtm.web.worker import DecisionWorker

__all__ = ["WebInbox", "create_app", "serve"]

log = logging.getLogger("gtm.web")


class WebInbox:
    """Application state: the open workspace, sessions, the worker and the lazily started model."""

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


Background = Callable[[WebInbox], AbstractAsyncContextManager[None]]
"""Work that lives as long as the server (e.g. `gtm serve`'s scheduler), given the inbox."""


def create_app(
    settings: Settings,
    *,
    token: str,
    host: str = "127.0.0.1",
    extra_routes: Sequence[BaseRoute] = (),
    background: Background | None = None,
    stop: Callable[[], None] | None = None,
) -> Starlette:
    """The ASGI app. Its lifespan opens the workspace (stores, checkpointer, providers).

    `extra_routes` are served beside the inbox's pages and guard themselves (webhooks carry
    their own secrets, not the sign-in token); `background` is entered once the workspace is
    open and exited before the decision worker drains. `stop`, if given, is called when the
    workspace cannot open (a Chroma server or database that does not answer): the error is kept
    in `app.state.startup_error` for the caller to report in its own words, and the server
    stops before serving, instead of the ASGI server printing it as a startup traceback."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                rt = await stack.enter_async_context(open_workspace(settings, with_model=False))
            except Exception as exc:
                if stop is None:
                    raise
                app.state.startup_error = exc
                stop()
                yield
                return
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
                if background is None:
                    yield
                else:
                    async with background(inbox):
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
        Route("/escalations/{esc_id:int}/done", escalation_done, methods=["POST"]),
        Route("/flags/{flag_id:int}/dismiss", flag_dismiss, methods=["POST"]),
        Route("/report", report_page),
        *extra_routes,
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
    extra_routes: Sequence[BaseRoute] = (),
    background: Background | None = None,
) -> None:
    """Bind, print the sign-in link with a fresh token, and serve until interrupted
    (`extra_routes` and `background` as for `create_app`)."""
    token = secrets.token_urlsafe(24)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    app = create_app(
        settings,
        token=token,
        host=host,
        extra_routes=extra_routes,
        background=background,
        stop=lambda: setattr(server, "should_exit", True),  # at start-up: `server` exists then
    )
    # No access log: the sign-in URL carries the token, and secrets never go to logs.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    announce(f"gtm inbox: http://{shown}:{bound}/login?{urlencode({'token': token})}")
    announce("Open it in your browser; the token is valid until this server stops (Ctrl+C).")
    sys.stdout.flush()
    server.run(sockets=[sock])
    if (failed := getattr(app.state, "startup_error", None)) is not None:
        raise failed  # the workspace never opened: the command says why, in its own words
