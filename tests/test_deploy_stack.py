"""deploy/compose.yaml run: Postgres, the schema job, the Chroma server and `gtm serve` working
together as the file wires them (issue 17, point 7).

No Docker engine runs here, so `tests.support.compose_stack.Stack` does what compose would,
from deploy/ itself: it builds the Dockerfile's image (its copies, `pip install .`) and starts
each service's own program with the service's command and environment. The only differences
from compose (the Stack's docstring lists them): the service hostnames (`postgres`, `chroma`)
become 127.0.0.1, and the ports their servers listen on, and the port `gtm` publishes, free
loopback ports; the `postgres` image is Debian's server (the session's cluster from
tests/support/postgres.py, with the role, password and database the service's POSTGRES_*
variables name); volumes and container paths are directories of the test; dependencies,
`python` and `chroma` are this virtualenv's; `user:` and `restart:` are not applied.

The steps are the README's ("Running it with Docker Compose"): a data directory that ran a
campaign on SQLite (a real `gtm run` on the scripted model) is the bind-mounted data volume;
`up postgres` (its healthcheck must pass), `run --rm migrate` (`gtm db upgrade`),
`run --rm migrate gtm db migrate-from-sqlite`, `up` (the Chroma server healthy before gtm).
Then, through real HTTP and the real CLI: every declared healthcheck passes; the printed
sign-in link signs in at the published address as `localhost` (as the README says to open
it); the inbox answers with the moved drafts; a campaign run in the deployment
(`exec gtm gtm run`) keeps its memory in the Chroma server, not in the data directory;
`gtm doctor` passes, with the schema at its head and Chroma reachable; `gtm status` runs; and
`down` stops each service with SIGTERM within its grace period.
"""

from __future__ import annotations

import re
import shutil
import signal
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import chromadb
import httpx
import psycopg
import pytest
from chromadb.config import Settings as ChromaSettings

from memory.chroma import COLLECTION
from memory.chroma_http import close_http_client
from tests.support.cli import example_list, run_gtm, scripted_env
from tests.support.compose_file import DEPLOY, load_compose
from tests.support.compose_stack import Stack
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts
from tests.support.postgres import PostgresServer, postgres_server
from tools.pg import SCHEMA_HEAD

__all__ = ["postgres_server"]

KEY = "sk-compose-model-key-never-shown"
PASSWORD = "Compose7db9Secret"  # letters and digits, as the README asks
TEAM_CSV = "team.csv"


@pytest.fixture
def model() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(responder=write_from_facts) as srv:
        yield srv


def _users_env_file(folder: Path, model_url: str) -> Path:
    """The README's `cp gtm.env.example gtm.env`, then the model settings filled in."""
    filled = {"GTM_MODEL_BASE_URL": model_url, "GTM_MODEL_API_KEY": KEY}
    lines = []
    for line in (DEPLOY / "gtm.env.example").read_text(encoding="utf-8").splitlines():
        key = line.partition("=")[0]
        lines.append(f"{key}={filled.pop(key)}" if key in filled else line)
    assert not filled, f"gtm.env.example has no line for {sorted(filled)}"
    path = folder / "gtm.env"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def _published_port() -> int:
    args = load_compose()["services"]["gtm"]["command"]
    return int(args[args.index("--port") + 1])


def _sign_in(stack: Stack) -> httpx.Client:
    """Open the printed link as the README says (`localhost` and the published port), take
    the sign-in form it shows, and post it: a browser's session on the inbox."""
    found = re.search(r"http://\S+:(\d+)/login\?token=([\w-]+)", stack.output("gtm"))
    assert found, stack.output("gtm")
    ip, port = stack.published("gtm", _published_port())
    assert int(found.group(1)) == port
    browser = httpx.Client(
        base_url=f"http://{ip}:{port}", headers={"Host": f"localhost:{port}"}, timeout=30
    )
    form = browser.get(f"/login?token={found.group(2)}")
    assert form.status_code == 200, form.text
    token = re.search(r'name="token"[^>]*value="([^"]*)"', form.text)
    reviewer = re.search(r'name="reviewer"[^>]*value="([^"]*)"', form.text)
    assert token and token.group(1) == found.group(2), form.text
    assert reviewer and reviewer.group(1) == stack.environment("gtm")["GTM_REVIEWER"]  # gtm.env
    signed = browser.post("/login", data={"token": token.group(1), "reviewer": reviewer.group(1)})
    assert signed.status_code == 303 and signed.headers["location"] == "/", signed.text
    return browser


