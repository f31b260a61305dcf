"""`baton images`: third-party images mirrored into Baton's registry (`images.mirror`).

The registry, mirror and Temporal are imported by the command that runs (see cli.main).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from baton.settings import Settings

if TYPE_CHECKING:
    from baton.config import BatonConfig
    from baton.mirror import MirrorState

console = Console(soft_wrap=True)
images_app = typer.Typer(help="Third-party images mirrored into Baton's registry.")

ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="the baton.yaml (default: $BATON_CONFIG)")
]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _state(settings: Settings, config: BatonConfig) -> MirrorState:
    """The mirror state the build workers keep, in the store they share (`baton.store`)."""
    from baton.local.stack import with_stack_registry_secrets
    from baton.mirror import MirrorState
    from baton.store import Stores

    registry = with_stack_registry_secrets(settings, config.registry)
    return MirrorState(Stores.configured(settings, registry, config.store).records)


@images_app.command("mirror")
def images_mirror(config_file: ConfigFile = None) -> None:
    """Copy each images.mirror source into the registry by digest; report what changed."""
    from baton.config import load_config
    from baton.local.stack import with_stack_registry_secrets
    from baton.mirror import config_commit, mirror
    from baton.registry import Registry

    settings = Settings()
    path = config_file or settings.config_file()
    config = load_config(path)
    if not config.images.mirror:
        console.print(f"{path}: no images.mirror entries")
        return
    with Registry.configured(with_stack_registry_secrets(settings, config.registry)) as target:
        mirrored = mirror(
            config.images.mirror,
            target,
            _state(settings, config),
            config_commit=config_commit(path),
        )
    for image in mirrored:
        note = f" (update: was {image.previous_digest})" if image.update_waiting else ""
        console.print(f"{image.source} -> {image.image}{note}", markup=False, highlight=False)


@images_app.command("ls")
def images_ls(as_json: Json = False, config_file: ConfigFile = None) -> None:
    """Each mirrored image: source, source digest, mirrored tag, last check, update waiting and
    the PRs that move its pins (read from the store the config's registry holds)."""
    from baton.config import load_config

    settings = Settings()
    known = _state(settings, load_config(config_file or settings.config_file())).load()
    if as_json:
        print(json.dumps([i.model_dump(mode="json") for i in known.values()], indent=2))
        return
    if not known:
        console.print(
            "no mirrored images: add images.mirror to the config, then `baton images mirror`"
        )
    for image in known.values():
        waiting = "update waiting" if image.update_waiting else "up to date"
        if image.bump_prs:
            waiting += f" (bump: {', '.join(image.bump_prs)})"
        console.print(
            f"{image.image}  {image.source}@{image.source_digest[:19]}  "
            f"checked {image.checked_at:%Y-%m-%d %H:%M}Z  {waiting}",
            markup=False,
            highlight=False,
        )


@images_app.command("schedule")
def images_schedule(config_file: ConfigFile = None) -> None:
    """Create or update the Temporal Schedule that runs the refresh on images.refresh's cron."""
    from baton.config import ConfigError, load_config
    from baton.temporal import IMAGE_REFRESH_SCHEDULE, WorkflowTypes, connect, put_schedule

    settings = Settings()
    path = config_file or settings.config_file()
    cron = load_config(path).images.refresh
    if cron is None:
        raise ConfigError(
            ["images.refresh: not set: give it a cron, e.g. '0 */6 * * *'"], str(path)
        )

    async def put() -> None:
        await put_schedule(
            await connect(), IMAGE_REFRESH_SCHEDULE, WorkflowTypes.IMAGE_REFRESH, cron
        )

    asyncio.run(put())
    console.print(f"schedule {IMAGE_REFRESH_SCHEDULE}: {cron} (UTC)", markup=False)
