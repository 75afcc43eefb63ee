"""The prompt loader: `prompts/<name>.md` files parsed, checked and rendered.

Each file has YAML front matter (name, version, description, variables) and two sections,
`## system` and `## user`. Rendering fails loudly on a missing or unexpected variable, and a file
whose placeholders differ from its declared variables fails when it is loaded.
"""

from __future__ import annotations

import string
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["PromptTemplate", "PromptError", "load_prompt", "list_prompts"]


class PromptError(ValueError):
    """A prompt file is malformed, or was rendered with the wrong variables."""


def _placeholders(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}


class PromptTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    description: str = ""
    variables: tuple[str, ...]
    system: str
    user: str

    @model_validator(mode="after")
    def _declared_is_used(self) -> PromptTemplate:
        used = _placeholders(self.system) | _placeholders(self.user)
        declared = set(self.variables)
        if used != declared:
            raise PromptError(
                f"prompt {self.name}: placeholders {sorted(used)} differ from declared "
                f"variables {sorted(declared)} (undeclared: {sorted(used - declared)}, "
                f"unused: {sorted(declared - used)})"
            )
        return self

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, **values: str) -> tuple[str, str]:
        missing = [v for v in self.variables if v not in values]
        extra = [k for k in values if k not in self.variables]
        if missing:
            raise PromptError(f"prompt {self.ref}: missing variable(s) {missing}")
        if extra:
            raise PromptError(f"prompt {self.ref}: unexpected variable(s) {extra}")
        return self.system.format(**values), self.user.format(**values)

    def render_from(self, offered: dict[str, str]) -> tuple[str, str]:
        """Render with the declared variables taken from everything the caller can offer.

        A prompt may use fewer variables than its caller knows (a prompt experiment that drops
        the history, say); one it declares but the caller cannot offer still fails loudly.
        """
        return self.render(**{k: v for k, v in offered.items() if k in self.variables})


@lru_cache(maxsize=64)
def _parse(text: str, where: str) -> PromptTemplate:
    """The template in `text`. Cached by content: a file is read on every load, parsed once per
    version of its text (an edited file parses again)."""
    parts = text.split("---", 2)
    if len(parts) != 3 or parts[0].strip():
        raise PromptError(f"{where}: expected YAML front matter between '---' lines")
    meta = yaml.safe_load(parts[1]) or {}
    body = parts[2]
    if "## system" not in body or "## user" not in body:
        raise PromptError(f"{where}: expected '## system' and '## user' sections")
    system = body.split("## system", 1)[1].split("## user", 1)[0].strip()
    user = body.split("## user", 1)[1].strip()
    try:
        return PromptTemplate(
            name=meta.get("name", ""),
            version=str(meta.get("version", "")),
            description=meta.get("description", ""),
            variables=tuple(meta.get("variables") or ()),
            system=system,
            user=user,
        )
    except PromptError:
        raise
    except ValueError as exc:
        raise PromptError(f"{where}: {exc}") from exc


def _read(name: str, directory: Path | None) -> tuple[str, str] | None:
    if directory is not None:
        path = directory / f"{name}.md"
        return (path.read_text(encoding="utf-8"), str(path)) if path.exists() else None
    res = resources.files("prompts").joinpath(f"{name}.md")
    return (res.read_text(encoding="utf-8"), f"prompts/{name}.md") if res.is_file() else None


def load_prompt(
    name: str, directory: Path | None = None, *, version: str | None = None
) -> PromptTemplate:
    """Load `<name>.md` from `directory`, or from the shipped prompts.

    With `version`, an archived `<name>@<version>.md` is preferred; otherwise `<name>.md` must
    declare that version. Keeping the previous version next to the current one lets `gtm eval
    --prompt-version` score either.
    """
    where = directory or "prompts"
    if version is not None:
        archived = _read(f"{name}@{version}", directory)
        if archived is not None:
            return _parse(*archived)
    found = _read(name, directory)
    if found is None:
        raise PromptError(f"{where}/{name}.md: no such prompt")
    prompt = _parse(*found)
    if version is not None and prompt.version != version:
        raise PromptError(
            f"{where}/{name}.md is version {prompt.version}, and there is no "
            f"{name}@{version}.md (asked for version {version})"
        )
    return prompt


def list_prompts(directory: Path | None = None) -> list[str]:
    root = directory or Path(str(resources.files("prompts")))
    return sorted(p.stem for p in root.glob("*.md") if "@" not in p.stem)
