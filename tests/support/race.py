"""Threads released together, for the tests that race stores against each other: each thread
opens its own store (its own connection), so the database sees truly concurrent sessions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["race"]


def race(work: Callable[[int], Any], n: int) -> list[Any]:
    """Run `work(i)` on `n` threads released together by a barrier; their answers, in thread
    order. A thread's exception is raised here, in the test's thread."""
    barrier, answers, errors = threading.Barrier(n), [None] * n, list[BaseException]()

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            answers[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    return answers
