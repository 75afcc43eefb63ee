"""The scripted OpenAI-compatible test server is as strict as the real API about malformed chat
requests: an empty, truncated or non-JSON body, or one without `messages`, gets a 400 with an
OpenAI-shaped error (not a traceback and a dropped connection), is not recorded, consumes no
scripted answer, and the server keeps serving."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from tests.support.openai_server import ScriptedOpenAIServer, text_response

GOOD = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}
BAD_BODIES: list[tuple[bytes, str | None]] = [
    (b"", None),  # a worker killed before it wrote a byte
    (b'{"model": "scripted", "messa', None),  # ... or mid-body
    (b"not json", None),
    (b"\xff\xfe", None),
    (b"[]", None),
    (b"{}", "missing_required_parameter"),
    (b'{"model": "scripted"}', "missing_required_parameter"),
    (b'{"model": "scripted", "messages": "hi"}', "invalid_type"),
    (b'{"model": "scripted", "messages": []}', "empty_array"),
]


def _assert_invalid_request(response: httpx.Response, code: str | None) -> None:
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert error["param"] == (None if code is None else "messages")
    assert error["message"]


@pytest.mark.parametrize("mode", ["script", "responder"])
def test_malformed_chat_requests_get_a_400_and_the_server_keeps_serving(
    mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def echo_last(request: dict[str, Any]) -> dict[str, Any]:
        return text_response(request["messages"][-1]["content"])

    server = (
        ScriptedOpenAIServer(script=[text_response("hi")])
        if mode == "script"
        else ScriptedOpenAIServer(responder=echo_last)
    )
    with server, httpx.Client(base_url=server.base_url, timeout=5) as client:
        for raw, code in BAD_BODIES:
            response = client.post(
                "/chat/completions", content=raw, headers={"Content-Type": "application/json"}
            )
            _assert_invalid_request(response, code)
        assert server.requests == []
        good = client.post("/chat/completions", json=GOOD)
        assert good.status_code == 200
        assert good.json()["choices"][0]["message"]["content"] == "hi"
        assert server.requests == [GOOD]
        server.assert_complete()
    assert "Traceback" not in capsys.readouterr().err


def test_a_body_cut_short_by_a_killed_client_gets_a_400() -> None:
    """The crash harness's case on the wire: the client announces a length, writes part of the
    body and stops writing (here it half-closes, so it can still read the answer)."""
    partial = json.dumps(GOOD).encode()[:20]
    with ScriptedOpenAIServer(script=[text_response("after")]) as server:
        port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(partial) + 100}\r\n\r\n".encode()
                + partial
            )
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 400")
        assert json.loads(payload)["error"]["type"] == "invalid_request_error"
        good = httpx.post(f"{server.base_url}/chat/completions", json=GOOD, timeout=5)
        assert good.json()["choices"][0]["message"]["content"] == "after"
        server.assert_complete()
