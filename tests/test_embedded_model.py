"""Smoke test: the embedded llama.cpp model starts and answers a structured call."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from agents.personalize import DraftOutput
from gtm.app.llm import ModelSettings, open_chat_model


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_embedded_model_answers_with_structured_output(tmp_path: Path) -> None:
    # No skip: CI installs the [local] extra, and a missing one must fail loudly here.
    async with open_chat_model(ModelSettings(max_tokens=96), log_dir=tmp_path) as (chat, desc):
        assert "embedded" in desc
        writer = chat.with_structured_output(DraftOutput, method="function_calling")
        out = await writer.ainvoke(
            [
                SystemMessage("Write a one-sentence LinkedIn note. Cite fact ids."),
                HumanMessage(
                    "FACTS:\n[f1] Quillcode is hiring ML engineers.\n"
                    "[f2] 3 sign-ups from quillcode.dev.\nCall the function."
                ),
            ]
        )
    assert isinstance(out, DraftOutput) and out.body.strip()
