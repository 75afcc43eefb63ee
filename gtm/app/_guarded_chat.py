"""The `ChatOpenAI` every endpoint is called through (`gtm.app.llm.build_chat_model`).

Kept apart from `gtm.app.llm` so that loading the model settings (every `gtm` command does)
does not import langchain-openai and openai: only building a chat model does.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from gtm.app.llm import ModelReplyError

__all__ = ["GuardedChatOpenAI"]


class GuardedChatOpenAI(ChatOpenAI):
    """`ChatOpenAI` whose failures are scrubbed of the key and whose replies are checked.

    Endpoints echo the key in a 401 (OpenAI: "Incorrect API key provided: sk-…"), and the
    exception text travels into stderr, the ledger, checkpoints and alerts. The error is rebuilt
    outside the `except` block, so no chained exception carries the original text either.
    """

    def _secrets(self) -> list[str]:
        key = self.openai_api_key
        return [key.get_secret_value()] if isinstance(key, SecretStr) else []

    def _failure(self, exc: Exception) -> ModelReplyError:
        # A ModelReplyError raised below the SDK (a cassette's miss, from its transport) is
        # ours, holds no key and already says what went wrong: it passes through, whether the
        # SDK let it out as it was (openai 3) or raised a connection error from it (before).
        if isinstance(exc, ModelReplyError):
            return exc
        if isinstance(exc.__cause__, ModelReplyError):
            return exc.__cause__
        text = f"{type(exc).__name__}: {exc}"
        for secret in self._secrets():
            if secret:
                text = text.replace(secret, "***")
        return ModelReplyError(f"model endpoint {self.openai_api_base or ''}: {text}"[:600])

    def _checked(self, result: ChatResult) -> ChatResult:
        if not result.generations:
            raise ModelReplyError("the model endpoint answered with no choices")
        return result

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        try:
            result = super()._generate(messages, stop, run_manager, **kwargs)
        except Exception as exc:  # noqa: BLE001 - rebuilt below without the key
            failure = self._failure(exc)
        else:
            return self._checked(result)
        raise failure

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        try:
            result = await super()._agenerate(messages, stop, run_manager, **kwargs)
        except Exception as exc:  # noqa: BLE001 - rebuilt below without the key
            failure = self._failure(exc)
        else:
            return self._checked(result)
        raise failure
