"""Model cassettes: record a real `ChatOpenAI` against a loopback server, replay with it gone.

Every call here goes through the product's own model path (`open_chat_model` →
`GuardedChatOpenAI` → openai SDK → httpx), with the cassette as the HTTP transport.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import SecretStr

from agents.personalize import DraftOutput
from gtm.app.cassette import REPLAY_BASE_URL, Cassette, CassetteError, CassetteMiss
from gtm.app.llm import ModelReplyError, ModelSettings, http_clients, open_chat_model
from tests.support.openai_server import ScriptedOpenAIServer, text_response, write_from_facts

KEY = "sk-live-cassette-0123456789SECRET"
SYSTEM = (
    "You write one short email from Sam at Vectorly to one person.\n"
    "Rules:\n- Use at least two of the FACTS below and put their ids in cited_fact_ids."
)


def _user(company: str, first: str = "Dana") -> str:
    return (
        f"Company: {company}\nPerson: {first} Ruiz (VP Engineering)\nFirst name: {first}\n\n"
        f"FACTS:\n[f1] {company} is hiring 4 ML infrastructure engineers. (source: jobs)\n"
        f"[f2] {company} shipped a monorepo assistant. (source: blog)\n"
    )


def _messages(company: str, system: str = SYSTEM) -> list[BaseMessage]:
    return [SystemMessage(system), HumanMessage(_user(company))]


def _settings(server: ScriptedOpenAIServer | None = None, **kw: Any) -> ModelSettings:
    if server is None:  # replay: no endpoint, no key
        return ModelSettings(temperature=0, seed=7, **kw)
    return ModelSettings(
        base_url=server.base_url,
        model="scripted",
        api_key=SecretStr(KEY),
        temperature=0,
        seed=7,
        **kw,
    )


def _respond(body: dict[str, Any]) -> dict[str, Any]:
    """Structured calls get a draft built from the facts; plain ones an echo of the input."""
    if body.get("tool_choice"):
        return write_from_facts(body)
    return text_response("Noted: " + body["messages"][-1]["content"].splitlines()[0])


async def _draft(chat: Any, messages: list[BaseMessage]) -> DraftOutput:
    out = await chat.with_structured_output(DraftOutput, method="function_calling").ainvoke(
        messages
    )
    assert isinstance(out, DraftOutput)
    return out


async def _record(path: Path, companies: list[str], *, concurrent: bool = False) -> list[Any]:
    """One recorded run: a structured draft and a plain answer per company; the cassette saved."""
    cassette = Cassette.open(path, "record")
    with ScriptedOpenAIServer(responder=_respond) as server:
        async with open_chat_model(_settings(server), log_dir=path.parent, cassette=cassette) as (
            chat,
            desc,
        ):
            assert desc == "scripted"

            async def one(company: str) -> Any:
                drafted = await _draft(chat, _messages(company))
                said = await chat.ainvoke(_messages(company))
                return drafted, said.content

            if concurrent:
                results = list(await asyncio.gather(*(one(c) for c in companies)))
            else:
                results = [await one(c) for c in companies]
        assert len(server.requests) == 2 * len(set(companies))
        assert all(h["authorization"] == f"Bearer {KEY}" for h in server.headers)
    cassette.save()
    return results


# ------------------------------------------------------------------ record, then replay


async def test_replay_with_the_server_gone_gives_the_recorded_answers(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    recorded = await _record(path, ["Quillcode", "Acme"])
    replay = Cassette.open(path, "replay")
    async with open_chat_model(_settings(), log_dir=tmp_path, cassette=replay) as (chat, desc):
        assert chat.openai_api_base == REPLAY_BASE_URL and desc == "scripted"
        assert chat.model_name == "scripted"  # the recorded model, with nothing configured
        replayed = [
            (await _draft(chat, _messages(c)), (await chat.ainvoke(_messages(c))).content)
            for c in ["Quillcode", "Acme"]
        ]
    assert replayed == recorded
    assert recorded[0][0].cited_fact_ids == ["f1", "f2"] and "Quillcode" in recorded[0][0].body
    assert replay.misses == [] and replay.unused() == []
    assert not tmp_path.joinpath("embedded-model.log").exists()  # nothing was started


def test_a_replaying_model_answers_sync_calls_too(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    recorded = asyncio.run(_record(path, ["Acme"]))

    async def sync_call() -> Any:
        replay = Cassette.open(path, "replay")
        async with open_chat_model(_settings(), log_dir=tmp_path, cassette=replay) as (chat, _):
            return await asyncio.to_thread(chat.invoke, _messages("Acme"))

    assert asyncio.run(sync_call()).content == recorded[0][1]


# ------------------------------------------------------------------ misses say what changed


async def _miss(path: Path, messages: list[BaseMessage], **kw: Any) -> CassetteMiss:
    replay = Cassette.open(path, "replay")
    async with open_chat_model(_settings(**kw), log_dir=path.parent, cassette=replay) as (
        chat,
        _,
    ):
        with pytest.raises(CassetteMiss) as caught:
            await _draft(chat, messages)
    assert replay.misses == [caught.value]
    return caught.value


async def test_a_changed_system_prompt_is_a_miss_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    await _record(path, ["Quillcode", "Acme"])
    changed = SYSTEM.replace("at least two", "at least three")
    miss = await _miss(path, _messages("Acme", system=changed))
    assert miss.reasons == [
        "system prompt changed (line 3: '- Use at least two of the FACTS below and put their ids "
        "in cited_fact_' → '- Use at least three of the FACTS below and put their ids in "
        "cited_fac')"
    ]
    assert miss.prompt == "personalize_email → DraftOutput" and miss.model == "scripted"
    text = str(miss)
    assert "model scripted" in text and "personalize_email" in text and "re-record" in text
    assert isinstance(miss, ModelReplyError)  # fails a thread the way an endpoint failure does


async def test_a_changed_input_is_a_miss_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    await _record(path, ["Quillcode", "Acme"])
    miss = await _miss(path, _messages("Acmeco"))
    assert len(miss.reasons) == 1 and miss.reasons[0].startswith("input changed (line 1: ")
    assert "'[user] Company: Acme'" in miss.reasons[0]
    assert "Acmeco" in str(miss) and "personalize_email" in str(miss)


async def test_changed_parameters_and_an_empty_cassette_are_misses_too(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    await _record(path, ["Acme"])
    miss = await _miss(path, _messages("Acme"), max_tokens=200)
    assert miss.reasons == ["parameters changed: max_tokens 400 → 200"]
    Cassette(path=tmp_path / "empty.jsonl", mode="record").save()
    miss = await _miss(tmp_path / "empty.jsonl", _messages("Acme"))
    assert miss.reasons == [] and "holds no request of this kind" in str(miss)


def test_a_missing_or_broken_cassette_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CassetteError, match="no such cassette.*make record-baseline"):
        Cassette.open(tmp_path / "nope.jsonl", "replay")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"format": "gtm-model-cassette", "version": 1}\n{"key": \n')
    with pytest.raises(CassetteError, match="line 2"):
        Cassette.open(broken, "replay")
    broken.write_text("<<<<<<< HEAD\n")
    with pytest.raises(CassetteError, match="not a readable cassette"):
        Cassette.open(broken, "replay")


# ------------------------------------------------------------------ the file


async def test_the_key_never_reaches_the_cassette(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    await _record(path, ["Acme"])
    text = path.read_text(encoding="utf-8")
    assert KEY not in text and "SECRET" not in text and "authorization" not in text.lower()
    # An endpoint that echoes the key in a 401 is not recorded, and fails scrubbed as ever.
    cassette = Cassette.open(tmp_path / "failed.jsonl", "record")
    with ScriptedOpenAIServer(responder=_respond) as server:
        server.fail_next += [(401, {"X-Echo": KEY})] * 2
        async with open_chat_model(_settings(server), log_dir=tmp_path, cassette=cassette) as (
            chat,
            _,
        ):
            with pytest.raises(ModelReplyError) as caught:
                await _draft(chat, _messages("Acme"))
    assert KEY not in str(caught.value) and "401" in str(caught.value)
    cassette.save()
    assert KEY not in (tmp_path / "failed.jsonl").read_text() and cassette.entries == {}


async def test_recording_twice_writes_the_same_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    await _record(first, ["Quillcode", "Acme", "Initech"])
    await _record(second, ["Initech", "Quillcode", "Acme"], concurrent=True)  # other order
    assert first.read_bytes() == second.read_bytes()
    lines = first.read_text(encoding="utf-8").splitlines()
    header, entries = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    assert header["entries"] == 6 and header["uses"] == 6 and header["model_name"] == "scripted"
    assert [e["key"] for e in entries] == sorted(e["key"] for e in entries)
    assert list(entries[0])[:5] == ["key", "prompt", "model", "input", "uses"]
    drafts = [e for e in entries if e["prompt"] == "personalize_email → DraftOutput"]
    assert len(drafts) == 3 and {e["response"]["created"] for e in entries} == {0}
    assert drafts[0]["response"]["choices"][0]["message"]["tool_calls"][0]["id"] == "call_0_0"


async def test_record_rewrites_the_cassette_with_exactly_this_runs_requests(
    tmp_path: Path,
) -> None:
    path = tmp_path / "eval.jsonl"
    await _record(path, ["Quillcode", "Acme"])
    await _record(path, ["Acme", "Initech", "Acme"])  # Quillcode is stale; Acme asked twice
    replay = Cassette.open(path, "replay")
    assert {
        e.request["messages"][1]["content"].split("\n")[0] for e in replay.entries.values()
    } == {
        "Company: Acme",
        "Company: Initech",
    }
    header = json.loads(path.read_text().splitlines()[0])
    assert header["entries"] == 4 and header["uses"] == 6  # the repeat came from the recording
    async with open_chat_model(_settings(), log_dir=tmp_path, cassette=replay) as (chat, _):
        await _draft(chat, _messages("Initech"))
    assert len(replay.unused()) == 3  # what this replay never asked for


async def test_any_unicode_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    odd = "Ünïcødé\u2028line\x85next\u2029para 🚀 \u202eevil\ufeff"
    recorded = await _record(path, [odd])
    replay = Cassette.open(path, "replay")
    async with open_chat_model(_settings(), log_dir=tmp_path, cassette=replay) as (chat, _):
        again = await _draft(chat, _messages(odd)), (await chat.ainvoke(_messages(odd))).content
    assert [again] == recorded and replay.misses == []
    assert "\u2028" in path.read_text(encoding="utf-8")  # raw, inside one JSON line


# ------------------------------------------------------------------ concurrency


async def test_concurrent_calls_record_and_replay_safely(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    companies = [f"Company{i}" for i in range(8)] + ["Company0", "Company1"]  # two repeats
    recorded = await _record(path, companies, concurrent=True)
    assert recorded[8] == recorded[0] and recorded[9] == recorded[1]
    replay = Cassette.open(path, "replay")
    assert len(replay.entries) == 16
    async with open_chat_model(_settings(), log_dir=tmp_path, cassette=replay) as (chat, _):

        async def one(company: str) -> Any:
            drafted = await _draft(chat, _messages(company))
            return drafted, (await chat.ainvoke(_messages(company))).content

        replayed = await asyncio.gather(*(one(c) for c in reversed(companies)))
    assert list(reversed(replayed)) == recorded and replay.misses == []


# ------------------------------------------------------------------ one client per model


class _KeepAliveServer:
    """An HTTP/1.1 endpoint (as llama.cpp's and hosted ones are) counting client connections."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                owner.ports.append(self.client_address[1])
                data = json.dumps(_respond(body)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"


@pytest.fixture
def keepalive() -> Iterator[_KeepAliveServer]:
    fake = _KeepAliveServer()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join(timeout=5)


async def test_every_call_of_a_model_reuses_one_client(keepalive: _KeepAliveServer) -> None:
    settings = ModelSettings(base_url=keepalive.base_url, model="m", temperature=0)
    async with open_chat_model(settings, log_dir=Path("unused")) as (chat, _):
        client = chat.http_async_client
        assert client is not None and not client.is_closed
        for company in ["A", "B", "C", "D", "E"]:
            await _draft(chat, _messages(company))
        await asyncio.gather(*(_draft(chat, _messages(c)) for c in ["F", "G"]))
    assert client.is_closed  # this model's own client, closed with it
    assert len(keepalive.ports) == 7 and len(set(keepalive.ports)) <= 2
    async with http_clients(settings) as clients:
        shared = clients["http_async_client"]
        assert not shared.is_closed
    assert shared.is_closed  # closed on exit, not left to the garbage collector
