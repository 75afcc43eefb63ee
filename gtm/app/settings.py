"""Settings: where data lives, which model and sender to use.

Values come, in order of precedence, from what the caller passes (CLI options), the environment
(`GTM_*`), then a TOML config file outside the repository (`GTM_CONFIG`, default
`~/.config/gtm/config.toml`). Secrets belong in the environment or that file, never in the repo.

`load_settings()` is the checked way in: any bad value, unreadable or malformed config file
raises one `SettingsError` whose message names the file (or the environment variable) and the
field, and never echoes a secret.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import pydantic_settings
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.types import Traversable

from gtm.app.llm import ModelSettings
from memory.chroma_http import MemoryServerError, parse_url
from tools.unsubscribe import check_unsubscribe_secret

__all__ = [
    "Settings",
    "SettingsError",
    "SettingsProblem",
    "default_config_path",
    "load_settings",
]


def default_config_path() -> Path:
    explicit = os.environ.get("GTM_CONFIG")
    if explicit:
        try:
            return Path(explicit).expanduser()
        except RuntimeError:  # "~user/..." for an unknown user: report the path as given
            return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gtm" / "config.toml"


@dataclass(frozen=True)
class SettingsProblem:
    """One bad setting: where it came from, which field, and what is wrong."""

    source: str
    """The config file path, or `environment variable GTM_X`."""
    field: str
    """The settings field; empty when the whole file is the problem (unreadable, not TOML)."""
    reason: str

    def __str__(self) -> str:
        if not self.field:
            return f"{self.source}: {self.reason}"
        return f"{self.source}: {self.field}: {self.reason}"


class SettingsError(ValueError):
    """Settings cannot be loaded. The message names the file or variable, and the field."""

    def __init__(self, problems: Sequence[SettingsProblem]) -> None:
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            message = str(self.problems[0])
        else:
            message = "invalid settings:\n" + "\n".join(f"  {p}" for p in self.problems)
        super().__init__(message)


def _read_toml(path: Path | Traversable) -> dict[str, Any]:
    """The config file's table; every way of failing to read it is a `SettingsError`."""
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = f"cannot read the config file ({exc.strerror or exc})"
        raise SettingsError([SettingsProblem(where, "", reason)]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        reason = (
            f"line {line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        )
        raise SettingsError([SettingsProblem(where, "", reason)]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([SettingsProblem(where, "", f"not valid TOML ({exc})")]) from None
    except RecursionError:
        reason = "not valid TOML (nested too deeply)"
        raise SettingsError([SettingsProblem(where, "", reason)]) from None


class _TomlFile(TomlConfigSettingsSource):
    """The config file, read with `_read_toml`."""

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        return _read_toml(file_path)


class Settings(BaseSettings):
    """Everything the CLI needs to assemble a run. Nothing here is read at import time."""

    model_config = SettingsConfigDict(env_prefix="GTM_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default=Path(".gtm"), description="Checkpoints, CRM, outboxes, memory and logs."
    )
    playbook: Path | None = Field(default=None, description="Playbook file; None = default.")
    model_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint; None starts the embedded model."
    )
    model: str | None = Field(default=None, description="Model name at that endpoint.")
    model_api_key: SecretStr | None = Field(default=None, description="Key for that endpoint.")
    model_max_tokens: int = Field(default=400, gt=0)
    model_temperature: float = Field(default=0.7, ge=0, le=2, allow_inf_nan=False)
    model_seed: int | None = Field(
        default=None, description="Sampling seed, if the server takes one."
    )
    sender_name: str = Field(default="Alex Morgan", description="Who the messages are from.")
    sender_company: str = Field(default="Vectorly", description="The sender's company.")
    linkedin_seat: str = Field(default="default-seat", description="LinkedIn sender seat id.")
    email_from: str = Field(default="alex@vectorly.example", description="Email From address.")
    reviewer: str = Field(
        default_factory=lambda: os.environ.get("USER") or "reviewer",
        description="Recorded with every decision.",
    )

    # Providers. The local twins are the embedded default; each real one needs its credentials.
    crm: Literal["local", "hubspot", "attio"] = Field(default="local")
    hubspot_token: SecretStr | None = Field(default=None, description="Private-app token.")
    hubspot_base_url: str = "https://api.hubapi.com"
    attio_token: SecretStr | None = Field(default=None, description="Attio API key (Bearer).")
    attio_base_url: str = "https://api.attio.com"
    attio_list: str | None = Field(
        default=None, description="Attio list (slug or id) every outreach company is added to."
    )
    linkedin: Literal["local", "duxsoup"] = Field(default="local")
    duxsoup_user_id: str | None = None
    duxsoup_key: SecretStr | None = Field(default=None, description="Remote-control API key.")
    duxsoup_base_url: str = "https://app.dux-soup.com/xapi/remote/control"
    duxsoup_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Secret path segment of the Dux-Soup webhook URL; unset = no receiver.",
    )
    duxsoup_webhook_kinds: dict[str, str] = Field(
        default_factory=dict,
        description="Dux-Soup webhook `type.stage` -> connection_accepted, message_received or "
        "ignore, on top of the built-in pairs (gtm.web.webhooks.DUXSOUP_KINDS).",
    )
    email: Literal["local", "smtp"] = Field(default="local")
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_ca_file: Path | None = Field(
        default=None, description="CA bundle for a private SMTP server's certificate."
    )
    email_unsubscribe: str | None = Field(
        default=None,
        description="List-Unsubscribe target (mailto: or https:); default mailto:<email_from>.",
    )
    unsubscribe_base_url: str | None = Field(
        default=None,
        description="Public https address of `gtm serve`: adds a one-click (RFC 8058) "
        "unsubscribe link to each email; needs unsubscribe_secret.",
    )
    unsubscribe_secret: SecretStr | None = Field(
        default=None, description="Signs the one-click unsubscribe links (32+ characters)."
    )
    # The mailbox replies, auto-replies and bounces arrive in (`gtm sync`); unset = not read.
    imap_host: str | None = Field(default=None, description="IMAP server; unset = no mailbox.")
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_folder: str = Field(default="INBOX", min_length=1, description="Folder to read.")
    imap_ssl: bool = Field(default=True, description="Implicit TLS (port 993).")
    imap_starttls: bool = Field(default=False, description="STARTTLS on a plain port (143).")
    imap_ca_file: Path | None = Field(
        default=None, description="CA bundle for a private IMAP server's certificate."
    )
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="Incoming webhook for alerts; unset = alerts go to the log."
    )
    http_timeout_s: float = Field(default=20.0, gt=0, allow_inf_nan=False)
    database_url: SecretStr | None = Field(
        default=None,
        description="postgresql://user:password@host:port/db for the durable stores "
        "(`gtm db upgrade` prepares it); unset = SQLite files in the data directory.",
    )
    database_retry_s: float = Field(
        default=60.0,
        gt=0,
        allow_inf_nan=False,
        description="How long a store call waits for a database that went away (a restart, a "
        "failover) before the command stops with one line; nothing decided is lost.",
    )
    chroma_url: SecretStr | None = Field(
        default=None,
        description="http(s)://host:port of a Chroma server for the account memory (shared by "
        "every process); unset = the embedded Chroma in the data directory. Secret only so "
        "that a mistyped URL with a password in it is never echoed.",
    )
    chroma_token: SecretStr | None = Field(
        default=None, description="Token for that server (sent as X-Chroma-Token and Bearer)."
    )
    chroma_tenant: str = Field(default="default_tenant", min_length=1)
    chroma_database: str = Field(default="default_database", min_length=1)
    model_price_input: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="Price per million prompt tokens, for `gtm status` costs; unset = unknown.",
    )
    model_price_output: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="Price per million completion tokens; unset = unknown.",
    )
    model_prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Model name -> [input, output] price per million tokens, over the two above.",
    )
    otel_endpoint: str | None = Field(
        default=None,
        description="OTLP/gRPC collector (e.g. http://localhost:4317) for a span per graph node "
        "step; unset = no spans.",
    )
    web_contact: str | None = Field(
        default=None,
        description="Turns website research on: the URL or email address site owners can reach "
        "you at, sent in the fetcher's user agent. Unset = nothing is fetched from the web.",
    )

    @field_validator("data_dir", "playbook", "smtp_ca_file", "imap_ca_file")
    @classmethod
    def _no_nul(cls, v: Path | None) -> Path | None:
        if v is not None and "\x00" in str(v):
            raise ValueError("a path cannot contain a NUL character")
        return v

    @field_validator("unsubscribe_base_url")
    @classmethod
    def _https(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("https://"):
            raise ValueError("must start with https:// (RFC 8058 one-click needs HTTPS)")
        return v

    @field_validator("web_contact")
    @classmethod
    def _contact(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        ok = v.isascii() and v.isprintable() and not set(v) & set("()")
        if not ok or not re.fullmatch(r"https?://[!-~]+|[^\s@]+@[^\s@]+\.[^\s@]+", v):
            raise ValueError(
                "must be an http(s) URL or an email address (it goes in the User-Agent header)"
            )
        return v

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (e.g. postgresql://gtm@db:5432/gtm)")
        return v

    @field_validator("chroma_url")
    @classmethod
    def _chroma_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        try:
            parse_url(v.get_secret_value())
        except MemoryServerError as exc:
            raise ValueError(str(exc).split(": ", 1)[-1]) from None
        return v

    @field_validator("unsubscribe_secret")
    @classmethod
    def _long_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            check_unsubscribe_secret(v.get_secret_value())
        return v

    @field_validator("model_prices")
    @classmethod
    def _prices(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for model, pair in v.items():
            if not all(p >= 0 and p != float("inf") for p in pair):
                raise ValueError(f"entry {model!r}: prices must be finite and not negative")
        return v

    @field_validator("duxsoup_webhook_kinds")
    @classmethod
    def _type_stage_kinds(cls, v: dict[str, str]) -> dict[str, str]:
        kinds = ("connection_accepted", "message_received", "ignore")
        for key, kind in v.items():
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}\.[A-Za-z0-9_-]{1,40}", key):
                raise ValueError(f"entry {key!r}: the key must be Dux-Soup's type.stage")
            if kind not in kinds:
                raise ValueError(f"entry {key!r} = {kind!r}: must be one of {', '.join(kinds)}")
        return {key.lower(): kind for key, kind in v.items()}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _TomlFile(settings_cls, toml_file=default_config_path())
        return init_settings, env_settings, toml

    def model_settings(self) -> ModelSettings:
        key = self.model_api_key
        if key is None and os.environ.get("OPENAI_API_KEY") and self.model_base_url:
            key = SecretStr(os.environ["OPENAI_API_KEY"])
        return ModelSettings(
            base_url=self.model_base_url,
            model=self.model,
            api_key=key,
            max_tokens=self.model_max_tokens,
            temperature=self.model_temperature,
            seed=self.model_seed,
        )

    def path(self, *parts: str) -> Path:
        p = self.data_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with the non-None values replaced (CLI options win over env and file)."""
        update = {k: v for k, v in values.items() if v is not None}
        new = self.model_copy(update=update)
        if new.data_dir.exists() and not new.data_dir.is_dir():
            source = "--data-dir" if "data_dir" in update else "GTM_DATA_DIR (env or config)"
            raise SettingsError(
                [SettingsProblem(source, "data_dir", f"{new.data_dir} is a file, not a directory")]
            )
        return new


_SECRETS = frozenset(
    name
    for name, info in Settings.model_fields.items()
    if info.annotation is SecretStr or SecretStr in get_args(info.annotation)
)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problems(exc: ValidationError, config: Path) -> list[SettingsProblem]:
    env = {k.lower(): k for k in os.environ}  # pydantic-settings matches GTM_* in any case
    out = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else "(settings)"
        var = env.get(f"gtm_{field}".lower())
        source = f"environment variable {var}" if var else str(config)
        reason = " ".join(str(err["msg"]).removeprefix("Value error, ").split())
        if field not in _SECRETS and "input" in err:
            reason += f" (got {_shown(err['input'])})"
        out.append(SettingsProblem(source, field, reason))
    return out


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _unknown_keys(data: dict[str, Any], config: Path) -> list[SettingsProblem]:
    """Keys that set nothing (a typo in `email_from` would send from the default address)."""
    out = []
    seen: dict[str, str] = {}
    fields = list(Settings.model_fields)
    for key in data:
        name = key.lower()  # settings match keys in any case, as pydantic-settings does
        shown = key if _BARE_KEY.fullmatch(key) else repr(key)  # '' and 'a b' quoted
        if name in seen:
            reason = f"set twice (as {seen[name]!r} and {key!r})"
            out.append(SettingsProblem(str(config), shown, reason))
        elif name in Settings.model_fields:
            seen[name] = key
        else:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            out.append(SettingsProblem(str(config), shown, f"unknown setting {key!r}{hint}"))
    return out


def load_settings() -> Settings:
    """Settings from the environment and the config file, checked.

    Raises `SettingsError` naming the config file (or `environment variable GTM_X`) and the
    field for a bad value or an unknown key, and the file for one that is missing (when
    `GTM_CONFIG` names it), unreadable, not UTF-8 or not TOML. Secret values are never shown.
    """
    path = default_config_path()
    try:
        exists, is_file = path.exists(), path.is_file()
    except OSError as exc:
        reason = f"cannot read the config file ({exc.strerror or exc})"
        raise SettingsError([SettingsProblem(str(path), "", reason)]) from None
    if not exists and os.environ.get("GTM_CONFIG"):
        reason = "no such config file (named by GTM_CONFIG)"
        raise SettingsError([SettingsProblem(str(path), "", reason)])
    if exists and not is_file:
        raise SettingsError([SettingsProblem(str(path), "", "not a file")])
    unknown = _unknown_keys(_read_toml(path), path) if exists else []
    try:
        settings = Settings()
    except ValidationError as exc:
        raise SettingsError(unknown + _problems(exc, path)) from None
    except pydantic_settings.SettingsError as exc:  # an environment value it cannot decode
        raise SettingsError([*unknown, SettingsProblem("environment", "", str(exc))]) from None
    if unknown:
        raise SettingsError(unknown)
    return settings
