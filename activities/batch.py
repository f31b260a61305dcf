"""The scheduled CI batch's activity: what on an app's release branch awaits integration."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.context import current
from activities.errors import typed_errors
from baton.batches import release_batch
from baton.models import ChangeInput, ChangePlan
from baton.temporal import batch_change_id


class BatchInput(BaseModel):
    """The app whose release branch a CI schedule integrates (`apps[].name`)."""

    app: str


@activity.defn
@typed_errors
async def read_release_batch(input: BatchInput) -> ChangeInput | None:
    """The change that integrates the commits on the app's release branch since the last
    integrated one (or the last one a batch change was started for), under the worker's
    configuration; None when there are none (or the app no longer has `ci.schedule`: its pushes
    and merges are integrated one by one again). Raises ConfigError when the configuration has
    no such app."""
    context = current()
    app = context.config.app(input.app)
    if app.ci.schedule is None:
        return None
    client, loop = activity.client(), asyncio.get_running_loop()

    def batched(sha: str) -> bool:
        started = _exists(client, batch_change_id(app.name, sha))
        return asyncio.run_coroutine_threadsafe(started, loop).result()

    batch = await asyncio.to_thread(
        release_batch, context.forge, context.workspace, app.repo, app.branch, batched
    )
    if batch is None:
        return None
    plan = ChangePlan.of(
        context.config,
        app.name,
        ui_url=context.settings.temporal_ui_url,
        namespace=activity.info().workflow_namespace or "default",
    )
    return ChangeInput(
        plan=plan,
        repo=app.repo,
        trigger="batch",
        batch=batch,
        title=batch.describe(),
        author=batch.commits[0].author,
        head_branch=batch.branch,
        head_sha=batch.head,
        base_branch=batch.branch,
    )


async def _exists(client: Client, workflow_id: str) -> bool:
    """Whether Temporal has a workflow `workflow_id`, running or closed (describe: strongly
    consistent, unlike a visibility query)."""
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True
