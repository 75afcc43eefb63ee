"""Hermetic by default: no real model call, no network, no user config leaks into a test."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

try:  # openai >= 3 talks through httpx2
    import httpx2
except ImportError:  # pragma: no cover
    httpx2 = None  # type: ignore[assignment]


class RealNetworkCall(AssertionError):
    """A test tried to reach a host that is not loopback."""


def _assert_loopback(url: Any) -> None:
    host = urlsplit(str(url)).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise RealNetworkCall(f"tests must not reach {host!r} ({url}); use a loopback test server")


@pytest.fixture(autouse=True)
def _no_real_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fail any HTTP request off loopback (real model APIs included); isolate env and config."""
    for mod in filter(None, (httpx, httpx2)):
        sync_send = mod.HTTPTransport.handle_request
        async_send = mod.AsyncHTTPTransport.handle_async_request

        def guarded(self: Any, request: Any, _orig: Any = sync_send) -> Any:
            _assert_loopback(request.url)
            return _orig(self, request)

        async def aguarded(self: Any, request: Any, _orig: Any = async_send) -> Any:
            _assert_loopback(request.url)
            return await _orig(self, request)

        monkeypatch.setattr(mod.HTTPTransport, "handle_request", guarded)
        monkeypatch.setattr(mod.AsyncHTTPTransport, "handle_async_request", aguarded)

    import os

    for key in list(os.environ):
        if key.startswith(("GTM_", "LANGSMITH_", "LANGCHAIN_")) or key in (
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
        ):  # a developer's tracing switch must not send test runs to LangSmith
            monkeypatch.delenv(key)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy-not-a-real-key")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")
    yield


@pytest.fixture(scope="module")
def model_server() -> Iterator[Any]:
    """A scripted OpenAI-compatible writer on loopback, shared by a module (the web inbox's
    seeded campaigns and its regenerate calls)."""
    from tests.support.openai_server import ScriptedOpenAIServer
    from tests.support.web import write_with_one_fabrication

    with ScriptedOpenAIServer(responder=write_with_one_fabrication) as srv:
        yield srv
