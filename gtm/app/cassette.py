"""Model cassettes: record a real model's answers once, replay them in CI without a key.

A cassette sits at the HTTP level, as the transport of the httpx client the OpenAI SDK sends
through, so every model call (personalize, review revisions, the judge, the reply classifier)
is covered without the agents knowing. In `record` mode a request goes to the real endpoint and
its answer is stored; in `replay` mode the answer comes from the cassette and the network is
never touched. A request is keyed by a hash of its JSON body (model, messages, tools and
tool_choice, temperature, seed, max_tokens, …) and the endpoint, never by its headers, so the
API key is never written and the same cassette replays against any base URL.

A request the cassette does not hold raises `CassetteMiss`, whose message names the model, the
prompt and the nearest recorded request with what differs ("system prompt changed", "input
changed", …), so a prompt change that needs new answers is reported, not silently passed.

The file is JSON Lines: a header, then one entry per request sorted by key, its summary (prompt,
model, input) first and its request and answer next to it. Answers are normalized (ids,
timestamps, fingerprints), so recording the same answers twice writes the same bytes.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gtm.app.cassette_diff import differences, prompt_label, request_key, similarity
from gtm.app.llm import ModelReplyError

if TYPE_CHECKING:  # typed against httpx; at run time, the flavour the openai SDK is built on
    import httpx as _http
else:
    from gtm.app.cassette_diff import sdk_httpx

    _http = sdk_httpx()

__all__ = [
    "Cassette",
    "CassetteError",
    "CassetteMiss",
    "CassetteTransport",
    "Entry",
    "REPLAY_BASE_URL",
    "RERECORD_HINT",
]

FORMAT = "gtm-model-cassette"
VERSION = 1
# Where a replaying model "sends" its requests: a reserved name, never resolved.
REPLAY_BASE_URL = "http://cassette.invalid/v1"
RERECORD_HINT = (
    "re-record it with a real model: "
    "`GTM_MODEL_BASE_URL=… GTM_MODEL=… make record-baseline`, and commit the cassette"
)
Mode = Literal["record", "replay"]
# Response fields that change on every call without changing the answer.
_VOLATILE = ("id", "created", "system_fingerprint")
# Response headers that describe the bytes on the wire, not the (already decoded) content.
_WIRE_HEADERS = {"content-encoding", "content-length", "transfer-encoding", "connection"}


class CassetteError(ValueError):
    """The cassette file cannot be read."""


class CassetteMiss(ModelReplyError):
    """A replayed request the cassette does not hold. A `ModelReplyError`, so it fails a thread
    the way an endpoint failure does; the eval catches it by name and reports it."""

    def __init__(self, message: str, *, key: str, model: str, prompt: str, reasons: list[str]):
        super().__init__(message)
        self.key = key
        self.model = model
        self.prompt = prompt
        self.reasons = reasons


@dataclass
class Entry:
    key: str
    endpoint: str
    request: dict[str, Any]
    response: dict[str, Any]
    status: int = 200
    uses: int = 0
    prompt: str = ""

    def line(self) -> str:
        head = {
            "key": self.key,
            "prompt": self.prompt,
            "model": self.request.get("model"),
            "input": _input_summary(self.request),
            "uses": self.uses,
            "endpoint": self.endpoint,
            "status": self.status,
        }
        data = head | {"request": _sorted(self.request), "response": _sorted(self.response)}
        return json.dumps(data, ensure_ascii=False, separators=(", ", ": "))


@dataclass
class Cassette:
    """The recorded requests of one run, and the misses of a replay.

    `record` starts empty, whatever the file holds, and `save()` writes exactly the requests
    of this run, so stale entries are pruned. `replay` loads the file and never writes it.
    """

    path: Path
    mode: Mode
    prompts_dir: Path | None = None
    description: str = ""  # the model as `gtm eval` reports it, e.g. "gpt-4o-mini"
    model_name: str = ""  # the model name the requests carry
    entries: dict[str, Entry] = field(default_factory=dict)
    misses: list[CassetteMiss] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, path: Path, mode: Mode, *, prompts_dir: Path | None = None) -> Cassette:
        if mode not in ("record", "replay"):
            raise ValueError(f"cassette mode must be record or replay, not {mode!r}")
        cassette = cls(path=path, mode=mode, prompts_dir=prompts_dir)
        if mode == "replay":
            cassette._load()
        return cassette

    def _load(self) -> None:
        try:
            # Split on "\n" only: JSON escapes it inside strings, but not U+2028 or U+0085,
            # which `splitlines()` would also break a line at.
            lines = [t for t in self.path.read_text(encoding="utf-8").split("\n") if t.strip()]
            header = json.loads(lines[0]) if lines else {}
            if header.get("format") != FORMAT or header.get("version") != VERSION:
                raise ValueError(f"not a {FORMAT} file, version {VERSION}")
            self.description = str(header.get("model", ""))
            self.model_name = str(header.get("model_name", ""))
            for n, text in enumerate(lines[1:], start=2):
                try:
                    d = json.loads(text)
                except ValueError as exc:
                    raise ValueError(f"line {n}: {exc}") from None
                self.entries[d["key"]] = Entry(
                    key=d["key"],
                    endpoint=d["endpoint"],
                    request=d["request"],
                    response=d["response"],
                    status=int(d.get("status", 200)),
                    prompt=str(d.get("prompt", "")),
                )
        except FileNotFoundError:
            raise CassetteError(f"{self.path}: no such cassette; {RERECORD_HINT}") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CassetteError(f"{self.path}: not a readable cassette ({exc})") from None

    # ------------------------------------------------------------------ what the run did

    def unused(self) -> list[Entry]:
        """Entries no request of this run asked for: stale, pruned by the next `record`."""
        with self._lock:
            return [e for e in self.entries.values() if e.uses == 0]

    def save(self) -> None:
        """Write this run's requests (record mode only), sorted, atomically."""
        if self.mode != "record":
            raise RuntimeError("only a recording cassette is saved; a replay never changes it")
        with self._lock:
            entries = sorted(self.entries.values(), key=lambda e: e.key)
        header = {
            "format": FORMAT,
            "version": VERSION,
            "model": self.description,
            "model_name": self.model_name,
            "entries": len(entries),
            "uses": sum(e.uses for e in entries),
        }
        text = "".join(line + "\n" for line in [json.dumps(header)] + [e.line() for e in entries])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)

    # ------------------------------------------------------------------ lookups

    def hit(self, key: str) -> Entry | None:
        with self._lock:
            entry = self.entries.get(key)
            if entry is not None:
                entry.uses += 1
            return entry

    def store(
        self, key: str, endpoint: str, body: dict[str, Any], answer: Any, status: int = 200
    ) -> Entry:
        """Keep the first answer for a key, so every caller of this run sees the same one."""
        entry = Entry(
            key=key,
            endpoint=endpoint,
            request=body,
            response=_normalized(answer, key),
            status=status,
            prompt=prompt_label(body, self.prompts_dir),
        )
        with self._lock:
            kept = self.entries.setdefault(key, entry)
            kept.uses += 1
            if not self.model_name and isinstance(body.get("model"), str):
                self.model_name = body["model"]
            return kept

    def miss(self, key: str, endpoint: str, body: dict[str, Any]) -> CassetteMiss:
        """The error for a request the cassette does not hold, kept in `misses` as well."""
        model = str(body.get("model", "?"))
        prompt = prompt_label(body, self.prompts_dir)
        with self._lock:
            candidates = [e for e in self.entries.values() if e.endpoint == endpoint]
        text = f"{self.path}: no recorded answer for model {model}, prompt {prompt}"
        text += f", input {_input_summary(body)!r}"
        reasons: list[str] = []
        if candidates:
            nearest = min(candidates, key=lambda e: (*similarity(e.request, body), e.key))
            reasons = differences(nearest.request, body)
            text += f"; the nearest recorded request ({nearest.prompt}) differs: "
            text += "; ".join(reasons)
        else:
            text += "; the cassette holds no request of this kind"
        text += f". The prompts or inputs changed since the cassette was recorded: {RERECORD_HINT}"
        error = CassetteMiss(text, key=key, model=model, prompt=prompt, reasons=reasons)
        with self._lock:
            self.misses.append(error)
        return error

    # ------------------------------------------------------------------ clients

    def transport(self) -> CassetteTransport:
        return CassetteTransport(self)


