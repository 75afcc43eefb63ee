"""deploy/compose.yaml brought up without Docker: each service's own program, wired as compose
wires them, on loopback.

`Stack` does with the file what `docker compose` would, reading everything from deploy/: the
image built from deploy/Dockerfile (`Image`); the services in their `depends_on` order, each
condition checked (`service_healthy`: its `healthcheck` passes; `service_completed_successfully`:
exit 0); each with its `command`, its `environment` after compose's `${VAR:-default}` /
`${VAR:?message}` interpolation, its `env_file`s and the image's `ENV`; SIGTERM to stop, with
`stop_grace_period` (else compose's 10 s). Only what containers would make different is
substituted:

- a service's hostname (`postgres`, `chroma`) in a URL becomes 127.0.0.1, and the port it
  listens on in the compose network (`--port` in its command; 5432 for the `postgres` image) a
  free loopback port; a published port (`127.0.0.1:8765:8765`) is that same port, and a
  wildcard `--host 0.0.0.0` becomes the loopback address it is published on;
- the `postgres` image is Debian's server: the role (a superuser, its password required on
  loopback) and database its POSTGRES_* variables name, in the session's cluster
  (tests/support/postgres.py); its healthcheck gets PGHOST/PGPORT naming that cluster (in the
  container they default to its own socket); its data volume is the cluster's directory;
- a volume's container path (`/data`, `/chroma`) is a directory of the stack's root (a bind
  mount: the host path the file gives); any other absolute path in a service's environment or
  arguments (HOME=/tmp) is the container's own, under the root, and so is its WORKDIR;
- the image is `Image`: its install directory first on PATH and PYTHONPATH, its dependencies,
  `python` and chromadb's `chroma` this virtualenv's (Debian's PostgreSQL programs after them,
  as the `postgres` image has them); `user:` and `restart:` are not applied (each program runs
  as the test's user, once).
"""

from __future__ import annotations

import graphlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dotenv import dotenv_values

from tests.support.cli import ROOT
from tests.support.compose_file import DEPLOY, Image, interpolate, load_compose
from tests.support.postgres import PostgresServer
from tests.support.servers import free_port

__all__ = ["Stack", "Stopped"]

LOOPBACK = "127.0.0.1"
POSTGRES_IMAGE_PORT = 5432
"""Where the `postgres` image listens (its PGPORT); the compose file names it in the URL."""
COMPOSE_GRACE = 10.0
"""Compose's default `stop_grace_period`."""


def _grace(spec: Mapping[str, Any]) -> float:
    """The service's `stop_grace_period` in seconds (the `30s` form; else compose's 10 s)."""
    return float(str(spec.get("stop_grace_period", COMPOSE_GRACE)).removesuffix("s"))


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Stopped:
    """How a long-running service ended when the stack was taken down."""

    running: bool  # still, when it was told to stop
    returncode: int | None  # None: killed once its grace period was over
    seconds: float
    grace: float
    output: str


