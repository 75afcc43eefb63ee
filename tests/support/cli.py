"""Running the real `gtm` command in a child process, as a user would, for the tests that check
what the CLI prints, exits with and leaves on disk.

One runner instead of a copy per test file: the interpreter of this venv, the repository root as
the working directory, text output captured, and a timeout so a hung command fails the test
instead of hanging the suite. The caller builds the environment (usually the test process's own
without its `GTM_` settings, plus the test's) and passes it whole: nothing is inherited silently.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ROOT", "ctrl_c_reaches_it", "example_list", "run_gtm", "scripted_env"]

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


def scripted_env(
    base_url: str, key: str, *, model: str = "scripted", **more: str
) -> dict[str, str]:
    """This process's environment without its `GTM_` settings, for a `gtm` that writes with the
    scripted model at `base_url` (sending `key`), reviews as "tester", and keeps Chroma's
    telemetry off; `more` adds settings by their variable names (`GTM_DATABASE_URL=…`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    env.update(
        GTM_MODEL_BASE_URL=base_url,
        GTM_MODEL=model,
        GTM_REVIEWER="tester",
        GTM_MODEL_API_KEY=key,
        ANONYMIZED_TELEMETRY="False",
    )
    env.update(more)
    return env


def example_list(folder: Path, rows: int | None = None) -> Path:
    """`folder/list.csv`: the first `rows` accounts of the bundled example list (all: None)."""
    lines = (ROOT / "examples" / "accounts.csv").read_text(encoding="utf-8").splitlines()
    path = folder / "list.csv"
    kept = lines if rows is None else lines[: rows + 1]
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


def ctrl_c_reaches_it() -> None:
    """`preexec_fn` for a child a test sends Ctrl-C (SIGINT) to: SIGINT back to its default
    action. A suite started in the background of a non-interactive shell (`cmd &`) has SIGINT
    ignored, children inherit that across exec, and Python then installs no handler for it, so
    the child would never see the Ctrl-C the test is about."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
