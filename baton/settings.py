"""Process settings from the environment (never from config in git): data directory, ports, secrets."""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The embedded default configuration. A wheel carries it as package data (pyproject.toml's
# force-include copies examples/baton.yaml there); a source checkout reads examples/ directly.
PACKAGED_CONFIG = Path(__file__).resolve().parent / "defaults" / "baton.yaml"
SOURCE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "baton.yaml"


def default_config_file() -> Path:
    """The embedded default configuration (what `baton init` writes): the wheel's, else examples/."""
    return PACKAGED_CONFIG if PACKAGED_CONFIG.is_file() else SOURCE_CONFIG


def read_secret(env: str, *, default_file: Path | None = None) -> str | None:
    """A secret from `$ENV`, from the file named by `$ENV_FILE`, or from `default_file`."""
    if value := os.environ.get(env):
        return value.strip()
    file = os.environ.get(f"{env}_FILE")
    path = Path(file) if file else default_file
    if path is not None and path.is_file():
        return path.read_text().strip()
    return None


class Settings(BaseSettings):
    """Where Baton keeps its state and how its local processes reach each other."""

    model_config = SettingsConfigDict(env_prefix="BATON_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".baton")
    config: Path | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8290
    api_base: str | None = Field(
        default=None, description="BATON_API_BASE: the API's URL for the CLI; unset: api_url"
    )
    # BATON_API_DRAIN_S: on SIGTERM, how long the API gives the starts still in its journal to be
    # made before it exits (what is left stays journaled); below the pod's grace period.
    api_drain_s: float = Field(default=20.0, ge=0)
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    # BATON_STORE: where workers hand logs, manifests and records to each other (`baton.store`),
    # in place of baton.yaml's `store.kind`: the configured OCI registry, the configured S3 bucket,
    # or `home` (under BATON_HOME: one host only). Unset: baton.yaml's (default: the registry).
    store: Literal["registry", "s3", "home"] | None = None
    # BATON_STACK_HOME: the embedded stack's data directory (its local forge and local cluster),
    # for a worker with a BATON_HOME of its own; unset: BATON_HOME.
    stack_home: Path | None = None
    # BATON_TOKENS_FILE: the token file the API reads besides tokens.db (`baton.tokens`), read-only,
    # e.g. mounted from a Secret on Kubernetes. An alias, so BATON_TOKEN_FILE is not read as it.
    token_file: Path | None = Field(default=None, validation_alias="BATON_TOKENS_FILE")

    def config_file(self) -> Path:
        """BATON_CONFIG when set, else the embedded defaults (`default_config_file`)."""
        return self.config or default_config_file()

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def temporal_ui_url(self) -> str:
        return f"http://127.0.0.1:{self.temporal_ui_port}"

    @property
    def stack_dir(self) -> Path:
        """The embedded stack's data directory (BATON_STACK_HOME, else BATON_HOME)."""
        return self.stack_home or self.home

    @property
    def forge_dir(self) -> Path:
        return self.stack_dir / "forge"

    @property
    def tokens_file(self) -> Path:
        """The store of Baton API tokens (hashed), shared by the API and `baton token`."""
        return self.home / "tokens.db"

    @property
    def start_journal_file(self) -> Path:
        """The API's journal of accepted workflow starts (`baton.start_journal`)."""
        return self.home / "api" / "pending-starts.db"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @cached_property
    def webhook_secret(self) -> str:
        """The shared webhook secret: BATON_WEBHOOK_SECRET(_FILE), else one generated once locally."""
        return self.local_secret("BATON_WEBHOOK_SECRET", "webhook-secret")

    def local_secret(self, env: str, name: str) -> str:
        """A secret from `$env` or `$env_FILE`, else one generated once into the secrets directory."""
        path = self.secrets_dir / name
        value = read_secret(env, default_file=path)
        if value:
            return value
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        return path.read_text().strip()