def _memory_accounts(stack: Stack) -> set[str]:
    """The account ids of every record in the gtm service's Chroma server."""
    url = httpx.URL(stack.environment("gtm")["GTM_CHROMA_URL"])
    assert url.host == "127.0.0.1" and url.port is not None, url  # the server, not a local dir
    client = chromadb.HttpClient(
        host=url.host, port=url.port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    try:
        got = client.get_collection(COLLECTION).get(include=["metadatas"])
        return {str(m["account_id"]) for m in got["metadatas"] or []}
    finally:
        close_http_client(client)


def test_the_compose_deployment_comes_up_serves_and_stops(
    postgres_server: PostgresServer,  # noqa: F811
    model: ScriptedOpenAIServer,
    tmp_path: Path,
) -> None:
    # A data directory that ran on SQLite, brought in as the bind-mounted data volume.
    data = tmp_path / "data"
    laptop = run_gtm(
        scripted_env(model.base_url, "sk-the-laptops-own-key"),
        *("--data-dir", str(data), "run", str(example_list(tmp_path, 2))),
        *("--campaign", "laptop", "--channel", "email"),
    )
    assert laptop.returncode == 0, laptop.stdout + laptop.stderr
    local_memory = data / "memory" / "chroma"
    laptop_memory = _files(local_memory)
    assert laptop_memory  # the embedded Chroma the SQLite run used
    example = example_list(tmp_path, None).read_text(encoding="utf-8").splitlines()
    (data / TEAM_CSV).write_text("\n".join([example[0], *example[3:5]]) + "\n", encoding="utf-8")

    stack = Stack(
        tmp_path / "stack",
        postgres_server,
        variables={"GTM_DB_PASSWORD": PASSWORD, "GTM_DATA_ON_HOST": str(data)},
        env_files={"gtm.env": _users_env_file(tmp_path, model.base_url)},
    )
    with stack:
        stack.up("postgres")
        health = stack.healthcheck("postgres")
        assert health.returncode == 0, health.stdout + health.stderr
        # gtm reaches the database the image made, as its user, and only with the password
        pg_env = stack.environment("postgres")
        url = stack.environment("gtm")["GTM_DATABASE_URL"]
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT current_user, current_database()").fetchone()
            assert row == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"])
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(url.replace(PASSWORD, PASSWORD + "x"))

        upgraded = stack.run("migrate")
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        assert f"revision {SCHEMA_HEAD} (head {SCHEMA_HEAD})" in upgraded.stdout
        moved = stack.run("migrate", "gtm", "db", "migrate-from-sqlite")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        rows = re.search(r"moved (\d+) rows from\s+\S+\s+to\s+(\S+)", moved.stdout)
        assert rows and int(rows.group(1)) > 0, moved.stdout
        where = f"@127.0.0.1:{postgres_server.port}/{pg_env['POSTGRES_DB']}"
        assert rows.group(2) == f"postgresql://{pg_env['POSTGRES_USER']}{where}"
        assert PASSWORD not in moved.stdout + moved.stderr

        stack.up()
        checked = [name for name, spec in stack.services.items() if "healthcheck" in spec]
        assert {"postgres", "chroma"} <= set(checked)
        for name in checked:  # what compose waited for, asked again of the running stack
            health = stack.healthcheck(name)
            assert health.returncode == 0, f"{name}: {health.stdout}{health.stderr}"
        # what runs is the image's install of the Dockerfile's copies, not this checkout
        code = "import gtm, prompts; print(gtm.__file__, prompts.__file__)"
        installed = stack.exec("gtm", "python", "-c", code)
        assert installed.returncode == 0, installed.stderr
        gtm = shutil.which("gtm", path=stack.environment("gtm")["PATH"])
        for path in [gtm, *installed.stdout.split()]:
            assert path and Path(path).is_relative_to(stack.image.site), path
        with closing(_sign_in(stack)) as browser:
            inbox = browser.get("/")
            assert inbox.status_code == 200, inbox.text
            assert "Quillcode" in inbox.text  # the draft that was moved from SQLite

            # `docker compose exec gtm gtm run /data/team.csv …`: a campaign in the deployment
            before, sent = len(model.requests), len(model.headers)
            ran = stack.exec("gtm", "gtm", "run", f"/data/{TEAM_CSV}", "--campaign", "team")
            assert ran.returncode == 0, ran.stdout + ran.stderr
            asked = model.requests[before:]  # with gtm.env's model and key
            assert asked and {r["model"] for r in asked} == {stack.environment("gtm")["GTM_MODEL"]}
            assert {h["authorization"] for h in model.headers[sent:]} == {f"Bearer {KEY}"}
            assert "Forkwise" in browser.get("/").text  # the server reads what the run wrote

        in_server = _memory_accounts(stack)
        assert "forkwise.ai" in in_server, in_server
        assert "quillcode.dev" not in in_server  # the memory is not moved (README says so)
        assert _files(local_memory) == laptop_memory  # nothing written to the embedded Chroma
        assert _files(stack.host_path("chroma", "/chroma"))  # the server keeps it in its volume

        wide = {"COLUMNS": "200"}  # `exec -e COLUMNS=200`: fewer of rich's folds, to read it
        doctor = stack.exec("gtm", "gtm", "doctor", env=wide)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr  # every check passes
        table = " ".join(re.sub(r"[│┃]", " ", doctor.stdout).split())  # cells read as prose
        head = f"revision {SCHEMA_HEAD} (head {SCHEMA_HEAD})"
        db = re.search(
            rf"database: postgres ok (\S+): stores at {re.escape(head)}.*up to date", table
        )
        assert db and db.group(1) == rows.group(2), table  # the same database, no password
        found = re.search(r"memory: chroma server ok Chroma \S+ at (\S+) .*?; (\d+) records", table)
        assert found and found.group(1) == stack.environment("gtm")["GTM_CHROMA_URL"], table
        assert int(found.group(2)) > 0
        assert KEY not in doctor.stdout and PASSWORD not in doctor.stdout
        status = stack.exec("gtm", "gtm", "status", env=wide)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "laptop" in status.stdout and "team" in status.stdout, status.stdout
        for name in ("migrate", "gtm"):  # the image's /app is root's, not the gtm user's
            assert not any(stack.host_path(name, "/app").iterdir()), f"{name} wrote to /app"

    for name in ("gtm", "chroma"):  # SIGTERM, as `docker compose down` sends it
        stopped = stack.stopped[name]
        assert stopped.running, f"{name} had stopped on its own: {stopped.output}"
        assert stopped.returncode is not None, f"{name} was killed after {stopped.grace:g} s"
        assert stopped.seconds < stopped.grace
        assert "Traceback" not in stopped.output, stopped.output
    # Each is its container's PID 1, whose SIGTERM the kernel ignores unless it handles it: so
    # it must handle it. Chroma does and exits 0; gtm's uvicorn shuts down, then raises the
    # SIGTERM again, which ends the process here and is ignored in a container (exit 0).
    assert stack.stopped["chroma"].returncode == 0
    assert stack.stopped["gtm"].returncode in (0, -signal.SIGTERM)
    assert stack.healthcheck("chroma").returncode != 0  # the check sees a server that is gone
    served = stack.stopped["gtm"]
    assert re.search(r"scheduler stopped after \d+ tick", served.output), served.output
    assert KEY not in served.output and PASSWORD not in served.output
