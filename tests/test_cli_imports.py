"""`gtm` loads a heavy library only in a command that needs it (issue 20: `gtm --help` fast,
`gtm inbox` and `gtm status` within a second).

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

from tests.support.openai_server import ScriptedOpenAIServer
from tests.support.web import WEB_ACCOUNTS, seed

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
loaded = sorted(h for h in heavy if any(m == h or m.startswith(h + ".") for m in sys.modules))
sys.stderr.write("LOADED=" + json.dumps(loaded) + "\\n")
"""


def _heavy_loaded(argv: list[str] | None, data_dir: Path, *, also: str = "") -> list[str]:
    """The heavy top-level packages loaded by `import gtm.cli` (argv None) or by running `gtm
    ARGV`, in a fresh interpreter (after importing module `also`, when given)."""
    return _probe(argv, data_dir, HEAVY, also=also)[0]


def _probe(
    argv: list[str] | None, data_dir: Path, heavy: tuple[str, ...], *, also: str = ""
) -> tuple[list[str], str]:
    """Which of the modules `heavy` (each with its submodules) the command loaded, and what
    it printed."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv), json.dumps(heavy), also],
        capture_output=True,
        text=True,
        timeout=120,
        env={"GTM_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin", "COLUMNS": "100"},
    )
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("LOADED=")]
    assert lines, f"the probe did not finish:\n{done.stderr}"
    loaded: list[str] = json.loads(lines[-1].removeprefix("LOADED="))
    return loaded, done.stdout


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
    client, no web reader (trafilatura). (They open the checkpointer, so part of LangGraph
    loads.)"""
    loaded = _heavy_loaded(argv, tmp_path)
    assert "langgraph" in loaded, "the probe did not reach the command"
    for name in ("chromadb", "onnxruntime", "langchain_openai", "openai", "trafilatura"):
        assert name not in loaded, f"gtm {argv[0]} imported {name}"


GRAPH_AND_TRACING = (
    "langgraph.graph",
    "langgraph.pregel",
    "langgraph_sdk",
    "langchain_core.language_models.chat_models",
    "langchain_core.runnables.base",
    "langsmith",
    "opentelemetry",
    "agents.personalize",
    "gtm.app.runner",
)
"""What compiling the graph, a chat model class or the runner brings in: LangGraph's graph
module, langchain-core's runnables with LangSmith's run trees and the OpenTelemetry SDK, the
nodes. Most of what a listing command spent before issue 20."""


@pytest.fixture(scope="module")
def waiting(tmp_path_factory: pytest.TempPathFactory, model_server: ScriptedOpenAIServer) -> Path:
    """A data directory with drafts waiting for approval, made by the real pipeline."""
    d = tmp_path_factory.mktemp("waiting")
    seed(d, model_server.base_url, [("spring", "linkedin", WEB_ACCOUNTS)])
    return d


def test_status_compiles_no_graph_and_starts_no_tracing(waiting: Path) -> None:
    """`gtm status` counts what the ledger holds: none of the graph, a chat model or the
    runner, nor the tracing they bring, loads."""
    loaded, printed = _probe(["status"], waiting, GRAPH_AND_TRACING)
    assert "campaign spring" in printed, "the probe did not reach the command"
    assert loaded == []


def test_inbox_reads_paused_threads_without_the_graph(waiting: Path) -> None:
    """`gtm inbox` shows each waiting draft from its checkpoint without compiling the graph,
    importing the runner, or reviving the approval interrupt as `langgraph.types.Interrupt`:
    `langgraph.types` would bring langchain-core's runnables, LangSmith and OpenTelemetry."""
    loaded, printed = _probe(
        ["inbox", "--limit", "3"], waiting, (*GRAPH_AND_TRACING, "langgraph.types")
    )
    assert "draft(s) waiting; showing 1–3" in printed, "the probe did not list drafts"
    assert printed.count("prompt personalize_") == 3, "the probe did not show each draft"
    assert loaded == []


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
