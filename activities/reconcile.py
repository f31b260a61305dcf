"""The reconciler's activity: read the forge and act on the deliveries that never arrived."""

from __future__ import annotations

import asyncio
import json
import logging

from temporalio import activity

from activities.context import current
from activities.errors import typed_errors
from baton.ingress import Ingress
from baton.reconcile import Reconciler

log = logging.getLogger("baton.reconcile")


@activity.defn
@typed_errors
async def reconcile_forge() -> list[str]:
    """Compare every app's PRs and release branch head, and the GitOps PRs rollouts wait on,
    with what the workflows have seen, and act like the missed webhooks (`baton.reconcile`);
    one line per action, each also logged. The release heads it saw are kept as the record
    `reconcile:heads` in the shared store (`baton.store`) for the next reading, on any worker."""
    ctx = current()
    ingress = Ingress(activity.client(), ctx.config, ctx.settings, via="reconciler")
    delivery = f"reconciler:{activity.info().workflow_run_id}"
    records = ctx.stores.records
    kept = await asyncio.to_thread(records.load, "reconcile", "heads")
    heads = json.loads(kept) if kept is not None else {}
    actions = await Reconciler(ingress, ctx.forge, delivery, heads).run()
    # Kept only after a whole reading: a failed one is read again, head moves included.
    await asyncio.to_thread(records.save, "reconcile", "heads", json.dumps(heads).encode())
    for action in actions:
        log.info("reconciler acted: %s", action)
    return actions
