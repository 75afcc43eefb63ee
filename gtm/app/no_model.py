"""A chat model whose every call fails: what `ModelNotStarted` turns into once something uses it.

It is a real `BaseChatModel`, so a graph path that unexpectedly reaches a writer goes through
LangChain as with any model (structured output, callbacks) and ends in a loud error instead of a
model started behind the reviewer's back. It lives apart from `gtm.app.workspace` because
importing a chat model class loads langchain-core's runnables and tracing (langsmith,
OpenTelemetry): most of what a listing command (`gtm status`, `gtm inbox`) would spend before it
starts (issue 20).
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult

__all__ = ["NO_MODEL_MESSAGE", "RefusingChatModel"]

NO_MODEL_MESSAGE = "this command does not start a model; use `gtm regenerate` or `gtm run`"


class RefusingChatModel(BaseChatModel):
    """Binds tools and builds structured output like any chat model; generating raises."""

    @property
    def _llm_type(self) -> str:
        return "not-started"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise RuntimeError(NO_MODEL_MESSAGE)

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self
