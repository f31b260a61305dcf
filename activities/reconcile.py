"""The reconciler's activity: read the forge and act on the deliveries that never arrived."""

from __future__ import annotations

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
    one line per action, each also logged. The release heads it saw are kept in
    `$BATON_HOME/reconcile.json` for the next reading."""
    ctx = current()
    ingress = Ingress(activity.client(), ctx.config, ctx.settings, via="reconciler")
    delivery = f"reconciler:{activity.info().workflow_run_id}"
    state = ctx.settings.home / "reconcile.json"
    heads = json.loads(state.read_text()) if state.is_file() else {}
    actions = await Reconciler(ingress, ctx.forge, delivery, heads).run()
    # Kept only after a whole reading: a failed one is read again, head moves included.
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(heads))
    for action in actions:
        log.info("reconciler acted: %s", action)
    return actions
