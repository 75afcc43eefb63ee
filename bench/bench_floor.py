"""The floor under issue 20's first goal: what the components `gtm run` is required to use cost
per account on their own, with none of gtm's code between them.

Issue 20 asks for at most 15 ms of the framework's CPU per account at zero model latency "with
the real defaults (Chroma memory, SQLite checkpoints, review with near-duplicate search)". This
measures those defaults bare, in a child process, at the same concurrency `bench_run.py` uses
(16), against the same scripted OpenAI-compatible server on loopback (in this process, so its
CPU is not counted), in three layers:

1. graph + model: a LangGraph graph of four nodes (research, personalize, review, approve)
   with the SQLite checkpointer (`AsyncSqliteSaver`, durability "exit" as a first leg has),
   the account in its state, one forced-tool structured-output call through langchain-openai's
   `ChatOpenAI` in personalize, and the approval `interrupt` that ends the leg, as gtm's graph;
2. + the embedding: the draft embedded once with the embedded MiniLM (`memory.embedding`), as
   the near-duplicate search and the memory write need;
3. + the memory write: that vector and the draft upserted into an on-disk Chroma collection
   made as gtm makes it (`memory.chroma._tuned`).

Embeddings and writes go through gtm's group commit (`memory.batch`), as in `gtm run`: calls
that arrive while one runs share the next, in a worker thread. So this is the cheapest way gtm
knows to use these components, not a naive one.

Each layer is a run of N accounts minus a run of 1 account in a fresh directory (imports,
start-up, loading the model), divided by N - 1, as `bench_run.py` computes gtm's own figure;
the child's user+system CPU from `os.wait4`. The lowest of `--repeat` runs is the figure kept
(`BENCH` line): a floor. What gtm's checks, ledger, suppression list, telemetry and research add
is the difference from `bench_run.py`'s figure, measured beside it.

Usage: .venv/bin/python bench/bench_floor.py [N] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for bench_run

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {1: "graph + model", 2: "+ embedding", 3: "+ memory write"}
KEYS = {1: "graph_model", 2: "with_embedding", 3: "with_memory_write"}  # their BENCH names
TOOL = {
    "name": "DraftOutput",
    "description": "The message, written for one person.",
    "parameters": {
        "type": "object",
        "properties": {
            "body": {"type": "string", "maxLength": 300},
            "cited_fact_ids": {"type": "array", "items": {"type": "string", "enum": ["f1", "f2"]}},
            "insufficient_information": {"type": "boolean"},
        },
        "required": ["body", "cited_fact_ids", "insufficient_information"],
        "additionalProperties": False,
    },
}


class State(TypedDict, total=False):
    account: dict[str, Any]
    facts: list[str]
    draft: dict[str, Any]
    decision: Any


async def child(n: int, layer: int, base_url: str, work: Path) -> None:
    """N accounts through the bare components, 16 at a time."""
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    model = ChatOpenAI(model="scripted", base_url=base_url, api_key="sk-bench", max_retries=1)  # type: ignore[arg-type]
    writer = model.with_structured_output(TOOL, method="function_calling")
    from memory.batch import GroupCommit

    embeds: GroupCommit[str, Any] | None = None
    writes: GroupCommit[tuple[str, str, Any], None] | None = None
    if layer >= 2:
        from memory.embedding import MiniLMEmbedding

        embedding = MiniLMEmbedding()
        embeds = GroupCommit(lambda texts: list(embedding.embed(texts)))
    if layer >= 3:
        import chromadb
        from chromadb.config import Settings

        from memory.chroma import _METADATA, _tuned  # noqa: PLC2701 - gtm's own settings

        client = chromadb.PersistentClient(
            path=str(work / "chroma"), settings=Settings(anonymized_telemetry=False)
        )
        collection = _tuned(
            client.get_or_create_collection("touches", metadata=_METADATA, embedding_function=None)
        )

        def write(items: list[tuple[str, str, Any]]) -> list[None]:
            collection.upsert(
                ids=[key for key, _, _ in items],
                documents=[body for _, body, _ in items],
                metadatas=[{"account_id": key, "kind": "draft"} for key, _, _ in items],
                embeddings=[vector for _, _, vector in items],
            )
            return [None] * len(items)

        writes = GroupCommit(write)

    async def research(state: State) -> dict[str, Any]:
        a = state["account"]
        return {"facts": [f"[f1] {a['signal1']} (source: list:2:signals)",
                          f"[f2] {a['signal2']} (source: list:2:signals)"]}  # fmt: skip

    async def personalize(state: State) -> dict[str, Any]:
        a = state["account"]
        prompt = "\n".join(
            [f"Company: {a['company']}", f"First name: {a['first']}", *state["facts"]]
        )
        out = await writer.ainvoke(
            [SystemMessage("Write one LinkedIn note citing the facts."), HumanMessage(prompt)]
        )
        return {"draft": out}

    async def review(state: State) -> dict[str, Any]:
        body = state["draft"]["body"]
        if embeds is not None:
            vector = await embeds.submit(body)
            if writes is not None:
                await writes.submit((state["account"]["company"], body, vector))
        return {}

    def approve(state: State) -> dict[str, Any]:
        return {"decision": interrupt({"draft": state["draft"]})}

    builder = StateGraph(State)
    for name, fn in (
        ("research", research), ("personalize", personalize), ("review", review),
        ("approve", approve),
    ):  # fmt: skip
        builder.add_node(name, fn)
    builder.add_edge(START, "research")
    builder.add_edge("research", "personalize")
    builder.add_edge("personalize", "review")
    builder.add_edge("review", "approve")
    builder.add_edge("approve", END)
    async with AsyncSqliteSaver.from_conn_string(str(work / "checkpoints.sqlite")) as saver:
        graph = builder.compile(checkpointer=saver)
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            account = {
                "company": f"Company{i}",
                "first": "Dana",
                "signal1": f"Hiring {i % 7 + 2} kalo vospel engineers",
                "signal2": f"Moved their mirenstu tordei pipeline to darni {i} last quarter",
            }
            async with gate:
                config = {"configurable": {"thread_id": f"t{i}"}}
                await graph.ainvoke({"account": account}, config, durability="exit")  # type: ignore[arg-type]
                state = await graph.aget_state(config)  # type: ignore[arg-type]
                assert state.interrupts, "every account ends at the approval pause"

        await asyncio.gather(*(one(i) for i in range(n)))


def run_child(n: int, layer: int, base_url: str) -> float:
    with tempfile.TemporaryDirectory(prefix="gtm-floor-") as work:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GTM_", "LANGSMITH_"))}
        env["ANONYMIZED_TELEMETRY"] = "False"
        cmd = [sys.executable, __file__, "--child", str(n), str(layer), base_url, work]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"floor child failed (layer {layer}, {n} accounts)")
        return usage.ru_utime + usage.ru_stime


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        n, layer, base_url, work = sys.argv[2:6]
        asyncio.run(child(int(n), int(layer), base_url, Path(work)))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("accounts", nargs="?", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    from bench_run import ModelServer

    n = args.accounts
    figures: dict[str, list[float]] = {LAYERS[k]: [] for k in LAYERS}
    with ModelServer(0.0) as server:
        for _ in range(args.repeat):  # the layers alternate, so a busy moment weighs on all
            for layer, label in LAYERS.items():
                one = run_child(1, layer, server.base_url)
                many = run_child(n, layer, server.base_url)
                figures[label].append((many - one) * 1000 / (n - 1))
        calls = len(server.calls)
    expected = args.repeat * len(LAYERS) * (n + 1)
    if calls != expected:
        sys.exit(f"expected {expected} model calls, the server answered {calls}")
    print(f"bare components, CPU ms per account ({n} accounts, concurrency 16, zero latency):")
    for label, values in figures.items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {label:<16} {shown}  (lowest {min(values):.1f})")
    lowest = {
        f"{KEYS[layer]}_ms_per_account": round(min(figures[label]), 1)
        for layer, label in LAYERS.items()
    }
    print("BENCH " + json.dumps({"bench": "floor", "accounts": n, **lowest}))


if __name__ == "__main__":
    main()
