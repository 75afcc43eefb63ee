"""A model endpoint that fails or answers garbage: a clear failure, retried, and never the key.

The endpoint here is a loopback server that answers each request as the test says: a 401 that
echoes the key (as OpenAI and many proxies do), an HTML page with status 200, `choices: []`, and
JSON of another shape. Then a good answer, on the next run, drafts the account.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_gtm
from tests.support.openai_server import write_from_facts

KEY = "sk-live-0123456789abcdefSECRET"
HEADER = "company,domain,segment,description,contact_name,contact_title,linkedin_url,email,signals"
ROW = (
    "Quillcode,quillcode.dev,AI coding assistant,Builds an AI coding assistant for monorepos.,"
    "Dana Ruiz,VP Engineering,https://www.linkedin.com/in/dana-ruiz,dana@quillcode.dev,"
    "Hiring 4 ML infrastructure engineers;3 sign-ups from this domain in the last 30 days"
)


class Endpoint:
    """An OpenAI-compatible endpoint whose every answer is set by `mode`."""

    def __init__(self) -> None:
        self.mode = "ok"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200, "application/json", json.dumps({"data": []}).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                status, ctype, payload = owner.answer(body)
                self._send(status, ctype, payload)

            def _send(self, status: int, ctype: str, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/v1"

    def answer(self, body: dict[str, Any]) -> tuple[int, str, bytes]:
        as_json = "application/json"
        if self.mode == "echo-key":
            err = {
                "message": f"Incorrect API key provided: {KEY}. You can find your API key at ...",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
            return 401, as_json, json.dumps({"error": err}).encode()
        if self.mode == "html":
            return 200, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        if self.mode == "no-choices":
            empty = {"id": "x", "object": "chat.completion", "created": 1, "model": "m"}
            return 200, as_json, json.dumps({**empty, "choices": []}).encode()
        if self.mode == "other-json":
            return 200, as_json, json.dumps({"status": "ok", "result": "hello"}).encode()
        return 200, as_json, json.dumps(write_from_facts(body)).encode()

    def __enter__(self) -> Endpoint:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with Endpoint() as e:
        yield e


def _gtm(tmp_path: Path, endpoint: Endpoint, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    env.update(
        GTM_DATA_DIR=str(tmp_path / "data"),
        GTM_MODEL_BASE_URL=endpoint.base_url,
        GTM_MODEL="scripted",
        GTM_MODEL_API_KEY=KEY,
        ANONYMIZED_TELEMETRY="False",
    )
    return run_gtm(env, *args)


def _files_with(root: Path, needle: str) -> list[str]:
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and needle.encode() in p.read_bytes()
    ]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("echo-key", "401"),
        ("html", "Unexpected response type"),
        ("no-choices", "no choices"),
        ("other-json", "null value for 'choices'"),
    ],
)
def test_a_bad_model_answer_fails_the_account_clearly_then_the_next_run_drafts_it(
    tmp_path: Path, endpoint: Endpoint, mode: str, reason: str
) -> None:
    csv = tmp_path / "accounts.csv"
    csv.write_text(f"{HEADER}\n{ROW}\n", encoding="utf-8")
    endpoint.mode = mode
    bad = _gtm(tmp_path, endpoint, "run", str(csv), "--campaign", "c")
    shown = bad.stdout + bad.stderr
    assert "failed" in shown and reason in shown, shown
    assert re.search(r"│ drafted\s+│\s+0 │", shown) and re.search(r"│ failed\s+│\s+1 │", shown)
    assert KEY not in shown
    assert _files_with(tmp_path / "data", KEY) == []  # ledger, checkpoints, alerts, logs
    assert _files_with(tmp_path / "data", KEY[:16]) == []

    endpoint.mode = "ok"
    good = _gtm(tmp_path, endpoint, "run", str(csv), "--campaign", "c")
    assert good.returncode == 0, good.stdout + good.stderr
    inbox = _gtm(tmp_path, endpoint, "inbox")
    assert "1 draft(s) waiting" in inbox.stdout, inbox.stdout + inbox.stderr
