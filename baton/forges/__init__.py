"""Forge adapters behind the `Forge` protocol; which one is used is configuration."""

from __future__ import annotations

from baton.config import ForgeConfig
from baton.errors import BatonError
from baton.forges.base import Forge
from baton.settings import Settings


def create_forge(config: ForgeConfig, settings: Settings) -> Forge:
    """The adapter for `config.kind`."""
    if config.kind == "local":
        from baton.local.forge import LocalForge

        return LocalForge(
            settings.forge_dir,
            webhook_url=f"{settings.api_url}/webhooks/github",
            webhook_secret=config.webhook_secret() or settings.webhook_secret,
            merge_mode=config.merge,
        )
    raise BatonError(f"forge.kind {config.kind!r} is not supported yet: use kind: local")
