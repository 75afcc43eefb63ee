"""The `evals` package exports its names lazily (PEP 562): importing one module of it, as
`gtm inbox` does with `evals.replies`, does not load the judge, the harness and the model
libraries they need, and every exported name still resolves to its module's own object.

Each check runs a new interpreter, so what an earlier test imported cannot hide a regression.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import pytest

import evals

_PROBE = """
import json, sys
import evals.replies
from evals import ClassifiedReply
sys.stdout.write(json.dumps(sorted(m for m in sys.modules if m.startswith(("evals", "numpy")))))
"""


def test_one_module_does_not_load_the_rest() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert "evals.replies" in loaded, "the probe did not import evals.replies"
    for heavy in ("evals.judge", "evals.harness", "evals.guardrails", "evals.datasets", "numpy"):
        assert heavy not in loaded, f"importing evals.replies loaded {heavy}"


_MODULES = {m.name for m in pkgutil.iter_modules(evals.__path__)}


@pytest.mark.parametrize("name", [n for n in evals.__all__ if n not in _MODULES])
def test_every_exported_name_is_a_modules_own_object(name: str) -> None:
    value = getattr(evals, name)
    homes = [
        m
        for m in sorted(_MODULES)
        if vars(importlib.import_module(f"evals.{m}")).get(name, None) is value
    ]
    assert homes, f"evals.{name} is no module's {name}"


def test_names_the_package_does_not_export_still_fail() -> None:
    with pytest.raises(AttributeError):
        evals.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        exec("from evals import no_such_name", {})
