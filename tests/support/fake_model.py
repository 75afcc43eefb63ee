"""A scripted chat model for node tests: it answers from a script and records every call."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field


def tool_call(name: str, args: dict[str, Any], call_id: str = "call_1") -> AIMessage:
    """An assistant message calling `name` — what structured output expects back."""
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


class ScriptedChatModel(GenericFakeChatModel):
    """`GenericFakeChatModel` whose `bind_tools` returns itself, so structured output works.

    Each call consumes the next scripted message; `assert_complete()` fails if any is left.
    """

    calls: list[list[BaseMessage]] = Field(default_factory=list)
    script_length: int = 0

    @classmethod
    def from_script(cls, script: Sequence[AIMessage | str]) -> ScriptedChatModel:
        items = list(script)
        it: Iterator[AIMessage | str] = iter(items)
        return cls(messages=it, script_length=len(items))

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append(list(messages))
        try:
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        except StopIteration:
            raise AssertionError(
                f"the scripted model was called {len(self.calls)} times; "
                f"only {self.script_length} answers were scripted"
            ) from None

    def assert_complete(self) -> None:
        assert len(self.calls) == self.script_length, (
            f"{self.script_length - len(self.calls)} scripted answer(s) were never used"
        )
