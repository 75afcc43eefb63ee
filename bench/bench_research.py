"""Website research end to end for N accounts (default 1,000): fetch, extract, ask, verify.

What `research` does per account when web research is on (`agents.web_facts.web_facts`): read
the site politely (robots.txt, then the home page and up to 3 pages that matter, one request per
site every `--interval` s), extract the main text (trafilatura), ask the model for facts with
quotes through the real `ChatOpenAI` structured-output path, and keep only the facts whose quote
is on the page. At most `--concurrency` accounts at a time, as `gtm run --concurrency` would.

The sites are `bench_fetch`'s: one loopback origin per account, served by uvicorn in a child
process. The model is a scripted OpenAI-compatible server on loopback (another child process)
with `--latency` seconds per answer (0 by default, so the figure is the framework's own cost).
It proposes two facts per page: one quoting the page's first sentence (kept) and one with an
invented quote (dropped), so the verification runs on every page. A second pass reads the sites
from the HTTP cache and asks the model again.

.venv/bin/python bench/bench_research.py [--accounts N] [--concurrency C] [--interval S]
    [--latency L]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import re
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support
sys.path.insert(0, str(Path(__file__).resolve().parent))  # for bench_fetch

from bench_fetch import _serve  # noqa: E402

from agents.web_facts import WebFindings, web_facts  # noqa: E402
from gtm.app.llm import ModelSettings, build_chat_model  # noqa: E402
from gtm.domain.models import Account  # noqa: E402
from tools.web import WebResearcher, WebSettings  # noqa: E402

_PAGE = re.compile(r"PAGE:\n(.*?)\n\nList the facts", re.S)


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    """The scripted model's facts for one page: its first sentence, and one invented."""
    from tests.support.openai_server import tool_call_response

    page = _PAGE.search(body["messages"][-1]["content"])
    text = page.group(1) if page else ""
    first = re.split(r"(?<=[.!?])\s", " ".join(text.split()), maxsplit=1)[0]
    facts = [
        {"text": first, "quote": first},
        {"text": "It raised 90 million.", "quote": "The company raised 90 million last year."},
    ]
    return tool_call_response("WebFacts", {"facts": facts, "unknown": False})


def _model_server(latency: float, conn: Any) -> None:
    """The child process: the scripted model server until the parent ends it."""
    from tests.support.openai_server import ScriptedOpenAIServer

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        if latency:
            time.sleep(latency)
        return _answer(body)

    with ScriptedOpenAIServer(responder=respond) as server:
        conn.send(server.base_url)
        while True:
            time.sleep(3600)


async def _pass(
    accounts: list[Account], cache: Path, settings: WebSettings, base_url: str, concurrency: int
) -> tuple[float, float, list[WebFindings]]:
    model = build_chat_model(ModelSettings(temperature=0.0), base_url=base_url, model="scripted")
    gate = asyncio.Semaphore(concurrency)

    async def one(web: WebResearcher, account: Account) -> WebFindings:
        async with gate:
            return await web_facts(
                web,
                model,
                account,
                today=date(2026, 12, 5),
                max_age_days=365,
                injection_patterns=(),
            )

    start, cpu = time.perf_counter(), time.process_time()
    async with WebResearcher(cache, settings) as web:
        found = await asyncio.gather(*(one(web, a) for a in accounts))
    return time.perf_counter() - start, time.process_time() - cpu, list(found)


def _report(label: str, wall: float, cpu: float, found: list[WebFindings]) -> dict[str, Any]:
    facts = sum(len(f.facts) for f in found)
    dropped = sum(1 for f in found for e in f.events if "dropped a fact" in e)
    failed = sum(1 for f in found if any("source failed" in e for e in f.events))
    n = len(found)
    print(
        f"{label}: {n} accounts in {wall:.1f} s = {n / wall:.1f} accounts/s; "
        f"{facts} facts kept, {dropped} invented quotes dropped, {failed} sites failed; "
        f"this process's CPU {cpu:.1f} s = {1000 * cpu / n:.0f} ms per account"
    )
    return {"accounts": n, "wall_s": round(wall, 2), "cpu_ms_per_account": round(1000 * cpu / n)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--interval", type=float, default=0.25)
    ap.add_argument("--latency", type=float, default=0.0)
    args = ap.parse_args()

    spawn = mp.get_context("spawn")
    sites_conn, sites_child = mp.Pipe()
    model_conn, model_child = mp.Pipe()
    sites = spawn.Process(target=_serve, args=(args.accounts, sites_child))
    model = spawn.Process(target=_model_server, args=(args.latency, model_child))
    sites.start()
    model.start()
    try:
        ports: list[int] = sites_conn.recv()
        base_url: str = model_conn.recv()
        time.sleep(1.0)  # uvicorn starts listening
        accounts = [
            Account(
                account_id=f"co{port}.example",
                company=f"Co{port}",
                domain=f"co{port}.example",
                website=f"http://127.0.0.1:{port}/",
            )
            for port in ports
        ]
        settings = WebSettings(
            contact="https://example.org/bench",
            max_pages=4,
            min_interval=args.interval,
            allow_private=True,  # loopback sites
        )
        print(
            f"{args.accounts} accounts x 4 pages, concurrency {args.concurrency}, one request "
            f"per site every {args.interval} s, model latency {args.latency} s"
        )
        figures: dict[str, Any] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for label in ("cold", "from cache"):
                wall, cpu, found = asyncio.run(
                    _pass(accounts, Path(tmp), settings, base_url, args.concurrency)
                )
                figures[label] = _report(label, wall, cpu, found)
        print("BENCH " + json.dumps({"bench": "research", **figures}))
    finally:
        for proc in (sites, model):
            proc.terminate()
            proc.join(10)


if __name__ == "__main__":
    main()
