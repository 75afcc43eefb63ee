"""Settings: where data lives, which model and sender to use.

Values come, in order of precedence, from what the caller passes (CLI options), the environment
(`GTM_*`), then a TOML config file outside the repository (`GTM_CONFIG`, default
`~/.config/gtm/config.toml`). Secrets belong in the environment or that file, never in the repo.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gtm.llm import ModelSettings

__all__ = ["Settings", "default_config_path"]


def default_config_path() -> Path:
    explicit = os.environ.get("GTM_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gtm" / "config.toml"


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
    model_temperature: float = Field(default=0.7, ge=0, le=2)
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
    email: Literal["local", "smtp"] = Field(default="local")
    smtp_host: str | None = None
    smtp_port: int = 587
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
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="Incoming webhook for alerts; unset = alerts go to the log."
    )
    http_timeout_s: float = Field(default=20.0, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=default_config_path())
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
        return self.model_copy(update=update)
