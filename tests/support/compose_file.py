"""What deploy/ says, read as Docker would read it: compose.yaml with compose's interpolation,
and the image deploy/Dockerfile builds (`Image`), built here without Docker for
`tests.support.compose_stack`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.cli import ROOT

__all__ = ["DEPLOY", "Image", "interpolate", "load_compose"]

DEPLOY = ROOT / "deploy"
_VAR = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}` (the forms the file uses)."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == "?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == "-" else ""

    return _VAR.sub(one, value)


def load_compose() -> dict[str, Any]:
    """deploy/compose.yaml as compose reads it (YAML merge keys `<<:` resolved)."""
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@dataclass(frozen=True)
class Image:
    """deploy/Dockerfile's image, built here: its `COPY` sources copied into `app` (its
    WORKDIR) and its `RUN pip install .` run there into `site` (with --no-deps: the
    dependencies are this virtualenv's, of the same pins); `env` is its `ENV` lines."""

    app: Path
    site: Path
    env: dict[str, str]

    @classmethod
    def build(cls, root: Path) -> Image:
        text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
        ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
        skip = shutil.ignore_patterns(*[p[3:] for p in ignore if p.startswith("**/")])
        app, site, env = root / "app", root / "site", dict[str, str]()
        app.mkdir(parents=True)
        for line in text.splitlines():
            word, _, rest = line.partition(" ")
            if word == "WORKDIR":
                assert rest == "/app", rest  # `app` stands for it
            elif word == "COPY":
                *sources, dest = rest.split()
                for src in sources:
                    to = app / dest / (Path(src).name if dest.endswith("/") else "")
                    if (ROOT / src).is_dir():
                        shutil.copytree(ROOT / src, to, ignore=skip)
                    else:
                        shutil.copy2(ROOT / src, to)
            elif word == "ENV":
                for pair in rest.split():
                    key, _, value = pair.partition("=")
                    env[key] = value
            elif word == "RUN":
                assert rest.startswith("pip install . "), rest
                pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site)]
                more = ["--no-build-isolation", "--no-compile", "--quiet", str(app)]
                subprocess.run([*pip, *more], check=True, capture_output=True, timeout=120)
        return cls(app, site, env)
