"""`gtm` loads a heavy library only in a command that needs it (issue 20: `gtm --help` fast).

Each check runs a new interpreter and looks at `sys.modules`, so what an earlier test imported
cannot hide a regression. Timing is left to bench/bench_cli.py: it is too noisy for a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

HEAVY = (
    "langchain_openai",
    "chromadb",
    "openai",
    "langgraph",
    "matplotlib",
    "starlette",
    "uvicorn",
    "llama_cpp",
    "trafilatura",
    "onnxruntime",
)

_PROBE = """
import importlib, json, sys
argv, heavy, also = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
if also:
    importlib.import_module(also)
if argv is None:
    import gtm.cli
else:
    sys.argv = ["gtm", *argv]
    from gtm.cli import main
    try:
        main()
    except SystemExit:
        pass
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(heavy))
sys.stderr.write("LOADED=" + json.dumps(loaded) + "\\n")
"""


def _heavy_loaded(argv: list[str] | None, data_dir: Path, *, also: str = "") -> list[str]:
    """The heavy top-level packages loaded by `import gtm.cli` (argv None) or by running `gtm
    ARGV`, in a fresh interpreter (after importing module `also`, when given)."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv), json.dumps(HEAVY), also],
        capture_output=True,
        text=True,
        timeout=120,
        env={"GTM_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin", "COLUMNS": "100"},
    )
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("LOADED=")]
    assert lines, f"the probe did not finish:\n{done.stderr}"
    loaded: list[str] = json.loads(lines[-1].removeprefix("LOADED="))
    return loaded


def test_importing_the_cli_loads_no_heavy_library(tmp_path: Path) -> None:
    assert _heavy_loaded(None, tmp_path) == []


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["status", "--help"], ["run", "--help"], ["serve", "--help"], ["lint", "--help"]],
)
def test_help_loads_no_heavy_library(argv: list[str], tmp_path: Path) -> None:
    """`gtm CMD --help` also runs the root callback (settings): still nothing heavy."""
    assert _heavy_loaded(argv, tmp_path) == []


@pytest.mark.parametrize("argv", [["inbox"], ["status"]])
def test_listing_commands_do_not_open_memory_or_a_model(argv: list[str], tmp_path: Path) -> None:
    """`gtm inbox` and `gtm status` read the ledger: no Chroma (nor its onnxruntime), no model
    client, no web reader (trafilatura). (They still load LangGraph and langchain-core: see
    issue 20.)"""
    loaded = _heavy_loaded(argv, tmp_path)
    assert "langgraph" in loaded, "the probe did not reach the command"
    for name in ("chromadb", "onnxruntime", "langchain_openai", "openai", "trafilatura"):
        assert name not in loaded, f"gtm {argv[0]} imported {name}"


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    """The probe can fail: once the web inbox and the model client are loaded, it says so."""
    loaded = _heavy_loaded(["--help"], tmp_path, also="gtm.web.app")
    assert "starlette" in loaded
    assert "langchain_openai" in _heavy_loaded(None, tmp_path, also="gtm.app._guarded_chat")


def test_help_shows_the_same_commands(tmp_path: Path) -> None:
    """Every command group still registers: the help lists each of them."""
    done = subprocess.run(
        [sys.executable, "-m", "gtm", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"GTM_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stderr
    for command in (
        "run",
        "status",
        "import",
        "inbox",
        "approve",
        "edit",
        "reject",
        "stop",
        "regenerate",
        "lint",
        "suppress",
        "forget",
        "eval",
        "doctor",
        "events",
        "sync",
        "serve",
        "escalations",
        "flags",
        "report",
    ):
        assert f" {command} " in done.stdout, f"{command} is missing from gtm --help"


def test_repeated_constants_match_their_source() -> None:
    """The help texts' copies of values the CLI no longer imports at start-up."""
    from evals.specificity import DEFAULT_MIN_SPECIFICITY
    from gtm.cli.lint import DEFAULT_MIN_SPECIFICITY as CLI_MIN_SPECIFICITY
    from gtm.cli.loop import EVENT_KINDS
    from gtm.domain.events import EventKind

    assert CLI_MIN_SPECIFICITY == DEFAULT_MIN_SPECIFICITY
    assert EVENT_KINDS == get_args(EventKind)
