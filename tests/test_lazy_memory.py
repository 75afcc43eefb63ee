"""Memory opened on first use (`gtm inbox` and `gtm status` do not import Chroma): it is the real
memory once used, it is closed with the workspace, and a workspace that never used it never
opened it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gtm.app.lazy_memory import LazyMemory
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from gtm.domain.models import Touch
from memory.in_memory import InMemoryMemory

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


class _Counted(InMemoryMemory):
    opened = 0
    closed = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).opened += 1

    def close(self) -> None:
        type(self).closed += 1
        super().close()


@pytest.fixture(autouse=True)
def _reset() -> None:
    _Counted.opened = _Counted.closed = 0


async def test_first_call_opens_the_real_memory_once() -> None:
    lazy = LazyMemory(_Counted)
    assert not lazy.opened and _Counted.opened == 0
    touch = Touch(account_id="a", kind="send", text="Hello Ada, about Acme", at=T0)
    await lazy.remember(touch, key="k1")
    await lazy.remember(touch, key="k1")  # idempotent on key, as the real memory is
    assert lazy.opened and _Counted.opened == 1
    assert [t.text for t in await lazy.history("a")] == ["Hello Ada, about Acme"]
    assert await lazy.forget_person(["ada"]) == 1
    assert await lazy.history("a") == []
    lazy.close()
    assert _Counted.closed == 1


async def test_closing_an_unused_memory_opens_nothing_and_stays_closed() -> None:
    lazy = LazyMemory(_Counted)
    lazy.close()
    assert _Counted.opened == 0 and _Counted.closed == 0
    with pytest.raises(RuntimeError, match="closed"):
        await lazy.history("a")
    assert _Counted.opened == 0


async def test_workspace_on_demand_memory_opens_chroma_only_when_used(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    chroma_dir = settings.path("memory", "chroma")
    async with open_workspace(settings, with_model=False, memory_on_demand=True) as rt:
        assert isinstance(rt.deps.memory, LazyMemory)
        assert not rt.deps.memory.opened
        rt.ledger.campaigns()  # the ledger works without memory
    assert not chroma_dir.exists(), "listing the ledger opened Chroma"
    async with open_workspace(settings, with_model=False, memory_on_demand=True) as rt:
        touch = Touch(account_id="acc-1", kind="fact", text="Acme opened a Lisbon office", at=T0)
        await rt.deps.memory.remember(touch, key="f1")
        assert [t.text for t in await rt.deps.memory.history("acc-1")] == [touch.text]
    assert chroma_dir.exists()
    async with open_workspace(settings, with_model=False) as rt:  # the default: opened at once
        assert not isinstance(rt.deps.memory, LazyMemory)
        assert [t.text for t in await rt.deps.memory.history("acc-1")] == [touch.text]
