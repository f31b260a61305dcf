"""The `baton` command line."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from baton.config import ConfigError, load_config
from baton.errors import BatonError
from baton.local.stack import Stack
from baton.settings import Settings

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

app = typer.Typer(
    help="Baton carries every application change along the whole GitOps path.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Validate configuration.", no_args_is_help=True)
dev_app = typer.Typer(help="Run the embedded stack on this machine.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(dev_app, name="dev")


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="the baton.yaml to validate")]) -> None:
    """Exit 0 when FILE is valid; otherwise print one line per problem and exit 2."""
    try:
        config = load_config(file)
    except ConfigError as exc:
        for problem in exc.problems:
            err_console.print(f"{file}: {problem}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    console.print(
        f"{file}: ok ({len(config.apps)} app(s), {len(config.environments)} environment(s))"
    )


def _print_urls(settings: Settings) -> None:
    console.print(f"Temporal     127.0.0.1:{settings.temporal_port}")
    console.print(f"Temporal UI  {settings.temporal_ui_url}")
    console.print(f"Baton API    {settings.api_url}")
    console.print(f"Data         {settings.home}")


@dev_app.command("up")
def dev_up(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="start in the background")] = False,
) -> None:
    """Start Temporal, Baton's worker and API on 127.0.0.1; Ctrl-C stops them."""
    stack = Stack()
    started = stack.up()
    console.print(f"started: {', '.join(started) or 'nothing (already running)'}")
    _print_urls(stack.settings)
    if detach:
        console.print("stop with `baton dev down`")
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    console.print("Ctrl-C stops everything")
    try:
        while all(pid is not None for pid in stack.status().values()):
            time.sleep(1)
        dead = [name for name, pid in stack.status().items() if pid is None]
        err_console.print(f"{', '.join(dead)} exited: see {stack.log_dir}")
    except KeyboardInterrupt:
        pass
    finally:
        stack.down()
        console.print("stopped")


@dev_app.command("status")
def dev_status() -> None:
    """Show which services of the embedded stack run; exit 1 when any is down."""
    stack = Stack()
    status = stack.status()
    for name, pid in status.items():
        console.print(f"{name:<10} {f'running (pid {pid})' if pid else 'stopped'}")
    if any(pid is None for pid in status.values()):
        raise typer.Exit(1)
    _print_urls(stack.settings)


@dev_app.command("down")
def dev_down() -> None:
    """Stop the embedded stack started with `baton dev up --detach`."""
    stopped = Stack().down()
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except BatonError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
