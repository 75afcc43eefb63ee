"""How a cassette names requests and tells them apart (used by `gtm.app.cassette`).

The key is a hash of the canonical JSON body and the endpoint. A miss is explained against the
nearest recorded request: what differs, in the words a prompt author uses ("system prompt
changed", "input changed", "output schema changed", "parameters changed", "model changed"),
with the first line that differs, and which prompt it is (the shipped prompt whose system
text's first line matches, else that first line itself).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["differences", "prompt_label", "request_key", "sdk_httpx", "similarity"]

# The request fields that say what shape the answer takes.
_SCHEMA = ("tools", "tool_choice", "response_format", "functions", "function_call")
_SYSTEM_ROLES = ("system", "developer")
_CLIP = 70


def sdk_httpx() -> ModuleType:
    """The httpx flavour the installed openai SDK sends through: `httpx2` from openai 3 on,
    `httpx` before. A transport or client handed to the SDK must come from that one."""
    import importlib

    import httpx
    import openai

    try:
        httpx2 = importlib.import_module("httpx2")
    except ImportError:
        return httpx
    return httpx2 if issubclass(openai.DefaultAsyncHttpxClient, httpx2.AsyncClient) else httpx


def request_key(endpoint: str, body: Mapping[str, Any]) -> str:
    """A hash of everything in the request that decides the answer (never its headers)."""
    canon = json.dumps(
        {"endpoint": endpoint, "body": body},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()[:24]


def _texts(body: Mapping[str, Any], system: bool) -> str:
    parts = []
    for m in body.get("messages") or []:
        if isinstance(m, dict) and (m.get("role") in _SYSTEM_ROLES) == system:
            content = m.get("content")
            text = content if isinstance(content, str) else json.dumps(content, sort_keys=True)
            parts.append(f"[{m.get('role')}] {text}" if not system else text)
    return "\n".join(parts)


def _around(text: str, at: int) -> str:
    start = max(0, at - _CLIP // 2)
    return ("…" if start else "") + text[start : start + _CLIP]


def _first_change(old: str, new: str) -> str:
    """The first line that differs, both versions, clipped around the first changed character."""
    a, b = old.splitlines(), new.splitlines()
    for n, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if x != y:
            at = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), 0)
            at = at or min(len(x), len(y))
            return f"line {n}: {_around(x, at)!r} → {_around(y, at)!r}"
    if len(a) != len(b):
        n = min(len(a), len(b)) + 1
        extra = (a if len(a) > len(b) else b)[n - 1]
        return f"line {n} {'removed' if len(a) > len(b) else 'added'}: {extra[:_CLIP]!r}"
    return "whitespace only"


def _params(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("messages", "model", *_SCHEMA)}


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between a recorded request and a new one, most telling first."""
    out = []
    if old.get("model") != new.get("model"):
        out.append(f"model changed: {old.get('model')} → {new.get('model')}")
    if _canon([old.get(k) for k in _SCHEMA]) != _canon([new.get(k) for k in _SCHEMA]):
        out.append("output schema changed (tools, tool_choice or response_format)")
    before, after = _texts(old, system=True), _texts(new, system=True)
    if before != after:
        out.append(f"system prompt changed ({_first_change(before, after)})")
    before, after = _texts(old, system=False), _texts(new, system=False)
    if before != after:
        out.append(f"input changed ({_first_change(before, after)})")
    p_old, p_new = _params(old), _params(new)
    changed = sorted(k for k in p_old.keys() | p_new.keys() if p_old.get(k) != p_new.get(k))
    if changed:
        said = ", ".join(f"{k} {p_old.get(k)!r} → {p_new.get(k)!r}" for k in changed)
        out.append(f"parameters changed: {said}")
    return out or ["nothing but key order or encoding"]


_WEIGHTS = {"model": 8, "output": 4, "system": 2, "input": 2, "parameters": 1}


def similarity(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[int, int, float]:
    """A sort key, lower is nearer: the weight of what differs, then fewer shared lines, then
    less alike characters (difflib's linear-time bound, so a miss stays cheap to explain)."""
    kinds = [d.split(" ", 1)[0] for d in differences(old, new)]
    weight = sum(_WEIGHTS.get(k, 0) for k in kinds)
    text_old, text_new = (
        _texts(old, True) + _texts(old, False),
        _texts(new, True) + _texts(new, False),
    )
    shared = set(text_old.splitlines()) & set(text_new.splitlines())
    alike = difflib.SequenceMatcher(None, text_old, text_new, autojunk=False).quick_ratio()
    return weight, -len(shared), -alike


@functools.lru_cache(maxsize=8)
def _prompt_patterns(prompts_dir: Path | None) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Each prompt's name with a pattern for its system text's first line, placeholders wild."""
    from prompts import PromptError, list_prompts, load_prompt

    found = []
    for name in sorted(set(list_prompts(prompts_dir)) | set(list_prompts())):
        try:
            prompt = load_prompt(name, prompts_dir)
        except PromptError:
            continue
        first = prompt.system.strip().splitlines()[0] if prompt.system.strip() else ""
        if not first:
            continue
        pieces = re.split(r"\{[^{}]*\}", first)
        found.append((name, re.compile("^" + ".*?".join(map(re.escape, pieces)) + "$")))
    return tuple(found)


def prompt_label(body: Mapping[str, Any], prompts_dir: Path | None = None) -> str:
    """Which prompt a request carries: a shipped (or `prompts_dir`) prompt's name when its
    system text's first line matches, else that first line, clipped; plus the tool it forces."""
    system = _texts(body, system=True).strip()
    first = system.splitlines()[0].strip() if system else ""
    name = next((n for n, pat in _prompt_patterns(prompts_dir) if first and pat.match(first)), "")
    label = name or (repr(first[:_CLIP]) if first else "(no system prompt)")
    choice = body.get("tool_choice")
    tool = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    return f"{label} → {tool}" if tool else label
