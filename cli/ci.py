"""`baton ci`: how apps' release branches are integrated (`apps[].ci`).

Temporal and the configuration are imported by the command that runs (see cli.main).
"""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from baton.settings import Settings
from cli.images import ConfigFile

console = Console(soft_wrap=True)
ci_app = typer.Typer(help="How apps' release branches are integrated (apps[].ci).")


@ci_app.command("schedule")
def ci_schedule(config_file: ConfigFile = None) -> None:
    """Create or update each app's CI schedule (apps[].ci.schedule): the Temporal Schedule
    `ci-batch-<app>` integrating the commits on its release branch in one batch on that cron.
    Schedules of apps that no longer have one are deleted."""
    from temporalio.service import RPCError, RPCStatusCode

    from baton.config import load_config
    from baton.temporal import WorkflowTypes, ci_schedule_id, connect, put_schedule

    prefix = ci_schedule_id("")
    settings = Settings()
    path = config_file or settings.config_file()
    config = load_config(path)
    wanted = {ci_schedule_id(a.name): (a.name, a.ci.schedule) for a in config.apps if a.ci.schedule}

    async def apply() -> list[str]:
        client = await connect()
        for schedule_id, (app, cron) in wanted.items():
            await put_schedule(client, schedule_id, WorkflowTypes.CI_BATCH, cron, {"app": app})
        # Apps in the config by id (visibility lists a new schedule a moment late), others
        # (apps removed from the config) as listed.
        stale = {ci_schedule_id(a.name) for a in config.apps}
        stale |= {s.id async for s in await client.list_schedules() if s.id.startswith(prefix)}
        deleted = []
        for schedule_id in sorted(stale - wanted.keys()):
            try:
                await client.get_schedule_handle(schedule_id).delete()
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                continue
            deleted.append(schedule_id)
        return deleted

    deleted = asyncio.run(apply())
    for schedule_id, (_, cron) in wanted.items():
        console.print(f"schedule {schedule_id}: {cron} (UTC)", markup=False)
    for schedule_id in deleted:
        console.print(
            f"schedule {schedule_id}: deleted (no app has it as ci.schedule)", markup=False
        )
    if not wanted and not deleted:
        console.print(f"{path}: no app has ci.schedule", markup=False)
