"""A real Chroma server for the tests: chromadb's own `chroma run`, on loopback, in a temp dir.

`chroma_server` is session-scoped: one server for the session (shared by every module that
imports the fixture), stopped and its data deleted after it. Each test takes a database of its
own (`ChromaServer.new_database`), so tests never see each other's records.

`TokenGate` stands in front of it for the token tests. The open-source `chroma run` checks no
token (its Rust frontend ships only a no-op authenticator), so a deployment that wants one puts
a proxy in front, or uses Chroma Cloud, which reads `X-Chroma-Token`. The gate is as strict as
those: every route but the heartbeat needs the exact token, else 401 with Chroma's error body.
"""

from __future__ import annotations

import http.server
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import Program, SessionServer, free_port, start

__all__ = ["ChromaServer", "TokenGate", "chroma_server", "free_port", "start_chroma"]

_CHROMA = Program("chroma run", "answer its heartbeat", signal.SIGTERM, grace=10)


def _chroma_command() -> list[str]:
    """The `chroma` CLI chromadb installs next to this interpreter, else the same entry point
    through the interpreter (what `.venv/bin/chroma` runs)."""
    cli = Path(sys.executable).with_name("chroma")
    if cli.is_file():
        return [str(cli)]
    code = "import sys, chromadb_rust_bindings as b; b.cli(['chroma', *sys.argv[1:]])"
    return [sys.executable, "-c", code]


@dataclass
class ChromaServer:
    """A running `chroma run`: where it listens and where it keeps its data."""

    port: int
    root: Path
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_database(self) -> str:
        """A new empty database in the default tenant; its name."""
        name = f"t{os.getpid()}_{next(self._names)}"
        got = httpx.post(
            f"{self.url}/api/v2/tenants/default_tenant/databases", json={"name": name}, timeout=10
        )
        got.raise_for_status()
        return name


def _heartbeat(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_chroma() -> tuple[ChromaServer, subprocess.Popen[bytes]]:
    """`chroma run` on a free 127.0.0.1 port with a new temporary data directory."""
    root = Path(tempfile.mkdtemp(prefix="gtm-chroma-"))
    port = free_port()
    log = root / "chroma.log"
    args = [
        *_chroma_command(),
        "run",
        "--path",
        str(root / "data"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
    proc = start(_CHROMA, args, root=root, log=log, probe=lambda: _heartbeat(port), env=env)
    return ChromaServer(port, root), proc


_SESSION: SessionServer[ChromaServer] = SessionServer(_CHROMA)


@pytest.fixture(scope="session")
def chroma_server() -> Iterator[ChromaServer]:
    """One `chroma run` on loopback for the whole session, stopped and deleted after it."""
    yield from _SESSION.use(start_chroma)


class TokenGate:
    """A loopback proxy to `upstream` that lets a request through only with
    `X-Chroma-Token: <token>` (the heartbeat excepted), else answers 401 as Chroma does.
    `seen` keeps the token header of every request, to check what the client sent."""

    def __init__(self, upstream: str, token: str) -> None:
        self.upstream = upstream
        self.token = token
        self.seen: list[str | None] = []
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _relay(self) -> None:
                sent = self.headers.get("X-Chroma-Token")
                gate.seen.append(sent)
                if not self.path.startswith("/api/v2/heartbeat") and sent != gate.token:
                    body = b'{"error":"AuthError","message":"Unauthorized"}'
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                got = httpx.request(
                    self.command,
                    gate.upstream + self.path,
                    content=self.rfile.read(length) if length else None,
                    headers={"Content-Type": self.headers.get("Content-Type", "")},
                    timeout=30,
                )
                self.send_response(got.status_code)
                self.send_header("Content-Type", got.headers.get("content-type", ""))
                self.send_header("Content-Length", str(len(got.content)))
                self.end_headers()
                self.wfile.write(got.content)

            do_GET = do_POST = do_PUT = do_DELETE = _relay

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> TokenGate:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
