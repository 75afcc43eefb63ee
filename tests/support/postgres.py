"""A real PostgreSQL for the tests: the machine's own server binaries, a temporary cluster.

`make test` installs Debian's `postgresql`; without its `initdb` and `postgres` the tests that
need them are skipped with the install command. The cluster is ours alone: created by `initdb`
in a temporary directory, listening on a free 127.0.0.1 port (and a Unix socket in the same
directory, nothing in /var/run), trusting loopback connections except for one role that must
give its password (`PASSWORD_ROLE`, for the wrong-password tests). PostgreSQL refuses to run as
root, so when the tests are root the cluster belongs to the `postgres` user (or `nobody`).

`postgres_server` is session-scoped: one cluster for the session (shared by every module that
imports the fixture), stopped and deleted after it.
Each test takes a fresh database from it (`PostgresServer.new_database`), cloned from a template
that already holds the migrated schema, so a test starts from the same empty schema in a few
milliseconds rather than running the migrations again.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from tests.support.servers import Program, SessionServer, start
from tests.support.servers import free_port as _free_port  # the name tests import

if TYPE_CHECKING:
    from tools.pg import Database

__all__ = [
    "PASSWORD_ROLE",
    "PostgresServer",
    "database_for",
    "find_bindir",
    "postgres_server",
    "start_cluster",
]

PASSWORD_ROLE = "gtm_password_check"
"""The one role that must authenticate with a password (scram-sha-256), even on loopback."""
SUPERUSER = "postgres"
INSTALL_HINT = "apt-get install postgresql (Debian's PostgreSQL server: initdb, postgres)"


def find_bindir() -> Path | None:
    """Where `initdb` and `postgres` are: `pg_config --bindir`, then Debian's versioned
    directories (newest first), then PATH. None when there is no server on this machine."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        try:
            out = subprocess.run(
                ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(p: str) -> int:
        v = Path(p).parent.name
        return int(v) if v.isdigit() else 0

    candidates += [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)[::-1]
    ]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for d in candidates:
        if (d / "initdb").is_file() and (d / "postgres").is_file():
            return d
    return None


@dataclass
class PostgresServer:
    """A running temporary cluster: where it listens and how to reach a database in it."""

    host: str
    port: int
    root: Path
    bindir: Path
    _names: Iterator[int] = field(default_factory=itertools.count)
    template: str | None = None

    def url(self, dbname: str = "postgres", user: str = SUPERUSER, password: str = "") -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run one statement as the superuser, outside a transaction (CREATE DATABASE...)."""
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(sql.encode())

    def new_database(self, *, migrated: bool = True) -> str:
        """The URL of a new empty database; `migrated`: with the schema at its head revision
        (cloned from a template migrated once per session)."""
        name = f"t{os.getpid()}_{next(self._names)}"
        if migrated:
            if self.template is None:
                from tools.pg_migrate import upgrade

                tpl = f"tpl{os.getpid()}"
                self.execute(f"CREATE DATABASE {tpl}")
                upgrade(self.url(tpl))
                self.template = tpl
            self.execute(f"CREATE DATABASE {name} TEMPLATE {self.template}")
        else:
            self.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop a database `new_database` made (ending its sessions), so a long session does
        not fill the disk with copies."""
        self.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def _as_cluster_owner() -> dict[str, Any]:
    """Popen arguments that run a server program as a non-root user when we are root."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root and there is no 'postgres' or 'nobody' user to own it")


_HBA = f"""
local all all trust
host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
"""


_POSTGRES = Program("postgres", "accept connections", signal.SIGINT, grace=15)
"""Fast shutdown is SIGINT to the postmaster: it ends its backends."""


def _accepts(server: PostgresServer) -> bool:
    import psycopg

    try:
        with psycopg.connect(server.url(), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def start_cluster(bindir: Path) -> tuple[PostgresServer, subprocess.Popen[bytes]]:
    """`initdb` a cluster in a new temporary directory and start `postgres` on it."""
    root = Path(tempfile.mkdtemp(prefix="gtm-pg-"))
    owner = _as_cluster_owner()
    if owner:
        os.chown(root, owner["user"], owner["group"])
    data, log = root / "data", root / "postgres.log"
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"}
    subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-instructions",
            "--no-sync",
        ],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        **owner,
    )
    (data / "pg_hba.conf").write_text(_HBA)
    port = _free_port()
    args = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root)]
    settings = {
        "listen_addresses": "127.0.0.1",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
        "shared_buffers": "32MB",
        "log_min_messages": "warning",
    }
    for k, v in settings.items():
        args += ["-c", f"{k}={v}"]
    server = PostgresServer("127.0.0.1", port, root, bindir)
    proc = start(
        _POSTGRES, args, root=root, log=log, probe=lambda: _accepts(server), env=env, **owner
    )
    return server, proc


_SESSION: SessionServer[PostgresServer] = SessionServer(_POSTGRES)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A temporary PostgreSQL cluster on loopback for the whole session; skipped (with the
    install command) only when the server binaries are absent."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(f"no PostgreSQL server binaries (initdb, postgres) found: {INSTALL_HINT}")
    yield from _SESSION.use(lambda: start_cluster(bindir))


@pytest.fixture(name="url")
def database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """`url`: a fresh migrated database of the session's cluster, dropped after the test (import
    `database_url` and `postgres_server` into the test module to use it)."""
    made = postgres_server.new_database()
    yield made
    postgres_server.drop(made)


@contextmanager
def database_for(request: pytest.FixtureRequest, backend: str) -> Iterator[Database | None]:
    """For a fixture parametrized over "sqlite" and "postgres": None for SQLite, or a pool on a
    fresh migrated database of the session's cluster, closed and the database dropped after
    the block (so the stores a test opened must be closed inside it)."""
    if backend != "postgres":
        yield None
        return
    from tools.pg import Database

    server = request.getfixturevalue("postgres_server")
    assert isinstance(server, PostgresServer)
    url = server.new_database()
    db = Database(url)
    try:
        yield db
    finally:
        db.close()
        server.drop(url)


@dataclass
class StoreBackend:
    """Stores opened on one backend, for a test parametrized over "sqlite" and "postgres":
    SQLite files in `tmp`, or the Postgres database `db`. Two stores of a kind opened here share
    their data, as two processes would; each test file adds the methods that open its stores,
    and `backend_for` closes every store kept in `opened` after the test."""

    name: str
    tmp: Path
    db: Database | None = None
    opened: list[Any] = field(default_factory=list)

    def _keep(self, store: _S) -> _S:
        self.opened.append(store)
        return store


_S = TypeVar("_S")
_B = TypeVar("_B", bound=StoreBackend)


@contextmanager
def backend_for(kind: type[_B], request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_B]:
    """A `kind` on the backend the fixture's parameter names; its stores closed after."""
    with database_for(request, request.param) as db:
        b = kind(request.param, tmp_path / "stores", db)
        b.tmp.mkdir()
        try:
            yield b
        finally:
            for store in b.opened:
                store.close()
