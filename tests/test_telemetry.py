"""Node-step logs, token use and cost, and OpenTelemetry spans, on the real graph.

A scripted model that reports token usage drives the outreach graph with the step log in the run
config: one JSON line per node step, the tokens summed per step and per campaign, nothing about
people or keys in any line or span; the totals survive into `gtm status`.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.types import Command
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from gtm.app.settings import Settings
from gtm.app.telemetry import StepLog, cost, log_json
from gtm.cli import app
from tests.support.fake_model import ScriptedChatModel, tool_call
from tests.test_graph import GOOD, cfg, deps, env, good_note, inp  # noqa: F401 - env fixture
from tools.usage import Usage, UsageStore

PERSONAL = ("Dana", "Ruiz", "dana@", "linkedin.com", "sign-ups", "monorepo", "Quillcode,")
"""What a step line must never carry: the contact, their address and profile, facts, drafts."""


def counted(msg: AIMessage, prompt: int, completion: int, model: str = "gpt-test") -> AIMessage:
    """`msg` as a provider returns it: with token usage and the model's name."""
    msg.usage_metadata = {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
    }
    msg.response_metadata = {"model_name": model}
    return msg


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """gtm's loggers as `--log-format json` sets them up, into a buffer; undone afterwards."""
    root = logging.getLogger("gtm")
    before = (list(root.handlers), root.level, root.propagate)
    stream = io.StringIO()
    log_json(stream)
    yield stream
    root.handlers[:], root.level, root.propagate = before


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_one_json_line_per_node_step_with_its_tokens_and_nothing_personal(
    env: dict[str, Any],  # noqa: F811
    json_log: io.StringIO,
    tmp_path: Path,
) -> None:
    generic = tool_call(
        "DraftOutput",
        {
            "body": "I hope this message finds you well. Let's leverage our synergy! [Company]",
            "cited_fact_ids": ["f1"],
        },
    )
    # The first draft fails review and is rewritten: two calls inside two personalize steps.
    model = ScriptedChatModel.from_script(
        [counted(generic, 300, 40), counted(good_note(), 410, 55)]
    )
    usage = UsageStore(tmp_path / "usage.sqlite")
    config = {**cfg("t1"), "callbacks": [StepLog(usage)]}
    d = deps(env, model)
    await env["graph"].ainvoke(inp(), config, context=d)
    await env["graph"].ainvoke(Command(resume={"action": "approve"}), config, context=d)
    model.assert_complete()

    steps = [line for line in lines(json_log) if line["logger"] == "gtm.steps"]
    assert [s["node"] for s in steps] == [
        "intake",
        "research",
        "personalize",
        "review",
        "personalize",
        "review",
        "approve",  # paused for the human
        "approve",  # resumed with the decision
        "send",
        "record",
    ]
    assert [s["outcome"] for s in steps].count("interrupted") == 1
    assert steps[6]["outcome"] == "interrupted" and steps[7]["outcome"] == "ok"
    assert {(s["campaign"], s["account"], s["thread"]) for s in steps} == {
        ("c1", "quillcode.dev", "t1")
    }
    writes = [s for s in steps if s["node"] == "personalize"]
    assert [(s["prompt_tokens"], s["completion_tokens"]) for s in writes] == [(300, 40), (410, 55)]
    assert sum(s["model_calls"] for s in steps) == 2
    assert all(s["duration_ms"] >= 0 and s["error"] is None for s in steps)
    assert {s["node"] for s in steps if s["model_calls"]} == {"personalize"}
    text = json_log.getvalue()
    for word in (*PERSONAL, str(GOOD["body"])[:30]):
        assert word not in text, word

    assert usage.for_campaign("c1") == [Usage("c1", "gpt-test", 2, 710, 95)]
    assert usage.for_campaign("c2") == []


async def test_a_failing_node_is_logged_with_the_error_type_only(
    env: dict[str, Any],  # noqa: F811
    json_log: io.StringIO,
) -> None:
    model = ScriptedChatModel.from_script([])  # the writer's call fails: nothing was scripted
    config = {**cfg("t2"), "callbacks": [StepLog()]}
    with pytest.raises(AssertionError):
        await env["graph"].ainvoke(inp(), config, context=deps(env, model))
    steps = [line for line in lines(json_log) if line["logger"] == "gtm.steps"]
    assert [(s["node"], s["outcome"], s["error"]) for s in steps] == [
        ("intake", "ok", None),
        ("research", "ok", None),
        ("personalize", "error", "AssertionError"),
    ]
    assert "scripted" not in json_log.getvalue(), "the exception's message stays out"