class CassetteTransport(_http.AsyncBaseTransport, _http.BaseTransport):
    """An httpx transport (async and sync) that answers from a cassette, or records into it.

    Recording forwards through a plain client of the SDK's httpx flavour, so proxies from the
    environment apply as they would without a cassette. Only 2xx JSON answers are stored: an
    error or an HTML page reaches the caller as it came and fails the call as it always did.
    """

    def __init__(self, cassette: Cassette) -> None:
        self.cassette = cassette
        self._forward_async: _http.AsyncClient | None = None
        self._forward_sync: _http.Client | None = None
        self._in_flight: dict[str, asyncio.Lock] = {}

    def _lookup(self, request: _http.Request) -> tuple[str, str, dict[str, Any], Entry | None]:
        endpoint = "/".join(request.url.path.rstrip("/").split("/")[-2:])
        try:
            body = json.loads(request.content or b"{}")
        except ValueError:
            body = {"unparsed_body": request.content.decode("utf-8", "replace")}
        if not isinstance(body, dict):
            body = {"body": body}
        body = {"method": request.method, **body} if request.method != "POST" else body
        key = request_key(endpoint, body)
        return endpoint, key, body, self.cassette.hit(key)

    def _answer(self, entry: Entry, request: _http.Request) -> _http.Response:
        return _http.Response(
            entry.status,
            headers={"content-type": "application/json"},
            content=json.dumps(entry.response).encode(),
            request=request,
        )

    def _kept(
        self, got: _http.Response, request: _http.Request, key: str, endpoint: str, body: Any
    ) -> _http.Response:
        answer: Any = None
        if 200 <= got.status_code < 300 and "json" in got.headers.get("content-type", ""):
            try:
                answer = got.json()
            except ValueError:
                answer = None
        if isinstance(answer, dict):
            kept = self.cassette.store(key, endpoint, body, answer, got.status_code)
            return self._answer(kept, request)
        headers = [(k, v) for k, v in got.headers.items() if k.lower() not in _WIRE_HEADERS]
        return _http.Response(
            got.status_code, headers=headers, content=got.content, request=request
        )

    async def handle_async_request(self, request: _http.Request) -> _http.Response:
        await request.aread()
        endpoint, key, body, entry = self._lookup(request)
        if entry is not None:
            return self._answer(entry, request)
        if self.cassette.mode == "replay":
            raise self.cassette.miss(key, endpoint, body)
        # The same request twice at once (a repeated case) is sent once: the second waits and
        # takes the stored answer, or sends it itself if the first one failed.
        async with self._in_flight.setdefault(key, asyncio.Lock()):
            entry = self.cassette.hit(key)
            if entry is not None:
                return self._answer(entry, request)
            if self._forward_async is None:
                self._forward_async = _http.AsyncClient(follow_redirects=False)
            got = await self._forward_async.send(request)
            await got.aread()
            await got.aclose()
            return self._kept(got, request, key, endpoint, body)

    def handle_request(self, request: _http.Request) -> _http.Response:
        request.read()
        endpoint, key, body, entry = self._lookup(request)
        if entry is not None:
            return self._answer(entry, request)
        if self.cassette.mode == "replay":
            raise self.cassette.miss(key, endpoint, body)
        if self._forward_sync is None:
            self._forward_sync = _http.Client(follow_redirects=False)
        got = self._forward_sync.send(request)
        got.read()
        got.close()
        return self._kept(got, request, key, endpoint, body)

    async def aclose(self) -> None:
        if self._forward_async is not None:
            await self._forward_async.aclose()
        self.close()

    def close(self) -> None:
        if self._forward_sync is not None:
            self._forward_sync.close()


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _normalized(answer: dict[str, Any], key: str) -> dict[str, Any]:
    """The answer without what changes on every call: ids, timestamps, fingerprints, cache
    details in the usage. Tool-call ids are numbered, so re-recording gives the same bytes."""
    out = {k: v for k, v in answer.items() if k not in _VOLATILE}
    if "id" in answer:
        out["id"] = f"chatcmpl-{key[:16]}"
    if "created" in answer:
        out["created"] = 0
    usage = answer.get("usage")
    if isinstance(usage, dict):
        out["usage"] = {k: v for k, v in usage.items() if isinstance(v, int)}
    choices = answer.get("choices")
    if isinstance(choices, list):
        out["choices"] = [_numbered_calls(c, i) for i, c in enumerate(choices)]
    return out


def _numbered_calls(choice: Any, n: int) -> Any:
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("tool_calls"), list):
        return choice
    calls: list[Any] = message["tool_calls"]
    numbered = [
        {**c, "id": f"call_{n}_{i}"} if isinstance(c, dict) and "id" in c else c
        for i, c in enumerate(calls)
    ]
    return {**choice, "message": {**message, "tool_calls": numbered}}


def _input_summary(body: Mapping[str, Any]) -> str:
    for m in reversed(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
            return " / ".join(line.strip() for line in m["content"].splitlines()[:3])[:120]
    return ""
