"""`gtm.app.heap`: the malloc settings that keep a long run's memory flat (issue 20)."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gtm.app import heap

ROOT = Path(__file__).resolve().parents[1]
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _run(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **env},
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_importing_the_runner_caps_the_arenas_unless_the_environment_does() -> None:
    code = """
        from gtm.app.heap import limit_arenas
        import gtm.app.runner
        print(limit_arenas.cache_info().currsize, limit_arenas())
    """
    assert _run(code) == "1 True"  # capped by the import itself, before any thread starts
    assert _run(code, MALLOC_ARENA_MAX="8") == "1 False"  # the operator's setting stays


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_threads_share_two_arenas_once_capped() -> None:
    """Eight threads each allocating: uncapped, glibc gives them arenas of their own (8 per
    core); capped, they share two. Counted from `malloc_info`'s <heap> elements."""
    code = """
        import ctypes, os, re, sys, tempfile, threading
        from gtm.app.heap import limit_arenas
        if os.environ.get("CAP") == "yes":
            limit_arenas()
        hold = []
        barrier = threading.Barrier(8)
        def work():
            barrier.wait()
            hold.append([bytearray(2000) for _ in range(200)])
            barrier.wait()
        threads = [threading.Thread(target=work) for _ in range(8)]
        [t.start() for t in threads]; [t.join() for t in threads]
        libc = ctypes.CDLL(None)
        libc.fdopen.restype = ctypes.c_void_p
        libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        fd, path = tempfile.mkstemp()
        f = libc.fdopen(fd, b"w"); libc.malloc_info(0, f); libc.fclose(f)
        print(len(re.findall("<heap nr=", open(path).read())))
        os.unlink(path)
    """
    assert int(_run(code, CAP="yes")) <= 2
    assert int(_run(code, CAP="no")) > 2


async def test_trimming_trims_while_the_block_runs_and_stops_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[float] = []

    def counted() -> bool:
        calls.append(0.0)
        return True

    monkeypatch.setattr(heap, "trim", counted)
    async with heap.trimming(every=0.01):
        await asyncio.sleep(0.2)
    seen = len(calls)
    if heap._libc() is None:
        assert seen == 0  # nothing to trim off glibc
        return
    assert seen >= 3
    await asyncio.sleep(0.1)
    assert len(calls) == seen  # the loop ended with the block


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_trim_hands_freed_pages_back() -> None:
    code = """
        import ctypes
        from gtm.app.heap import trim
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: keep the blocks on the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: and no automatic trim on free
        def rss():
            return int(open("/proc/self/statm").read().split()[1])
        blocks = [bytearray(100_000) for _ in range(800)]  # about 80 MB, touched
        keep = blocks[-1]
        del blocks
        before = rss()
        print(trim(), before - rss() > 10_000)  # pages of 4 KB: over 40 MB returned
    """
    assert _run(code) == "True True"
