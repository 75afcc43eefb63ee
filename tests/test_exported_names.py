"""Every package says what it exports, and says it truthfully.

A package's `__all__` lists either the objects it re-exports (the domain, the scoring API) or its
public modules (imported on demand, so `import tools` stays cheap). Either way each listed name
must resolve, every public module must be listed, and nothing public may be exported by accident.
"""

from __future__ import annotations
import __future__

import importlib
import pkgutil
from types import ModuleType

import pytest

PACKAGES = [
    "gtm",
    "gtm.domain",
    "gtm.app",
    "gtm.cli",
    "gtm.web",
    "agents",
    "tools",
    "memory",
    "evals",
    "prompts",
]


def _public_modules(pkg: ModuleType) -> set[str]:
    return {m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")}


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_declared_sorted_and_resolves(name: str) -> None:
    pkg = importlib.import_module(name)
    exported = pkg.__dict__.get("__all__")
    assert isinstance(exported, list), f"{name} declares no __all__"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    for item in exported:
        if not hasattr(pkg, item):
            importlib.import_module(f"{name}.{item}")  # a listed submodule must import


@pytest.mark.parametrize("name", PACKAGES)
def test_nothing_public_is_exported_by_accident(name: str) -> None:
    """Names bound in the package itself (not submodules it happens to have loaded) are listed."""
    pkg = importlib.import_module(name)
    bound = {
        k
        for k, v in vars(pkg).items()
        if not k.startswith("_") and not isinstance(v, ModuleType | __future__._Feature)
    }
    assert bound <= set(pkg.__all__), f"{name} binds {sorted(bound - set(pkg.__all__))}"


@pytest.mark.parametrize("name", ["gtm", "gtm.app", "agents", "tools", "memory"])
def test_module_packages_list_every_public_module(name: str) -> None:
    pkg = importlib.import_module(name)
    assert set(pkg.__all__) == _public_modules(pkg)


def test_domain_exports_the_models_it_owns() -> None:
    from gtm import domain
    from gtm.domain import models

    assert set(models.__all__) <= set(domain.__all__)
