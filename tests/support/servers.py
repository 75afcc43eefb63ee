"""Starting a real server program for the tests: on loopback, waited for, torn down.

`tests.support.postgres` and `tests.support.chroma_server` start their servers through this:
a free 127.0.0.1 port, the program in a session of its own with its output in a log file, a
readiness probe polled until it answers (or the program dies, whose log tail is then the
error), a polite signal to stop and SIGKILL to the process group when that is not enough, and
one server per test session however many modules import its fixture.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Program", "SessionServer", "free_port", "start", "stop"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Program:
    """How one kind of server is waited for and stopped."""

    name: str
    """As error messages name it (`postgres`, `chroma run`)."""
    ready: str
    """What it has not done when it times out (`accept connections`)."""
    stop_signal: signal.Signals
    """The signal that asks it to shut down cleanly."""
    grace: float
    """Seconds it gets to shut down before the process group is killed."""
    timeout: float = 30.0
    """Seconds it gets to become ready."""


def stop(program: Program, proc: subprocess.Popen[bytes]) -> None:
    """Ask the server to stop, then kill its process group if it has not within the grace."""
    if proc.poll() is None:
        proc.send_signal(program.stop_signal)
        try:
            proc.wait(program.grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _wait_ready(
    program: Program, proc: subprocess.Popen[bytes], log: Path, probe: Callable[[], bool]
) -> None:
    deadline = time.monotonic() + program.timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{program.name} exited with {proc.returncode}: {text[-2000:]}")
        if probe():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{program.name} did not {program.ready} within {program.timeout:g} s")


def start(
    program: Program,
    args: Sequence[str],
    *,
    root: Path,
    log: Path,
    probe: Callable[[], bool],
    env: dict[str, str],
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """Run `args` in `root` (its output to `log`, in a new session) and wait until `probe`
    answers True. When it does not (it died, or the time ran out), stop it, delete `root` and
    raise. `popen`: more `subprocess.Popen` arguments (the user to run as)."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            list(args),
            cwd=root,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen,
        )
    try:
        _wait_ready(program, proc, log, probe)
    except BaseException:
        stop(program, proc)
        shutil.rmtree(root, ignore_errors=True)
        raise
    return proc


class _Rooted(Protocol):
    root: Path


S = TypeVar("S", bound=_Rooted)


class SessionServer(Generic[S]):
    """One server for the whole test session. Each module that imports a session fixture gets
    its own fixture instance from pytest; they all share this one server, started by the first
    and stopped, its directory deleted, when the last is done with it."""

    def __init__(self, program: Program) -> None:
        self._program = program
        self._running: tuple[S, subprocess.Popen[bytes]] | None = None
        self._users = 0

    def use(self, launch: Callable[[], tuple[S, subprocess.Popen[bytes]]]) -> Iterator[S]:
        """The body of a session fixture: `yield from server.use(launch)`."""
        if self._running is None:
            self._running = launch()
        self._users += 1
        try:
            yield self._running[0]
        finally:
            self._users -= 1
            if self._users == 0:
                server, proc = self._running
                self._running = None
                stop(self._program, proc)
                shutil.rmtree(server.root, ignore_errors=True)
