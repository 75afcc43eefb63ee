"""deploy/compose.yaml and deploy/Dockerfile: the documented deployment says only true things.

Docker is not on the test machines, so the compose file is read as YAML and checked against the
code it runs: the services and their order, every GTM_ variable a real setting whose value the
settings accept, every command one the installed `gtm` (or `chroma`) takes, the web inbox on
the host's loopback only, and the Dockerfile copying every package the project installs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gtm.app.settings import Settings, load_settings
from gtm.cli.serve import parse_every
from tests.support.cli import ROOT, run_gtm
from tests.support.compose_file import interpolate as _interpolate

DEPLOY = ROOT / "deploy"


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _gtm_env(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    return {k: _interpolate(str(v), env) for k, v in service["environment"].items()}


def test_the_services_start_in_order_postgres_then_the_schema_then_gtm() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "chroma", "migrate", "gtm"}
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["gtm"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert "chroma" in services["gtm"]["depends_on"]
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]


@pytest.mark.parametrize("name", ["migrate", "gtm"])
def test_each_gtm_command_is_one_the_cli_takes(name: str) -> None:
    """`--help` after the service's own arguments: an unknown command or option fails first."""
    command = _compose()["services"][name]["command"]
    assert command[0] == "gtm"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    res = run_gtm(env, *command[1:], "--help", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Usage: " in res.stdout


def test_gtm_serve_listens_where_the_port_is_published_and_only_on_the_hosts_loopback() -> None:
    gtm = _compose()["services"]["gtm"]
    args = gtm["command"]
    assert args[:2] == ["gtm", "serve"]
    opts = dict(zip(args[2::2], args[3::2], strict=True))
    assert opts["--host"] == "0.0.0.0"  # inside the container; published below on loopback
    parse_every(opts["--every"])
    assert gtm["ports"] == [f"127.0.0.1:{opts['--port']}:{opts['--port']}"]


def test_chroma_runs_the_installed_chroma_with_options_it_takes() -> None:
    chroma = _compose()["services"]["chroma"]
    command = chroma["command"]
    assert command[:2] == ["chroma", "run"]
    exe = Path(sys.executable).with_name("chroma")
    res = subprocess.run([exe, "run", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    for flag in command[2::2]:
        assert f"{flag} <" in res.stdout, flag
    gtm_env = _gtm_env(_compose()["x-gtm"], {"GTM_DB_PASSWORD": "pw"})
    port = command[command.index("--port") + 1]
    assert gtm_env["GTM_CHROMA_URL"] == f"http://chroma:{port}"
    assert "ports" not in chroma  # reached by gtm over the compose network only


def test_every_gtm_variable_is_a_setting_and_the_settings_accept_the_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    compose = _compose()
    env = _gtm_env(compose["x-gtm"], {"GTM_DB_PASSWORD": "s3cret"})
    example = _env_file(DEPLOY / "gtm.env.example")
    fields = {f"GTM_{name.upper()}" for name in Settings.model_fields}
    for key in [*env, *example]:
        assert not key.startswith("GTM_") or key in fields, key
    assert {"GTM_DATABASE_URL", "GTM_CHROMA_URL", "GTM_DATA_DIR"} <= set(env)

    for key in list(os.environ):
        if key.startswith("GTM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))  # no config file: the environment alone
    for key, value in {**example, **env}.items():
        if key.startswith("GTM_") and value:
            monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.database_url is not None and settings.chroma_url is not None
    assert settings.database_url.get_secret_value() == "postgresql://gtm:s3cret@postgres:5432/gtm"
    assert settings.data_dir == Path("/data")


def test_the_database_url_names_the_postgres_service_its_user_and_database() -> None:
    compose = _compose()
    pg = compose["services"]["postgres"]["environment"]
    env = _gtm_env(compose["x-gtm"], {"GTM_DB_PASSWORD": "pw"})
    url = env["GTM_DATABASE_URL"]
    assert url == f"postgresql://{pg['POSTGRES_USER']}:pw@postgres:5432/{pg['POSTGRES_DB']}"
    assert _interpolate(pg["POSTGRES_PASSWORD"], {"GTM_DB_PASSWORD": "pw"}) == "pw"
    with pytest.raises(KeyError, match="GTM_DB_PASSWORD"):  # no default password
        _gtm_env(compose["x-gtm"], {})


def test_the_dockerfile_copies_every_package_the_project_installs() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    copied = set()
    for line in text.splitlines():
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            for src in sources:
                assert (ROOT / src).exists(), src
                copied.add(src)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= copied
    assert "README.md" in copied  # pyproject's readme: the install fails without it
    assert "RUN pip install ." in text
    for service in ("migrate", "gtm"):
        build = _compose()["services"][service]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        )
