"""`baton store gc`: expire what the workers handed each other (`baton.store`) once it is old.

Imports the store only in the command that runs (see cli.main).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from baton.errors import BadRequest
from baton.settings import Settings

console = Console(soft_wrap=True)
store_app = typer.Typer(
    help="The store workers hand logs, manifests and records through.", no_args_is_help=True
)
# A text in use may have been written last up to a day ago (`baton.s3store.REFRESH`).
SHORTEST = timedelta(days=2)


@store_app.command("gc")
def store_gc(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="delete step logs and rendered manifests last stored longer ago than this "
            "(e.g. 90d, 12w; at least 2d)",
        ),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count them, delete nothing")] = False,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="the baton.yaml (default: $BATON_CONFIG)")
    ] = None,
) -> None:
    """Delete the step logs and rendered manifests of the S3 store (or BATON_HOME's) that nothing
    stored again for `--older-than`. Records (artifacts, the reconciler's heads) are kept. The
    registry's store keeps everything: expire it with the registry's own retention."""
    from baton.config import load_config, parse_duration
    from baton.store import ExpiringBlobStore, Stores

    age = parse_duration(older_than)
    if age is None or age < SHORTEST:
        raise BadRequest(f"--older-than {older_than!r}: give a duration of at least 2d, e.g. 90d")
    settings = Settings()
    config = load_config(config_file or settings.config_file())
    stores = Stores.configured(settings, config.registry, config.store)
    before = datetime.now(UTC) - age
    verb = "would delete" if dry_run else "deleted"
    for name, blobs in (("step logs", stores.logs), ("rendered manifests", stores.blobs)):
        if not isinstance(blobs, ExpiringBlobStore):
            raise BadRequest(
                f"the store is the registry ({config.registry.url}), whose blobs baton store gc "
                "does not delete: expire baton/logs and baton/blobs with the registry's "
                "retention, or set store.kind: s3"
            )
        count = blobs.expire(before, dry_run=dry_run)
        console.print(f"{verb} {count} {name} last stored before {before:%Y-%m-%d %H:%M} UTC")
