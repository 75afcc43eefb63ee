"""`gtm run` on Postgres and a Chroma server against the SQLite default (issue 17, point 8).

Goal: on Postgres and the Chroma server, the framework's overhead per account stays within 2x
of the SQLite default. This runs the same campaign as bench_run.py (its accounts, its scripted
zero-latency model server, its checks that every account reached the approval pause) through
the real `gtm run` CLI three ways, side by side in one invocation so the machine's load weighs
on all of them alike:

- sqlite: the default, every store a SQLite file and Chroma embedded in the data directory;
- postgres: `GTM_DATABASE_URL` on a temporary cluster of the machine's PostgreSQL (the tests'
  `tests.support.postgres.start_cluster`), a fresh database per run prepared by `gtm db upgrade`;
- postgres+chroma: the same, and `GTM_CHROMA_URL` on a `chroma run` on loopback (the tests'
  `start_chroma`), a fresh Chroma database per run.

For each: gtm CPU ms per account = (gtm process user+system CPU of an N-account run, from
`os.wait4`, minus that of a 1-account run on the same backend) / (N - 1), as bench_run.py does;
and, separately, the servers' CPU per account the same way: the CPU the postmaster and all its
processes (backends, checkpointer, WAL writer, autovacuum; reaped backends through the
postmaster's children's times) and the `chroma run` process tree spent during each run, read
from /proc/PID/stat before and after it. The ratio to SQLite is printed for the gtm process
alone and for gtm + servers (all the CPU the run cost this machine).

`--workers W` (on Postgres and the Chroma server): W `gtm run` processes started together on one
campaign at `--latency` L, each with `--concurrency` C, in data dirs of their own, sharing the
accounts through the database's leases (gtm/app/workers.py). Throughput is N accounts over the
span from the first model request to the last answer, against the ideal C·W/(k·L); the ledger
must hold each account once, waiting for approval.

Usage: .venv/bin/python bench/bench_run_pg.py [N] [--backends sqlite postgres chroma]
    [--workers W --latency 0.2]   (needs Debian's postgresql: initdb, postgres)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # bench_run
sys.path.insert(0, str(ROOT))  # tests.support

from bench_run import ModelServer, _check, gtm_env, make_accounts  # noqa: E402

from tests.support.chroma_server import ChromaServer, start_chroma  # noqa: E402
from tests.support.postgres import PostgresServer, find_bindir, start_cluster  # noqa: E402
from tests.support.servers import Program, stop  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")
BACKENDS = ("sqlite", "postgres", "chroma")
"""`chroma` is Postgres and the Chroma server together (the whole scaled-out setup)."""


def tree_cpu(root: int) -> float:
    """CPU seconds (user+system, with reaped children's) of `root` and every live descendant,
    from /proc. A backend that exited was reaped by the postmaster, so its time is in the
    postmaster's cutime/cstime: the difference of two readings is what the tree spent between."""
    parent: dict[int, int] = {}
    own: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        f = raw.rsplit(")", 1)[1].split()
        pid = int(entry.name)
        parent[pid] = int(f[1])
        own[pid] = sum(int(x) for x in f[11:15]) / _TICK  # utime stime cutime cstime
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += own.get(pid, 0.0)
        todo += [p for p, pp in parent.items() if pp == pid]
    return total


class RunQueueWait:
    """Seconds the threads of some processes spent runnable but waiting for a CPU (the second
    field of /proc/PID/task/TID/schedstat), sampled every 0.5 s and kept per thread: on a
    shared machine it says how much of a run's wall time was other processes' load."""

    def __init__(self, pids: list[int]) -> None:
        self._pids = pids
        self._seen: dict[tuple[int, int], float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.5):
            for pid in self._pids:
                try:
                    tids = os.listdir(f"/proc/{pid}/task")
                except OSError:
                    continue
                for tid in tids:
                    try:
                        wait = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
                    except (OSError, IndexError, ValueError):
                        continue
                    self._seen[(pid, int(tid))] = wait / 1e9

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return sum(self._seen.values())


class Servers:
    """The temporary Postgres cluster and `chroma run`, started on first use, stopped at exit."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._pg: tuple[PostgresServer, subprocess.Popen[bytes]] | None = None
        self._chroma: tuple[ChromaServer, subprocess.Popen[bytes]] | None = None

    def postgres(self) -> tuple[PostgresServer, int]:
        if self._pg is None:
            bindir = find_bindir()
            if bindir is None:  # not a failure of the bench: run_all reports no figures
                print("skipped: no PostgreSQL server here (apt-get install postgresql)")
                sys.exit(0)
            server, proc = start_cluster(bindir)
            self._pg = server, proc
            self._stack.callback(shutil.rmtree, server.root, True)
            self._stack.callback(_stop_postgres, proc)
        return self._pg[0], self._pg[1].pid

    def chroma(self) -> tuple[ChromaServer, int]:
        if self._chroma is None:
            server, proc = start_chroma()
            self._chroma = server, proc
            self._stack.callback(shutil.rmtree, server.root, True)
            self._stack.callback(_stop_chroma, proc)
        return self._chroma[0], self._chroma[1].pid


def _stop_postgres(proc: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT to the postmaster ends its backends), as the tests stop it."""
    stop(Program("postgres", "accept connections", signal.SIGINT, grace=15), proc)


def _stop_chroma(proc: subprocess.Popen[bytes]) -> None:
    stop(Program("chroma run", "answer its heartbeat", signal.SIGTERM, grace=10), proc)


@contextmanager
def backend(name: str, servers: Servers) -> Iterator[tuple[dict[str, str], list[int]]]:
    """Fresh stores for one run: the GTM_ variables that select them and the server pids whose
    CPU to count; the Postgres database is dropped afterwards."""
    if name == "sqlite":
        yield {}, []
        return
    pg, pg_pid = servers.postgres()
    url = pg.new_database(migrated=False)
    env, pids = {"GTM_DATABASE_URL": url}, [pg_pid]
    if name == "chroma":
        chroma, chroma_pid = servers.chroma()
        env |= {"GTM_CHROMA_URL": chroma.url, "GTM_CHROMA_DATABASE": chroma.new_database()}
        pids.append(chroma_pid)
    upgrade = [sys.executable, "-m", "gtm", "db", "upgrade"]
    done = subprocess.run(upgrade, env={**os.environ, **env}, cwd=ROOT, capture_output=True)
    if done.returncode != 0:
        sys.exit(f"gtm db upgrade failed: {done.stdout.decode()}{done.stderr.decode()}")
    try:
        yield env, pids
    finally:
        pg.drop(url)


def _rows(env: dict[str, str], data: Path) -> list[tuple[str, int]]:
    """The ledger's (status, flagged) rows, from whichever store the run used."""
    sql = "SELECT status, flagged FROM threads"
    if "GTM_DATABASE_URL" in env:
        import psycopg

        with psycopg.connect(env["GTM_DATABASE_URL"]) as conn:
            return [(s, int(f)) for s, f in conn.execute(sql).fetchall()]
    import sqlite3

    db = sqlite3.connect(data / "ledger.sqlite")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def run(
    csv: Path, model: ModelServer, env: dict[str, str], pids: list[int], *, concurrency: int,
    workers: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """`workers` `gtm run` processes on one campaign, each in its own data dir, started together;
    their summed CPU (rusage), the servers' CPU over the run, wall time and the ledger rows."""
    dirs = [Path(tempfile.mkdtemp(prefix="gtm-bench-")) for _ in range(workers)]
    cmd = [sys.executable, "-m", "gtm", "--data-dir", "{}", "run", str(csv), "--campaign", "bench"]
    cmd += ["--concurrency", str(concurrency)]
    full_env = gtm_env(model, env)
    before = sum(tree_cpu(p) for p in pids)
    t0 = time.monotonic()
    procs, logs = [], []
    for d in dirs:
        logs.append((d / "bench-output.txt").open("wb"))
        argv = [str(d) if a == "{}" else a for a in cmd]
        procs.append(
            subprocess.Popen(
                argv, env=full_env, cwd=ROOT, stdout=logs[-1], stderr=subprocess.STDOUT
            )
        )
    waits = RunQueueWait([p.pid for p in procs])
    cpu, rss = 0.0, 0.0
    failed = []
    for proc, d in zip(procs, dirs, strict=True):
        _, status, usage = os.wait4(proc.pid, 0)
        cpu += usage.ru_utime + usage.ru_stime
        rss = max(rss, usage.ru_maxrss / 1024)
        if os.waitstatus_to_exitcode(status) != 0:
            failed.append(d / "bench-output.txt")
    wall = time.monotonic() - t0
    queued = waits.stop()
    time.sleep(0.3)  # let the postmaster reap the backends of the closed connections
    servers = sum(tree_cpu(p) for p in pids) - before
    for fh in logs:
        fh.close()
    if failed:
        sys.exit(f"gtm run failed:\n{failed[0].read_text()[-4000:]}")
    rows = _rows(env, dirs[0])
    for d in dirs:
        shutil.rmtree(d)
    return {
        "cpu": cpu, "servers": servers, "wall": wall, "rows": rows, "rss_mb": rss, "queued": queued
    }  # fmt: skip


def _per(big: dict[str, Any], one: dict[str, Any], key: str, n: int) -> float:
    return float(big[key] - one[key]) / max(1, n - 1) * 1000


def measure(n: int, names: list[str], servers: Servers, work: Path, c: int) -> dict[str, Any]:
    """Framework CPU per account on each backend, runs interleaved by size: all 1-account runs,
    then all N-account runs."""
    one_csv, csv = work / "one.csv", work / f"accounts-{n}.csv"
    make_accounts(one_csv, 1, seed=1)
    make_accounts(csv, n)
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for size, path in ((1, one_csv), (n, csv)):
        for name in names:
            with ModelServer(0.0) as model, backend(name, servers) as (env, pids):
                res = run(path, model, env, pids, concurrency=c)
                res["k"] = len(model.calls) / size
            _check(res, size)
            results.setdefault(name, {})[size] = res
    figures: dict[str, Any] = {"accounts": n}
    base = None
    print(f"N={n} accounts, concurrency {c}, zero model latency:")
    for name in names:
        one, big = results[name][1], results[name][n]
        gtm_ms, srv_ms = _per(big, one, "cpu", n), _per(big, one, "servers", n)
        label = {"sqlite": "sqlite", "postgres": "postgres", "chroma": "postgres+chroma"}[name]
        if base is None:
            base = (gtm_ms, gtm_ms + srv_ms)
        ratio = f"  x{gtm_ms / base[0]:.2f} gtm, x{(gtm_ms + srv_ms) / base[1]:.2f} with servers"
        print(
            f"  {label:16s} gtm {gtm_ms:6.1f} ms/account, servers {srv_ms:6.1f} ms/account, "
            f"start-up {one['cpu']:.1f} s, wall {big['wall']:.1f} s, k={big['k']:.2f}, "
            f"peak RSS {big['rss_mb']:.0f} MB" + (ratio if name != names[0] else "")
        )
        figures[name] = {
            "gtm_cpu_ms_per_account": round(gtm_ms, 1),
            "server_cpu_ms_per_account": round(srv_ms, 1),
            "wall_s": round(big["wall"], 1),
        }
    return figures


def throughput(
    n: int, workers: int, latency: float, c: int, servers: Servers, work: Path
) -> dict[str, Any]:
    """W workers on one campaign at model latency L, on Postgres and the Chroma server (workers
    in separate data dirs share the memory only through a server): share of the ideal
    C·W/(k·L)."""
    csv = work / f"accounts-{n}.csv"
    if not csv.exists():
        make_accounts(csv, n)
    with ModelServer(latency) as model, backend("chroma", servers) as (env, pids):
        res = run(csv, model, env, pids, concurrency=c, workers=workers)
        calls = list(model.calls)
    _check(res, n)
    k = len(calls) / n
    span = max(e for _, _, e in calls) - min(s for _, s, _ in calls)
    ideal = n * k * latency / (c * workers)
    print(
        f"{workers} workers x concurrency {c} on one campaign of {n} accounts (Postgres, "
        f"Chroma server), model latency {latency:g} s: {n / span:.1f} accounts/s over "
        f"{span:.1f} s of model traffic = "
        f"{ideal / span:.0%} of C*W/(k*L) = {c * workers / (k * latency):.1f}/s; wall "
        f"{res['wall']:.1f} s, gtm CPU {res['cpu']:.1f} s, servers' CPU {res['servers']:.1f} s"
    )
    busy = (res["cpu"] + res["servers"]) / res["wall"]
    print(
        f"  CPU: {(res['cpu'] + res['servers']) / n * 1000:.0f} ms per account (gtm + servers, "
        f"start-ups included), {busy:.2f} cores busy on average over the run; the ideal rate "
        f"needs {c * workers / (k * latency) * (res['cpu'] + res['servers']) / n:.2f} cores. "
        f"The workers' threads waited {res['queued']:.0f} s in all for a CPU "
        f"({res['queued'] / n * 1000:.0f} ms per account) while other processes ran"
    )
    return {
        "accounts": n,
        "workers": workers,
        "throughput_share": round(ideal / span, 3),
        "cpu_ms_per_account": round((res["cpu"] + res["servers"]) / n * 1000, 1),
        "cpu_wait_ms_per_account": round(res["queued"] / n * 1000, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("accounts", nargs="?", type=int, default=200)
    ap.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=0, help="also run W workers (Postgres)")
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--skip-cpu", action="store_true", help="only the workers' throughput")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gtm-bench-csv-"))
    figures: dict[str, Any] = {}
    try:
        with ExitStack() as stack:
            servers = Servers(stack)
            if not args.skip_cpu:
                figures["cpu"] = measure(
                    args.accounts, args.backends, servers, work, args.concurrency
                )
            if args.workers:
                figures["workers"] = throughput(
                    args.accounts, args.workers, args.latency, args.concurrency, servers, work
                )
    finally:
        shutil.rmtree(work)
    print("BENCH " + json.dumps({"bench": "run_pg", **figures}))


if __name__ == "__main__":
    main()
