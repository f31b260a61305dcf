"""`baton init`: write a starter baton.yaml from the default configuration the package carries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from baton.settings import default_config_file
from cli.exits import Exit

console = Console(soft_wrap=True, highlight=False)
err_console = Console(stderr=True, soft_wrap=True, highlight=False)


def init(
    file: Annotated[Path, typer.Argument(help="where to write it")] = Path("baton.yaml"),
    force: Annotated[bool, typer.Option("--force", help="replace an existing file")] = False,
) -> None:
    """Write a starter baton.yaml: the embedded defaults (local forge, registry and cluster) with
    the commented fields that point it at a hosted forge, Kubernetes and Flux.

    Exit 0 once written; 2 with one line when FILE exists (without --force) or cannot be written.
    """
    if file.exists() and not force:
        err_console.print(
            f"error: {file} exists: edit it, or run `baton init {file} --force` to replace it",
            markup=False,
        )
        raise typer.Exit(Exit.USAGE)
    try:
        file.write_text(default_config_file().read_text())
    except OSError as exc:
        err_console.print(f"error: cannot write {file}: {exc.strerror}", markup=False)
        raise typer.Exit(Exit.USAGE) from None
    console.print(
        f"wrote {file}: check it with `baton config check {file}`, use it with BATON_CONFIG={file}",
        markup=False,
    )