async def test_each_step_is_an_otel_span_with_the_same_safe_attributes(
    env: dict[str, Any],  # noqa: F811
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handler = StepLog(tracer=provider.get_tracer("test"))
    model = ScriptedChatModel.from_script([counted(good_note(), 120, 30)])
    await env["graph"].ainvoke(
        inp(), {**cfg("t3"), "callbacks": [handler]}, context=deps(env, model)
    )
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [
        f"gtm.node {n}" for n in ("intake", "research", "personalize", "review", "approve")
    ]
    write = spans[2].attributes or {}
    assert write["gtm.prompt_tokens"] == 120 and write["gtm.completion_tokens"] == 30
    assert write["gtm.campaign"] == "c1" and write["gtm.thread"] == "t3"
    assert (spans[4].attributes or {})["gtm.outcome"] == "interrupted"
    assert all(s.end_time and s.start_time and s.end_time >= s.start_time for s in spans)
    values = " ".join(str(v) for s in spans for v in (s.attributes or {}).values())
    for word in PERSONAL:
        assert word not in values, word
    provider.shutdown()


def test_cost_uses_the_model_price_else_the_default_else_none() -> None:
    u = Usage("c1", "gpt-test", 3, 2_000_000, 500_000)
    assert cost(u, Settings()) is None
    priced = Settings(model_price_input=2.5, model_price_output=10.0)
    assert cost(u, priced) == pytest.approx(2 * 2.5 + 0.5 * 10)
    only_in = Settings(model_price_input=2.5)
    assert cost(u, only_in) is None, "half a price is no price"
    table = Settings(
        model_prices={"gpt-test": (1.0, 4.0)}, model_price_input=9, model_price_output=9
    )
    assert cost(u, table) == pytest.approx(2 * 1.0 + 0.5 * 4.0)


def test_prices_must_be_finite_and_not_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    from gtm.app.settings import SettingsError, load_settings

    monkeypatch.setenv("GTM_MODEL_PRICES", '{"gpt-test": [1.0, -4.0]}')
    with pytest.raises(SettingsError, match="model_prices"):
        load_settings()
    monkeypatch.setenv("GTM_MODEL_PRICES", "{}")
    monkeypatch.setenv("GTM_MODEL_PRICE_INPUT", "-1")
    with pytest.raises(SettingsError, match="model_price_input"):
        load_settings()


def test_status_shows_calls_tokens_and_cost_per_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = UsageStore(data / "usage.sqlite")
    store.add("c1", "gpt-test", prompt_tokens=300_000, completion_tokens=40_000)
    store.add("c1", "gpt-test", prompt_tokens=700_000, completion_tokens=60_000)
    store.add("c1", "local-llama", prompt_tokens=5, completion_tokens=7)
    store.add("other", "gpt-test", prompt_tokens=1, completion_tokens=1)
    store.close()
    for k in ("GTM_MODEL_PRICE_INPUT", "GTM_MODEL_PRICE_OUTPUT", "GTM_MODEL_PRICES"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("GTM_MODEL_PRICES", '{"gpt-test": [2.5, 10]}')
    result = CliRunner().invoke(
        app, ["--data-dir", str(data), "status", "--campaign", "c1"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    # 1M prompt tokens at 2.5 and 0.1M completion tokens at 10 per million: 3.5.
    assert (
        "model gpt-test: 2 call(s), 1000000 prompt + 100000 completion tokens, cost 3.5000" in out
    )
    assert "model local-llama: 1 call(s), 5 prompt + 7 completion tokens, cost –" in out
    assert "other" not in out


def test_log_format_json_is_a_global_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger("gtm")
    before = (list(root.handlers), root.level, root.propagate)
    try:
        runner = CliRunner()
        bad = runner.invoke(app, ["--log-format", "xml", "status"])
        assert bad.exit_code == 2 and "xml" in bad.output
        ok = runner.invoke(app, ["--log-format", "json", "--data-dir", str(tmp_path), "status"])
        assert ok.exit_code == 0, ok.output
        assert any(h.formatter.__class__.__name__ == "JsonLines" for h in root.handlers)
        assert root.level == logging.INFO and not root.propagate
    finally:
        root.handlers[:], root.level, root.propagate = before


async def test_a_workspace_run_with_its_callbacks_counts_into_gtm_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring the runner uses: `callbacks_for(rt)` in the run config of `rt.graph`."""
    import dataclasses

    from gtm.app.checkpoints import thread_config
    from gtm.app.telemetry import callbacks_for
    from gtm.app.workspace import open_workspace

    monkeypatch.delenv("LANGSMITH_TRACING", raising=False)
    monkeypatch.delenv("LANGCHAIN_TRACING_V2", raising=False)
    data = tmp_path / "data"
    model = ScriptedChatModel.from_script([counted(good_note(), 120, 30)])
    async with open_workspace(Settings(data_dir=data), with_model=False) as rt:
        handlers = callbacks_for(rt)
        assert callbacks_for(rt) is handlers, "made once per workspace"
        assert [type(h).__name__ for h in handlers] == ["StepLog"], "no tracer while off"
        config = {**thread_config("t9"), "callbacks": handlers}
        d = dataclasses.replace(rt.deps, model=model)
        await rt.graph.ainvoke(inp(campaign="launch"), config, context=d)
    model.assert_complete()
    args = ["--data-dir", str(data), "status", "--campaign", "launch"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "model gpt-test: 1 call(s), 120 prompt + 30 completion tokens, cost –" in out


def test_usage_counts_from_any_thread_and_closes_from_another(tmp_path: Path) -> None:
    """Callbacks may end on LangChain's worker threads and the workspace's finalizer may close
    the store from yet another: no call is lost and nothing raises."""
    import threading

    store = UsageStore(tmp_path / "usage.sqlite")
    workers = [
        threading.Thread(
            target=lambda: [
                store.add("c", "m", prompt_tokens=1, completion_tokens=2) for _ in range(50)
            ]
        )
        for _ in range(4)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    (got,) = store.for_campaign("c")
    assert (got.calls, got.prompt_tokens, got.completion_tokens) == (200, 200, 400)
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join()