class Stack:
    """The compose file's services brought up on loopback (see the module docstring).

    `variables`: the shell's environment compose interpolates the file with; `env_files`: where
    each `env_file` path the file names is read from here (gtm.env is the user's own copy).
    Use `up` and `run` as `docker compose up -d` and `docker compose run --rm` are used."""

    def __init__(
        self,
        root: Path,
        postgres: PostgresServer,
        *,
        variables: Mapping[str, str],
        env_files: Mapping[str, Path],
        startup: float = 60.0,
    ) -> None:
        self.root = root
        self.pg = postgres
        self.variables = dict(variables)
        self.env_files = dict(env_files)
        self.startup = startup
        self.image = Image.build(root / "image")  # `up --build`
        self.compose = load_compose()
        self.services: dict[str, dict[str, Any]] = self.compose["services"]
        self.ports: dict[tuple[str, int], int] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started: set[str] = set()
        self.stopped: dict[str, Stopped] = {}
        self._made_role: tuple[str, str] | None = None
        self._hba: str | None = None
        graph = {name: self.depends_on(name) for name in self.services}
        self.order = list(graphlib.TopologicalSorter(graph).static_order())
        waits = [c for deps in graph.values() for c in deps.items()]
        self.jobs = {d for d, c in waits if c == "service_completed_successfully"}
        images = {n: str(s.get("image", "")) for n, s in self.services.items()}
        self.postgres = {n for n, image in images.items() if image.startswith("postgres:")}

    # ------------------------------------------------------------------ what the file says

    def depends_on(self, name: str) -> dict[str, str]:
        """The services `name` waits for, with the condition of each."""
        deps = self.services[name].get("depends_on", {})
        if isinstance(deps, list):
            return {d: "service_started" for d in deps}
        return {d: c.get("condition", "service_started") for d, c in deps.items()}

    def host_path(self, name: str, path: str) -> Path:
        """Where a container path of `name` is here: in a volume, or the container's own."""
        for mount in self.services[name].get("volumes", []):
            source, _, target = interpolate(str(mount), self.variables).partition(":")
            target = target.split(":")[0]
            if path == target or path.startswith(target + "/"):
                if source.startswith((".", "/")):
                    host = (DEPLOY / source).resolve()
                    assert not host.is_relative_to(ROOT), f"{host}: a bind mount in the repo"
                else:
                    host = self.root / "volumes" / source
                host.mkdir(parents=True, exist_ok=True)  # as compose makes a volume
                return host / path[len(target) :].lstrip("/")
        return self.root / "containers" / name / path.lstrip("/")

    def _directory(self, name: str, path: str) -> Path:
        """`host_path` of a directory the container has (its HOME, its working directory)."""
        here = self.host_path(name, path)
        here.mkdir(parents=True, exist_ok=True)
        return here

    def _address(self, name: str, value: str) -> str:
        """A value as the service sees it here: paths and service addresses substituted."""
        if value.startswith("/"):
            return str(self.host_path(name, value))
        parts = urlsplit(value)
        host = parts.hostname
        if host in ("localhost", LOOPBACK) and (name, parts.port or 0) in self.ports:
            host = name  # the container's own loopback: its own server
        if parts.scheme and host in self.services:
            # the port its server gets when it starts (or got): compose's DNS name, resolved
            port = self.ports.setdefault((host, parts.port or 0), free_port())
            user = parts.netloc.rpartition("@")[0]
            netloc = f"{user}@" if user else ""
            return urlunsplit(parts._replace(netloc=f"{netloc}{LOOPBACK}:{port}"))
        return value

    def environment(self, name: str) -> dict[str, str]:
        """The process environment of `name`: the image's ENV, its env files, its
        `environment` (in compose's order of precedence), addresses substituted."""
        spec = self.services[name]
        env = dict(self.image.env) if "build" in spec else {}
        for entry in spec.get("env_file", []):
            path, required = (
                (entry, True) if isinstance(entry, str) else (entry["path"], entry["required"])
            )
            if path in self.env_files:
                pairs = dotenv_values(self.env_files[path])  # compose's env-file syntax
                env.update({k: v for k, v in pairs.items() if v is not None})
            else:
                assert not required, f"{name}: env_file {path} is required"
        env.update(
            {k: interpolate(str(v), self.variables) for k, v in spec.get("environment", {}).items()}
        )
        env.setdefault("HOME", "/root")  # an image's root user's
        env = {k: self._address(name, v) for k, v in env.items()}
        Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
        bindir = Path(sys.executable).parent  # python, and chromadb's `chroma`
        paths = [bindir, self.pg.bindir]
        if "build" in spec:  # the image's `gtm` and packages first
            paths.insert(0, self.image.site / "bin")
            env["PYTHONPATH"] = str(self.image.site)
        env["PATH"] = os.pathsep.join([*map(str, paths), os.environ["PATH"]])
        env.setdefault("LANG", "C.UTF-8")
        return env

    def argv(self, name: str, command: list[str]) -> list[str]:
        """`command` as `name` runs it here: listening on a loopback port of its own."""
        args = [str(a) for a in command]
        out: list[str] = []
        for i, arg in enumerate(args):
            flag = args[i - 1] if i else ""
            if flag == "--port":
                port = int(arg)
                self.ports.setdefault((name, port), free_port())
                out.append(str(self.ports[(name, port)]))
            elif flag == "--host" and arg == "0.0.0.0":
                out.append(self._published_ip(name))
            else:
                out.append(self._address(name, arg))
        return out

    def _published_ip(self, name: str) -> str:
        ips = {str(p).split(":")[0] for p in self.services[name].get("ports", [])}
        assert ips <= {LOOPBACK}, f"{name} publishes ports on {ips}, not loopback only"
        return LOOPBACK

    def published(self, name: str, container_port: int) -> tuple[str, int]:
        """The host address a `ports:` entry of `name` publishes `container_port` on."""
        for entry in self.services[name].get("ports", []):
            ip, host_port, target = str(entry).split(":")
            if int(target) == container_port:
                assert int(host_port) == container_port  # one free port stands for both
                return ip, self.ports[(name, container_port)]
        raise KeyError(f"{name} publishes no port {container_port}")

    # ------------------------------------------------------------------ bringing it up

    def up(self, *names: str) -> None:
        """`docker compose up -d [names]`: the services and what they depend on, in order;
        a one-off job runs to completion (exit 0) before what waits for it starts."""
        wanted = set(names or self.services)
        for name in self.order:
            if any(name in self._closure(w) for w in wanted) and name not in self.started:
                self._start(name)

    def run(self, name: str, *command: str) -> subprocess.CompletedProcess[str]:
        """`docker compose run --rm name [command]`: its dependencies up, then the command (the
        service's own without one) to completion, its output captured."""
        for dep, condition in self.depends_on(name).items():
            self.up(dep)
            self._met(dep, condition)
        return self._one_off(name, list(command) or self.services[name]["command"], {})

    def exec(
        self, name: str, *command: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`docker compose exec [-e K=V] name command`: in the running service's environment."""
        assert name in self.procs and self.procs[name].poll() is None, f"{name} is not running"
        return self._one_off(name, list(command), env or {})

    def _one_off(
        self, name: str, command: list[str], env: Mapping[str, str], cwd: str = "/app"
    ) -> subprocess.CompletedProcess[str]:
        args = self.argv(name, command)  # in the image's WORKDIR (/app) by default
        full, where = {**self.environment(name), **env}, self._directory(name, cwd)
        return subprocess.run(
            args, env=full, cwd=where, capture_output=True, text=True, timeout=120
        )

    def healthcheck(self, name: str) -> subprocess.CompletedProcess[str]:
        """The service's `healthcheck.test`, run as compose runs it in the container."""
        kind, *rest = test = self.services[name]["healthcheck"]["test"]
        assert kind in ("CMD", "CMD-SHELL"), test
        pg = {"PGHOST": self.pg.host, "PGPORT": str(self.pg.port)}
        env = pg if name in self.postgres else {}
        return self._one_off(name, rest if kind == "CMD" else ["sh", "-c", rest[0]], env, "/")

    def output(self, name: str) -> str:
        return (self.root / "logs" / f"{name}.log").read_text(errors="replace")

    def _closure(self, name: str) -> set[str]:
        found = {name}
        for dep in self.depends_on(name):
            found |= self._closure(dep)
        return found

    def _met(self, dep: str, condition: str) -> None:
        if condition == "service_healthy":
            spec = self.services[dep]["healthcheck"]
            for _ in range(int(spec.get("retries", 3))):
                check = self.healthcheck(dep)
                if check.returncode == 0:
                    return
                time.sleep(0.2)
            raise AssertionError(f"{dep} is not healthy: {check.stdout}{check.stderr}")
        if condition == "service_started":
            assert dep in self.started, f"{dep} was not started"

    def _start(self, name: str) -> None:
        for dep, condition in self.depends_on(name).items():
            self._met(dep, condition)
        if name in self.postgres:
            self._postgres(name)
            self.started.add(name)
            return
        if name in self.jobs:  # not kept as started: each `up` runs it again, as compose does
            done = self.run(name)
            assert done.returncode == 0, (
                f"{name} exited {done.returncode}: {done.stdout}{done.stderr}"
            )
            return
        spec = self.services[name]
        args = self.argv(name, spec["command"])
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{name}.log").open("wb") as fh:
            proc = subprocess.Popen(
                args,
                env=self.environment(name),
                cwd=self._directory(name, "/app"),
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        self.started.add(name)
        flags = [str(a) for a in spec["command"]]
        ports = [
            self.ports[(name, int(flags[i + 1]))] for i, f in enumerate(flags) if f == "--port"
        ]
        deadline = time.monotonic() + self.startup
        while not all(_listening(p) for p in ports):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} never listened on {ports}: {self.output(name)}")
            time.sleep(0.1)

    def _postgres(self, name: str) -> None:
        """What the `postgres` image does with POSTGRES_USER, _PASSWORD and _DB, in the
        session's cluster: a superuser role with that password (asked for on loopback) and its
        database."""
        env = self.environment(name)
        user = env.get("POSTGRES_USER", "postgres")
        db = env.get("POSTGRES_DB", user)
        password = env["POSTGRES_PASSWORD"]
        assert password.isalnum(), "letters and digits (README): it goes into a URL as is"
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", user + db), (user, db)
        self.pg.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        self.pg.execute(f"DROP ROLE IF EXISTS {user}")
        self.pg.execute(f"CREATE ROLE {user} SUPERUSER LOGIN PASSWORD '{password}'")
        self.pg.execute(f"CREATE DATABASE {db} OWNER {user}")
        self._made_role = (user, db)
        hba = self.pg.root / "data" / "pg_hba.conf"
        self._hba = hba.read_text()
        hba.write_text(f"host all {user} {LOOPBACK}/32 scram-sha-256\n{self._hba}")
        self.pg.execute("SELECT pg_reload_conf()")
        self.ports[(name, POSTGRES_IMAGE_PORT)] = self.pg.port

    # ------------------------------------------------------------------ taking it down

    def down(self) -> None:
        """`docker compose down`: SIGTERM to each service, dependents first, each given its
        grace period before its process group is killed; the database and role dropped."""
        for name in reversed(self.order):
            proc = self.procs.pop(name, None)
            self.started.discard(name)
            if proc is None:  # the session's cluster, or a job that has ended
                continue
            grace = _grace(self.services[name])
            began = time.monotonic()
            code: int | None
            running = proc.poll() is None
            if running:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
                code = None
            took = time.monotonic() - began
            self.stopped[name] = Stopped(running, code, took, grace, self.output(name))
        if self._hba is not None:
            (self.pg.root / "data" / "pg_hba.conf").write_text(self._hba)
            self.pg.execute("SELECT pg_reload_conf()")
            self._hba = None
        if self._made_role is not None:
            user, db = self._made_role
            self.pg.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            self.pg.execute(f"DROP ROLE IF EXISTS {user}")
            self._made_role = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
        shutil.rmtree(self.root / "containers", ignore_errors=True)
