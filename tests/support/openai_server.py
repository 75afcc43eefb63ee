"""A scripted OpenAI-compatible server on loopback, so tests run the real `ChatOpenAI` path.

It serves `GET /v1/models` and non-streaming `POST /v1/chat/completions`. Answers come from a
`responder(request_json) -> response_json` callable, or from a list consumed in order. A request
the real API would refuse (an empty or cut-short body, as a worker killed mid-request leaves, a
body that is not a JSON object, no `messages`) gets its 400 and error JSON, not a traceback.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Responder = Callable[[dict[str, Any]], dict[str, Any]]


def _completion(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


def tool_call_response(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A completion that calls function `name` with `arguments` (what structured output wants)."""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }
    return _completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")


def text_response(text: str) -> dict[str, Any]:
    return _completion({"role": "assistant", "content": text}, "stop")


_UNPARSEABLE = (
    "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload, "
    "but what was sent was not valid JSON."
)


def _invalid(message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The error body the real API sends with a 400 for a malformed request."""
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


def _parse_chat_request(raw: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The chat request in `raw`, or the 400 error body the real API answers instead: for an
    empty or truncated body (a worker killed mid-request), a body that is not a JSON object, or
    one without a `messages` list. Such a request is not recorded and consumes no script."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}, _invalid(_UNPARSEABLE)
    if not isinstance(body, dict):
        return {}, _invalid(_UNPARSEABLE)
    if "messages" not in body:
        return {}, _invalid(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(body["messages"], list):
        return {}, _invalid(
            "Invalid type for 'messages': expected an array of objects.",
            param="messages",
            code="invalid_type",
        )
    if not body["messages"]:
        return {}, _invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
            code="empty_array",
        )
    return body, None


class ScriptedOpenAIServer:
    def __init__(
        self, *, responder: Responder | None = None, script: list[dict[str, Any]] | None = None
    ) -> None:
        if (responder is None) == (script is None):
            raise ValueError("give either a responder or a script")
        self._responder = responder
        self._script = list(script or [])
        self._used = 0
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.fail_next: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def _answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.requests.append(body)
            if self.fail_next:
                status, headers = self.fail_next.pop(0)
                return status, {"error": {"message": "injected", "type": "server_error"}}, headers
            if body.get("stream"):
                return 400, {"error": {"message": "streaming is not scripted"}}, {}
            if self._responder is not None:
                return 200, self._responder(body), {}
            if self._used >= len(self._script):
                return 500, {"error": {"message": "script exhausted"}}, {}
            self._used += 1
            return 200, self._script[self._used - 1], {}

    def __enter__(self) -> ScriptedOpenAIServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(
                        200,
                        {
                            "object": "list",
                            "data": [{"id": "scripted", "object": "model", "owned_by": "tests"}],
                        },
                    )
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                owner.headers.append({k.lower(): v for k, v in self.headers.items()})
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                body, problem = _parse_chat_request(raw)
                if problem is not None:
                    self._send(400, problem)
                    return
                status, payload, headers = owner._answer(body)
                self._send(status, payload, headers)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def assert_complete(self) -> None:
        assert self._used == len(self._script), (
            f"{len(self._script) - self._used} scripted response(s) were never requested"
        )


def write_from_facts(request: dict[str, Any]) -> dict[str, Any]:
    """A deterministic writer: answers the forced DraftOutput call with a note built from the first
    two facts in the prompt, citing them (and, for an email, a subject from the first). Without
    facts in the prompt it can only write a template, which is how a test shows that dropping
    facts from a prompt makes drafts generic."""
    user = request["messages"][-1]["content"]
    ids = re.findall(r"^\[(f\d+)\] (.+?) \(source:", user, flags=re.M)
    company = re.search(r"Company: (.+)", user)
    first = re.search(r"First name: (.+)", user)
    who = first.group(1).strip() if first else "there"
    facts = ids[:2]
    topic = facts[0][1][:80].rstrip(".") if facts else "your work"
    body = (
        f"Hi {who}, I read that {topic[0].lower() + topic[1:]}. "
        f"{'Curious how ' + company.group(1).strip() if company else 'Curious how you'} "
        "handles retrieval at that scale. Would you be open to comparing notes?"
    )
    args: dict[str, Any] = {"body": body[:290], "cited_fact_ids": [i for i, _ in facts]}
    if "one short email" in request["messages"][0]["content"]:  # an email needs its subject
        args["subject"] = topic[:57]
    name = request["tool_choice"]["function"]["name"]
    return tool_call_response(name, args)
