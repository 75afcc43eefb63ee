"""One regular expression that finds a match wherever any of several does: a cheap first test.

Most texts match none of a rule's or a playbook's patterns, and trying each of fifteen patterns
in turn costs fifteen scans where one alternation costs one. The joined pattern only says
whether any matches; which one, and where, is still asked of each pattern in its own order.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["any_of"]

# A numbered back-reference or condition would point at another pattern's group once joined.
_NUMBERED = re.compile(r"\\[1-9]|\(\?\(\d")


@lru_cache(maxsize=256)
def any_of(patterns: tuple[re.Pattern[str], ...]) -> re.Pattern[str] | None:
    """A pattern that matches a text exactly when one of `patterns` does, or None when they
    cannot be joined (different flags, numbered back-references, a group name used twice, an
    inline global flag): then each has to be tried."""
    flags = {p.flags for p in patterns}
    if len(flags) != 1 or any(_NUMBERED.search(p.pattern) for p in patterns):
        return None
    try:
        return re.compile("|".join(f"(?:{p.pattern})" for p in patterns), flags.pop())
    except (re.error, OverflowError, RecursionError):
        return None
