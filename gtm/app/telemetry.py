"""What a run leaves for operators: one log record per graph node step, token use per campaign,
and (optionally) an OpenTelemetry span per step.

`StepLog` is a LangChain callback handler put in a thread's run config. It sees every node of
the outreach graph start and end (`metadata["langgraph_node"]`) and every model call inside it,
and emits, per node step, only identifiers and numbers: campaign, account id (a company
domain), thread id, node, duration, tokens and the outcome. Never message text, facts, people's
names or addresses, or keys: those are not read from the run at all. Token use is added to a
`UsageStore`, so `gtm status` can show it (and its cost, when prices are configured) across runs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.outputs import LLMResult

from tools.usage import Usage, UsageStore

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

    from gtm.app.settings import Settings
    from gtm.app.workspace import Workspace
    from tools.pg import Database

__all__ = [
    "LOGGER",
    "Step",
    "StepLog",
    "JsonLines",
    "callbacks_for",
    "cost",
    "log_json",
    "otel_provider",
    "usage_store",
]

LOGGER = logging.getLogger("gtm.steps")
"""Where node steps are logged, at INFO; `--log-format json` prints them, one JSON object each."""


@dataclass
class Step:
    """One node step, as logged: identifiers and numbers only."""

    ts: str
    campaign: str | None
    account: str | None
    thread: str | None
    node: str
    duration_ms: float = 0.0
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    outcome: str = "ok"
    """ok, interrupted (paused for a human), or error."""
    error: str | None = None
    """The exception's type name on error (never its message, which may quote a draft)."""
    started: float = field(default=0.0, repr=False)


