"""Prompts are files with declared variables; rendering fails loudly on a mismatch."""

from __future__ import annotations

from pathlib import Path

import pytest

from prompts import PromptError, list_prompts, load_prompt


@pytest.mark.parametrize("name", list_prompts())
def test_every_prompt_renders_with_exactly_its_variables(name: str) -> None:
    p = load_prompt(name)
    assert p.ref == f"{name}@{p.version}"
    values = {v: f"<{v}>" for v in p.variables}
    system, user = p.render(**values)
    for v in p.variables:
        assert f"<{v}>" in system + user
    missing = dict(values)
    missing.pop(p.variables[0])
    with pytest.raises(PromptError, match="missing"):
        p.render(**missing)
    with pytest.raises(PromptError, match="unexpected"):
        p.render(**values, surprise="x")


def test_shipped_prompts() -> None:
    assert {
        "personalize_linkedin_note",
        "personalize_email",
        "personalize_linkedin_message",
    } <= set(list_prompts())


def test_undeclared_placeholder_fails_at_load(tmp_path: Path) -> None:
    (tmp_path / "bad.md").write_text(
        "---\nname: bad\nversion: '1'\nvariables: [a]\n---\n## system\n{a}\n## user\n{b}\n",
        encoding="utf-8",
    )
    with pytest.raises(PromptError, match="undeclared: \\['b'\\]"):
        load_prompt("bad", tmp_path)
