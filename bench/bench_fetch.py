"""Website research for N accounts (default 1,000), 4 pages each, on loopback; print the rates.

Each account is its own website (its own origin: a loopback port) served by uvicorn in a child
process, so the server has a core of its own. The fetcher runs `fetch_site` for every account,
at most 16 at a time, with the per-origin politeness it uses for real sites: robots.txt first,
then one request per origin every `--interval` seconds (the default 0.25 s keeps the run short;
the product's default is 1 s, which bounds one site to ~4 s for its 5 requests). Extraction
(trafilatura) runs for every page. A second pass reads the same sites again from the HTTP cache.

.venv/bin/python bench/bench_fetch.py [--accounts N] [--concurrency C] [--interval S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import socket
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support

from tests.support.sites import company_page  # noqa: E402
from tools.web import SiteSnapshot, WebResearcher, WebSettings  # noqa: E402

ROBOTS = "User-agent: *\nDisallow: /private\n"


def _serve(n: int, conn: Connection) -> None:
    """The child process: n listening sockets, one website each, until the parent ends it."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, PlainTextResponse, Response
    from starlette.routing import Route

    async def page(request: Request) -> Response:
        if request.url.path == "/robots.txt":
            return PlainTextResponse(ROBOTS)
        html = company_page(f"Co{request.url.port}", request.url.path)
        return HTMLResponse(html) if html else HTMLResponse("not found", status_code=404)

    app = Starlette(routes=[Route("/{path:path}", page)])
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    conn.send([s.getsockname()[1] for s in socks])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=socks)


async def _pass(
    urls: list[str], cache: Path, settings: WebSettings, concurrency: int
) -> tuple[float, list[SiteSnapshot]]:
    gate = asyncio.Semaphore(concurrency)

    async def one(web: WebResearcher, url: str) -> SiteSnapshot:
        async with gate:
            return await web.fetch_site(url)

    start = time.perf_counter()
    async with WebResearcher(cache, settings) as web:
        snaps = await asyncio.gather(*(one(web, u) for u in urls))
    return time.perf_counter() - start, list(snaps)


def _report(label: str, seconds: float, snaps: list[SiteSnapshot]) -> None:
    pages = [p for s in snaps for p in s.pages]
    ok = [p for p in pages if p.error is None]
    cached = sum(p.from_cache for p in pages)
    print(
        f"{label}: {len(snaps)} accounts, {len(pages)} pages ({len(ok)} read, {cached} from "
        f"cache) in {seconds:.1f} s = {len(pages) / seconds:.1f} pages/s"
    )
    errors = {p.error for p in pages if p.error}
    if errors:
        print(f"  errors: {sorted(errors)[:5]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--interval", type=float, default=0.25)
    args = ap.parse_args()

    parent, child = mp.Pipe()
    server = mp.get_context("spawn").Process(target=_serve, args=(args.accounts, child))
    server.start()
    try:
        ports: list[int] = parent.recv()
        time.sleep(1.0)  # uvicorn starts listening
        urls = [f"http://127.0.0.1:{port}/" for port in ports]
        settings = WebSettings(
            contact="https://example.org/bench",
            max_pages=4,
            min_interval=args.interval,
            allow_private=True,  # loopback sites
        )
        print(
            f"{args.accounts} accounts x 4 pages, concurrency {args.concurrency}, "
            f"one request per site every {args.interval} s"
        )
        with tempfile.TemporaryDirectory() as tmp:
            cold, snaps = asyncio.run(_pass(urls, Path(tmp), settings, args.concurrency))
            _report("cold", cold, snaps)
            warm, again = asyncio.run(_pass(urls, Path(tmp), settings, args.concurrency))
            _report("from cache", warm, again)
            figures = {"accounts": args.accounts, "cold_s": cold, "from_cache_s": warm}
            print("BENCH " + json.dumps({"bench": "fetch", **figures}))
    finally:
        server.terminate()
        server.join(10)


if __name__ == "__main__":
    main()