def _field(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _plain(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _tokens(response: LLMResult) -> tuple[int, int, str | None]:
    """Prompt and completion tokens of one model call, and the model's own name if it gave one:
    `usage_metadata` on the message (LangChain's standard), else the provider's `token_usage`."""
    prompt = completion = 0
    model: str | None = None
    for gens in response.generations:
        for gen in gens:
            msg = getattr(gen, "message", None)
            usage = getattr(msg, "usage_metadata", None)
            if usage:
                prompt += int(usage.get("input_tokens", 0))
                completion += int(usage.get("output_tokens", 0))
            meta = getattr(msg, "response_metadata", None) or {}
            model = model or _plain(meta.get("model_name"))
    output = response.llm_output or {}
    if not prompt and not completion:
        usage = output.get("token_usage") or {}
        prompt = int(usage.get("prompt_tokens", 0) or 0)
        completion = int(usage.get("completion_tokens", 0) or 0)
    return prompt, completion, model or _plain(output.get("model_name"))


class StepLog(AsyncCallbackHandler):
    """Logs one record per graph node step, counts model tokens into `usage`, and (with a
    `tracer`) exports each step as an OpenTelemetry span with the same safe attributes.

    One instance may serve many threads at once: runs are keyed by their run id.
    """

    run_inline = True  # bookkeeping only, no I/O worth a thread; keeps event order exact

    def __init__(
        self,
        usage: UsageStore | None = None,
        *,
        tracer: Tracer | None = None,
        logger: logging.Logger = LOGGER,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.usage = usage
        self.tracer = tracer
        self.logger = logger
        self.clock = clock
        self._parents: dict[UUID, UUID | None] = {}
        self._steps: dict[UUID, Step] = {}
        self._models: dict[UUID, str] = {}

    def _step_of(self, run_id: UUID | None) -> Step | None:
        seen = 0
        while run_id is not None and seen < 64:
            if run_id in self._steps:
                return self._steps[run_id]
            run_id = self._parents.get(run_id)
            seen += 1
        return None

    async def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: dict[str, Any] | Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._parents[run_id] = parent_run_id
        meta = metadata or {}
        node = meta.get("langgraph_node")
        if not node or kwargs.get("name") != node or self._step_of(parent_run_id) is not None:
            return
        account = _field(inputs, "account")
        self._steps[run_id] = Step(
            ts=datetime.now(UTC).isoformat(timespec="milliseconds"),
            campaign=_plain(_field(inputs, "campaign")),
            account=_plain(_field(account, "account_id")),
            thread=_plain(meta.get("thread_id")),
            node=str(node),
            started=self.clock(),
        )

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._parents[run_id] = parent_run_id
        name = (metadata or {}).get("ls_model_name")
        if isinstance(name, str) and name:
            self._models[run_id] = name

    async def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        await self.on_chat_model_start(
            serialized, [], run_id=run_id, parent_run_id=parent_run_id, metadata=metadata
        )

    async def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        prompt, completion, named = _tokens(response)
        model = named or self._models.get(run_id) or "unknown"
        self._forget(run_id)
        step = self._step_of(parent_run_id)
        if step is None:
            return
        step.model_calls += 1
        step.prompt_tokens += prompt
        step.completion_tokens += completion
        if self.usage is not None and step.campaign:
            self.usage.add(step.campaign, model, prompt_tokens=prompt, completion_tokens=completion)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._forget(run_id)

    async def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._finish(run_id, None)

    async def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._finish(run_id, error)

    def _forget(self, run_id: UUID) -> None:
        self._parents.pop(run_id, None)
        self._models.pop(run_id, None)

    def _finish(self, run_id: UUID, error: BaseException | None) -> None:
        step = self._steps.pop(run_id, None)
        self._forget(run_id)
        if step is None:
            return
        ended = self.clock()
        step.duration_ms = round((ended - step.started) * 1000, 3)
        if error is not None:
            # LangGraph pauses for a human by raising GraphInterrupt through the node.
            paused = type(error).__name__ in ("GraphInterrupt", "NodeInterrupt")
            step.outcome = "interrupted" if paused else "error"
            step.error = None if paused else type(error).__name__
        record = {k: v for k, v in asdict(step).items() if k != "started"}
        self.logger.info("node step", extra={"gtm": record})
        if self.tracer is not None:
            self._span(record, step.started, ended)

    def _span(self, record: dict[str, Any], started: float, ended: float) -> None:
        from opentelemetry.trace import Status, StatusCode

        assert self.tracer is not None
        end_ns = time.time_ns() - int((self.clock() - ended) * 1e9)
        start_ns = end_ns - int((ended - started) * 1e9)
        attrs = {f"gtm.{k}": v for k, v in record.items() if v is not None and k != "ts"}
        span = self.tracer.start_span(f"gtm.node {record['node']}", start_time=start_ns)
        span.set_attributes(attrs)
        if record["outcome"] == "error":
            span.set_status(Status(StatusCode.ERROR, str(record["error"])))
        span.end(end_time=end_ns)


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger and message, and for a node step its
    fields at the top level (`{"node": "send", "duration_ms": 12.5, ...}`)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "gtm", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_json(stream: Any = None) -> logging.Handler:
    """Send gtm's loggers (`gtm.*`, INFO and up, node steps included) to `stream` (stderr) as
    JSON lines, instead of the default (warnings only, as text). Returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger("gtm")
    for old in [h for h in root.handlers if isinstance(h.formatter, JsonLines)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    return handler


def otel_provider(endpoint: str) -> TracerProvider:
    """A tracer provider exporting over OTLP/gRPC to `endpoint` in batches (not made global:
    only `StepLog` spans go through it)."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "gtm-agents"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def cost(usage: Usage, settings: Settings) -> float | None:
    """What `usage` cost at the configured prices per million tokens (`model_prices[model]`,
    else `model_price_input`/`model_price_output`); None when a price is unknown."""
    prices = settings.model_prices.get(usage.model)
    if prices is None:
        if settings.model_price_input is None or settings.model_price_output is None:
            return None
        prices = (settings.model_price_input, settings.model_price_output)
    return (usage.prompt_tokens * prices[0] + usage.completion_tokens * prices[1]) / 1_000_000


def usage_store(settings: Settings, database: Database | None = None) -> UsageStore:
    """Where token use is counted, close it after use: `usage.sqlite` in the data directory, or
    with `GTM_DATABASE_URL` the database (on `database`, the workspace's pool, when given), so
    `gtm status` sums every worker's calls on every machine."""
    if settings.database_url is None:
        return UsageStore(settings.path("usage.sqlite"))
    from tools.pg_usage import PgUsageStore

    # It answers UsageStore's methods one for one (tests/test_feedback_backends.py).
    return cast(UsageStore, PgUsageStore(database or settings.database_url.get_secret_value()))


_OPEN: dict[int, list[BaseCallbackHandler]] = {}
"""Handlers by workspace identity (a `Workspace` is not hashable); dropped when it is freed."""


def callbacks_for(rt: Workspace) -> list[BaseCallbackHandler]:
    """The callback handlers a run of `rt`'s graph carries: the step log (with the OTLP exporter
    when `GTM_OTEL_ENDPOINT` is set) and, when LangSmith tracing is on, the redacting tracer.
    Made once per workspace and closed with it."""
    if (known := _OPEN.get(id(rt))) is not None:
        return known
    from gtm.app.tracing import redacting_tracer

    settings = rt.settings
    usage = usage_store(settings, rt.database)
    provider = otel_provider(settings.otel_endpoint) if settings.otel_endpoint else None
    tracer = provider.get_tracer("gtm.app.telemetry") if provider is not None else None
    handlers: list[BaseCallbackHandler] = [StepLog(usage, tracer=tracer)]
    if (langsmith := redacting_tracer(settings)) is not None:
        handlers.append(langsmith)
    _OPEN[id(rt)] = handlers
    weakref.finalize(rt, _close, id(rt), usage, provider)
    return handlers


def _close(key: int, usage: UsageStore, provider: TracerProvider | None) -> None:
    _OPEN.pop(key, None)
    usage.close()
    if provider is not None:
        provider.shutdown()
