"""LangSmith tracing: off by default, and when on, no secret and no erased person in any run.

A fake LangSmith API on loopback (`LANGSMITH_ENDPOINT`) records every request the real
`langsmith` client makes while the real graph runs; the test reads the bodies it received.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langsmith import utils as ls_utils

from gtm.app.settings import Settings
from gtm.app.tracing import Redactor, redacted_tracing, redacting_tracer
from gtm.domain.models import Account, Contact
from tests.support.fake_model import ScriptedChatModel, tool_call
from tests.test_graph import ACME, cfg, deps, env, inp  # noqa: F401 - env fixture
from tools.suppression import SuppressionList

LS_KEY = "lsv2_pt_test-langsmith-key"
MODEL = "sk-SECRET-model-5e0a77"
SMTP = "SECRET-smtp-pass-93d2aa"
DANA = Contact(
    name="Dana Ruiz",
    title="VP Engineering",
    linkedin_url="https://www.linkedin.com/in/dana-ruiz",
    email="dana@quillcode.dev",
)
OMAR = Contact(
    name="Omar Haddad",
    title="Head of Engineering",
    linkedin_url="https://www.linkedin.com/in/omar-haddad",
    email="omar@quillcode.dev",
)
ERASED_MARKS = ("Dana", "dana@quillcode.dev", "dana-ruiz")


def _reread_env() -> None:
    """langsmith caches what it read from the environment: make it read it again."""
    ls_utils.get_env_var.cache_clear()  # type: ignore[attr-defined]


class _FakeLangSmith(BaseHTTPRequestHandler):
    """As strict as the API on what we rely on: every call needs the key in `x-api-key`."""

    server: _Server

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "zstd":
            import zstandard

            body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        self.server.calls.append((self.command, self.path, body))
        if self.headers.get("x-api-key") != LS_KEY:
            self._send(401, {"detail": "Invalid token"})
        elif self.command == "GET" and self.path.startswith("/info"):
            self._send(200, {"version": "0.0-test"})
        else:
            self._send(202, {})

    do_GET = do_POST = do_PATCH = _answer

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    calls: list[tuple[str, str, bytes]]


@pytest.fixture
def langsmith(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    """The fake API, named by LangSmith's own variables (tracing itself left to each test)."""
    server = _Server(("127.0.0.1", 0), _FakeLangSmith)
    server.calls = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for var in (
        "LANGSMITH_TRACING",
        "LANGCHAIN_TRACING_V2",
        "LANGCHAIN_TRACING",
        "LANGSMITH_PROJECT",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LANGSMITH_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("LANGSMITH_API_KEY", LS_KEY)
    _reread_env()
    yield server
    server.shutdown()
    server.server_close()
    _reread_env()


@pytest.fixture
def data(tmp_path: Path) -> Iterator[tuple[Settings, SuppressionList]]:
    """Settings with secrets, and a suppression list in which Dana was erased (`gtm forget`)."""
    settings = Settings(
        data_dir=tmp_path / "data", model_api_key=MODEL, smtp_password=SMTP, email="smtp"
    )
    settings.data_dir.mkdir()
    sup = SuppressionList(settings.data_dir / "suppressions.sqlite")
    assert DANA.email and DANA.linkedin_url
    sup.erase(
        [("email", DANA.email), ("linkedin", DANA.linkedin_url), ("person_key", DANA.key)],
        reason="erasure request",
    )
    assert sup.is_erased(DANA) and not sup.is_erased(OMAR)
    yield settings, sup
    sup.close()


def _account() -> Account:
    """A list that still names the erased person, with a credential pasted into a signal."""
    return ACME.model_copy(
        update={
            "contacts": (DANA, OMAR),
            "signals": (*ACME.signals, f"ops note: smtp password {SMTP}"),
        }
    )


class _KeyEchoingModel(ScriptedChatModel):
    """An endpoint that quotes the key back in its error, as OpenAI's 401 does."""

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise RuntimeError(f"401 Incorrect API key provided: {MODEL}")


def omar_note() -> Any:
    body = (
        "Hi Omar, saw 3 sign-ups from Quillcode this month and that you are hiring ML infra "
        "engineers. Open to comparing notes?"
    )
    return tool_call("DraftOutput", {"body": body, "cited_fact_ids": ["f3", "f4"]})


def _bodies(server: _Server) -> bytes:
    return b"\n".join(body for method, _, body in server.calls if method in ("POST", "PATCH"))


@pytest.mark.parametrize("route", ["run config callbacks", "process-wide context"])
async def test_traces_carry_no_secret_and_no_erased_person(
    env: dict[str, Any],  # noqa: F811
    langsmith: _Server,
    data: tuple[Settings, SuppressionList],
    monkeypatch: pytest.MonkeyPatch,
    route: str,
) -> None:
    settings, sup = data
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    _reread_env()
    model = ScriptedChatModel.from_script([omar_note()])
    account = _account()
    if route == "run config callbacks":
        tracer = redacting_tracer(settings)
        assert tracer is not None
        config = {**cfg("t1"), "callbacks": [tracer]}
        await env["graph"].ainvoke(inp(account), config, context=deps(env, model, suppressions=sup))
        broken = {**cfg("t2"), "callbacks": [tracer]}
        with pytest.raises(RuntimeError):
            await env["graph"].ainvoke(
                inp(account, campaign="c2"),
                broken,
                context=deps(env, _KeyEchoingModel.from_script([]), suppressions=sup),
            )
        tracer.wait_for_futures()
        tracer.client.flush()
    else:
        with redacted_tracing(settings):
            await env["graph"].ainvoke(
                inp(account), cfg("t1"), context=deps(env, model, suppressions=sup)
            )
            with pytest.raises(RuntimeError):
                await env["graph"].ainvoke(
                    inp(account, campaign="c2"),
                    cfg("t2"),
                    context=deps(env, _KeyEchoingModel.from_script([]), suppressions=sup),
                )
    model.assert_complete()
    sent = _bodies(langsmith)
    # The runs did arrive, with what may be traced: the account, the other contact, the draft.
    assert b"quillcode.dev" in sent and b"Omar Haddad" in sent and b"Incorrect API key" in sent
    assert b"[erased]" in sent and b"***" in sent, "the redaction ran on the posted runs"
    for needle in (MODEL, SMTP, LS_KEY, *ERASED_MARKS):
        assert needle.encode() not in sent, needle
    assert {path.split("?")[0] for m, path, _ in langsmith.calls if m == "POST"} <= {
        "/runs/multipart",
        "/runs/batch",
        "/runs",
    }


async def test_nothing_is_posted_while_tracing_is_off(
    env: dict[str, Any],  # noqa: F811
    langsmith: _Server,
    data: tuple[Settings, SuppressionList],
) -> None:
    settings, sup = data
    assert redacting_tracer(settings) is None
    model = ScriptedChatModel.from_script([omar_note(), omar_note()])
    with redacted_tracing(settings) as tracer:
        assert tracer is None
        await env["graph"].ainvoke(
            inp(_account()), cfg("t1"), context=deps(env, model, suppressions=sup)
        )
    await env["graph"].ainvoke(
        inp(_account(), campaign="c2"), cfg("t2"), context=deps(env, model, suppressions=sup)
    )
    model.assert_complete()
    assert langsmith.calls == []


def test_the_redactor_learns_an_erased_name_and_removes_it_from_later_text() -> None:
    erased_emails = {"dana@quillcode.dev"}
    redact = Redactor([MODEL, "abc"], lambda c: c.email in erased_emails)
    assert redact.secrets == [MODEL], "strings too short to be a credential are not replaced"
    first = redact(
        {"account": {"contacts": [DANA.model_dump(mode="json"), OMAR.model_dump(mode="json")]}}
    )
    assert first["account"]["contacts"][0] == "[erased]"
    assert first["account"]["contacts"][1]["name"] == "Omar Haddad"
    later = redact({"messages": [f"Write to Dana Ruiz (DANA@quillcode.dev), key {MODEL}"]})
    assert later == {"messages": ["Write to [erased] ([erased]), key ***"]}
    fresh = Redactor([], lambda c: c.email in erased_emails)
    assert fresh({"text": "cc dana@quillcode.dev"}) == {"text": "cc [erased]"}
    assert fresh({"text": "Omar wrote"}) == {"text": "Omar wrote"}


@pytest.mark.parametrize("tracing", ["true", None])
def test_every_gtm_command_runs_inside_the_redacted_tracing_when_langsmith_is_on(
    tmp_path: Path,
    langsmith: _Server,
    monkeypatch: pytest.MonkeyPatch,
    tracing: str | None,
) -> None:
    import contextlib

    from typer.testing import CliRunner

    import gtm.app.tracing
    from gtm.cli import app

    seen: list[str] = []
    real = gtm.app.tracing.redacted_tracing

    @contextlib.contextmanager
    def recording(settings: Settings) -> Iterator[Any]:
        with real(settings) as tracer:
            seen.append(f"open {type(tracer).__name__}")
            yield tracer
        seen.append("closed")

    monkeypatch.setattr(gtm.app.tracing, "redacted_tracing", recording)
    if tracing:
        monkeypatch.setenv("LANGSMITH_TRACING", tracing)
    _reread_env()
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "status"])
    assert result.exit_code == 0, result.output
    assert seen == (["open LangChainTracer", "closed"] if tracing else [])


async def test_a_workspace_adds_the_redacting_tracer_only_when_tracing_is_on(
    tmp_path: Path, langsmith: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_core.tracers.langchain import LangChainTracer

    from gtm.app.telemetry import StepLog, callbacks_for
    from gtm.app.workspace import open_workspace

    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    _reread_env()
    async with open_workspace(Settings(data_dir=tmp_path / "d"), with_model=False) as rt:
        log, tracer = callbacks_for(rt)
        assert isinstance(log, StepLog) and isinstance(tracer, LangChainTracer)
        assert isinstance(tracer.client._anonymizer, Redactor)
