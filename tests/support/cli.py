"""Running the real `gtm` command in a child process, as a user would, for the tests that check
what the CLI prints, exits with and leaves on disk.

One runner instead of a copy per test file: the interpreter of this venv, the repository root as
the working directory, text output captured, and a timeout so a hung command fails the test
instead of hanging the suite. The caller builds the environment (usually the test process's own
without its `GTM_` settings, plus the test's) and passes it whole: nothing is inherited silently.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ROOT", "run_gtm"]

ROOT = Path(__file__).resolve().parents[2]


def run_gtm(
    env: Mapping[str, str], *args: str, timeout: float = 180, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """`python -m gtm *args` with exactly `env`; `check=True` raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "gtm", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        cwd=ROOT,
    )
