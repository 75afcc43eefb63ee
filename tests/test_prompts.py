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


def test_render_from_takes_what_the_prompt_declares(tmp_path: Path) -> None:
    (tmp_path / "p.md").write_text(
        "---\nname: p\nversion: '2'\nvariables: [a]\n---\n## system\nS {a}\n## user\nU\n",
        encoding="utf-8",
    )
    p = load_prompt("p", tmp_path)
    assert p.render_from({"a": "1", "offered_but_unused": "x"}) == ("S 1", "U")
    with pytest.raises(PromptError, match="missing"):
        p.render_from({"b": "1"})


def test_an_archived_version_can_be_chosen(tmp_path: Path) -> None:
    head = "---\nname: p\nversion: '{v}'\nvariables: []\n---\n## system\nv{v}\n## user\nU\n"
    (tmp_path / "p.md").write_text(head.format(v=2), encoding="utf-8")
    (tmp_path / "p@1.md").write_text(head.format(v=1), encoding="utf-8")
    assert load_prompt("p", tmp_path).ref == "p@2"
    assert load_prompt("p", tmp_path, version="1").ref == "p@1"
    assert load_prompt("p", tmp_path, version="2").ref == "p@2"
    with pytest.raises(PromptError, match="no p@3.md"):
        load_prompt("p", tmp_path, version="3")
    assert list_prompts(tmp_path) == ["p"]
