"""What keeps one account cheap (issue 20) does not change what the pipeline does.

Group-committed memory writes, texts embedded once, the in-process near-duplicate index (against
Chroma's own filtered query), drafts stored once per final version, prompts parsed once per text,
the structured-output writer built once per model.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gtm.domain.models import Touch
from memory.batch import GroupCommit
from memory.chroma import ChromaMemory
from memory.embedding import MiniLMEmbedding
from memory.in_memory import InMemoryMemory
from prompts import load_prompt
from tests.support.fake_model import ScriptedChatModel, tool_call
from tests.test_graph import cfg, deps, env, inp  # noqa: F401 - env is the graph fixture

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)


class CountingEmbedding(MiniLMEmbedding):
    """The real embedding, counting the texts it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def embed(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        self.texts.extend(texts)
        return super().embed(texts)


def _draft(account: str, text: str, campaign: str = "c1") -> Touch:
    return Touch(
        kind="draft", account_id=account, campaign=campaign, at=NOW, text=text, contact="X"
    )


TEXTS = [
    "Hi Dana, saw the Series A and the on-prem launch for banks. How is review going?",
    "Hi Theo, noticed the hiring push for retrieval engineers. What is the main bottleneck?",
    "Hi Priya, read about the 40,000 contracts a month. How do you check clause extraction?",
    "Hi Sofia, the 62% ticket resolution case study stood out. What breaks on the rest?",
    "Hi Elena, congrats on SOC 2 Type II. Did the audit change how you store documents?",
]


async def test_concurrent_writes_share_a_commit_and_each_gets_its_own_outcome() -> None:
    batches: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("bad record 13")
        batches.append(items)
        return [i * 2 for i in items]

    group = GroupCommit[int, int](write)
    doubled = await asyncio.gather(*(group.submit(i) for i in range(100, 120)))
    assert doubled == [i * 2 for i in range(100, 120)]  # each caller gets its own result
    assert batches == [list(range(100, 120))]  # one commit for twenty concurrent writes
    batches.clear()
    results = await asyncio.gather(
        *(group.submit(i) for i in range(10, 16)), return_exceptions=True
    )
    assert [10 + i for i, r in enumerate(results) if isinstance(r, ValueError)] == [13]
    assert sorted(i for b in batches for i in b) == [10, 11, 12, 14, 15]  # retried one by one
    assert await group.submit(41) == 82  # the group keeps working after a failure
    assert batches[-1] == [41]


async def test_a_text_is_embedded_once_and_search_matches_chromas_own(tmp_path: Path) -> None:
    emb = CountingEmbedding()
    memory = ChromaMemory(tmp_path / "chroma", embedding=emb)
    for n, text in enumerate(TEXTS):
        found = await memory.similar_drafts("c1", text, exclude_account=f"a{n}")
        assert len(found) == min(n, 5)
        await memory.remember(_draft(f"a{n}", text), key=f"c1:a{n}:draft")
    await memory.remember(_draft("b", TEXTS[0], campaign="c2"), key="c2:b:draft")
    assert sorted(emb.texts) == sorted(TEXTS)  # searched, stored twice: embedded once each

    query = "Hi Dana, saw the Series A and on-prem for banks. How is the review work going?"
    ours = await memory.similar_drafts("c1", query, exclude_account="a1", k=3)
    where: Any = {"$and": [{"campaign": "c1"}, {"kind": "draft"}, {"account_id": {"$ne": "a1"}}]}
    theirs = memory._collection.query(
        query_texts=[query], n_results=3, where=where, include=["documents", "distances"]
    )
    assert [t.text for t, _ in ours] == theirs["documents"][0]
    assert [c for _, c in ours] == pytest.approx([1 - d for d in theirs["distances"][0]], abs=1e-5)
    assert all(t.account_id != "a1" and t.campaign == "c1" for t, _ in ours)

    # Another process's memory (a second instance on the same files) sees these drafts, and
    # this one sees the other's once its index reloads.
    other = ChromaMemory(tmp_path / "chroma", index_max_age=0)
    await other.remember(_draft("z", "Hi Zoe, a brand new draft"), key="c1:z:draft")
    seen = await other.similar_drafts("c1", "Hi Zoe, a brand new draft", exclude_account="q")
    assert seen[0][0].account_id == "z" and seen[0][1] == pytest.approx(1.0, abs=1e-5)
    fresh = ChromaMemory(tmp_path / "chroma", index_max_age=0)
    assert len(await fresh.similar_drafts("c1", query, exclude_account="q", k=10)) == 6


async def test_an_erased_draft_leaves_the_index(tmp_path: Path) -> None:
    memory = ChromaMemory(tmp_path / "chroma")
    for n, text in enumerate(TEXTS[:3]):
        await memory.remember(_draft(f"a{n}", text), key=f"c1:a{n}:draft")
    assert len(await memory.similar_drafts("c1", TEXTS[0], exclude_account="q")) == 3
    assert await memory.forget_account("a0") == 1
    left = await memory.similar_drafts("c1", TEXTS[0], exclude_account="q")
    assert sorted(t.account_id for t, _ in left) == ["a1", "a2"]


class CountingMemory(InMemoryMemory):
    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    async def remember(self, touch: Touch, *, key: str) -> None:
        self.keys.append(key)
        await super().remember(touch, key=key)


async def test_a_draft_is_stored_once_final_not_per_revision(env: dict[str, Any]) -> None:  # noqa: F811
    bad = tool_call("DraftOutput", {"body": "Hi Dana, leverage our synergy!", "cited_fact_ids": []})
    good = tool_call(
        "DraftOutput",
        {
            "body": "Hi Dana, saw 3 sign-ups from Quillcode this month and that you are hiring "
            "ML infra engineers. Open to comparing notes?",
            "cited_fact_ids": ["f3", "f4"],
        },
    )
    memory = CountingMemory()
    model = ScriptedChatModel.from_script([bad, good])
    await env["graph"].ainvoke(inp(), cfg("once"), context=deps(env, model, memory=memory))
    snap = await env["graph"].aget_state(cfg("once"))
    assert snap.interrupts and snap.values["revisions"] == 1 and not snap.values["flagged"]
    assert memory.keys == ["c1:quillcode.dev:draft"]  # the rewrite, not the rejected first try
    stored = await memory.similar_drafts("c1", "", exclude_account="other")
    assert [t.text for t, _ in stored] == [snap.values["draft"].body]
    model.assert_complete()


def test_a_prompt_is_parsed_once_per_text(tmp_path: Path) -> None:
    shipped = load_prompt("personalize_linkedin_note")
    assert load_prompt("personalize_linkedin_note") is shipped
    path = tmp_path / "personalize_linkedin_note.md"
    text = (Path(__file__).parents[1] / "prompts" / "personalize_linkedin_note.md").read_text()
    path.write_text(text, encoding="utf-8")
    first = load_prompt("personalize_linkedin_note", tmp_path)
    assert load_prompt("personalize_linkedin_note", tmp_path) is first
    path.write_text(text.replace('version: "1"', 'version: "2"'), encoding="utf-8")
    assert load_prompt("personalize_linkedin_note", tmp_path).version == "2"  # edited: re-read


class CountingModel(ScriptedChatModel):
    built: int = 0

    def with_structured_output(self, schema: Any, **kwargs: Any) -> Any:
        self.built += 1
        return super().with_structured_output(schema, **kwargs)


async def test_the_writer_is_built_once_per_model(env: dict[str, Any]) -> None:  # noqa: F811
    note = {
        "body": "Hi Dana, saw 3 sign-ups from Quillcode this month and that you are hiring ML "
        "infra engineers. Open to comparing notes?",
        "cited_fact_ids": ["f3", "f4"],
    }
    model = CountingModel(messages=iter([tool_call("DraftOutput", note)] * 2), script_length=2)
    d = deps(env, model)
    await env["graph"].ainvoke(inp(campaign="w1"), cfg("w1"), context=d)
    await env["graph"].ainvoke(inp(campaign="w2"), cfg("w2"), context=d)
    assert model.built == 1 and len(model.calls) == 2


async def test_concurrent_histories_read_together_each_get_their_own(tmp_path: Path) -> None:
    memory = ChromaMemory(tmp_path / "chroma")
    for n in range(12):
        t = Touch(kind="send", account_id=f"a{n % 4}", at=NOW, text=f"note {n}", campaign="c")
        await memory.remember(t.model_copy(update={"at": NOW.replace(day=1 + n)}), key=f"k{n}")
    accounts = ["a0", "a1", "a2", "a3", "a1", "nobody"]
    together = await asyncio.gather(*(memory.history(a, limit=2) for a in accounts))
    for account, got in zip(accounts, together, strict=True):
        assert got == await memory.history(account, limit=2)  # read alone
        n = int(account[1:]) if account != "nobody" else None
        want = [] if n is None else [f"note {n + 8}", f"note {n + 4}"]  # newest first
        assert [t.text for t in got] == want
