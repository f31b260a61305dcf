"""Side effects, thin and idempotent, over the adapters in `baton/`; grouped by task queue."""

from collections.abc import Callable
from typing import Any

from activities.deploy import (
    apply_manifests,
    check_sync,
    close_gitops_pr,
    gitops_head,
    is_descendant,
    merge_gitops_pr,
    propose_gitops_change,
    render_environment,
    request_reconcile,
    revert_gitops_change,
    verify_endpoint,
)
from activities.forge import (
    change_authors,
    merged_pull_request,
    report_deployment,
    set_commit_status,
    update_change_comment,
)
from activities.images import propose_pin_bumps, refresh_mirrors
from activities.lane import is_running, join_lane
from activities.notify import send_notification
from activities.pipeline import build_image, publish_artifact, run_check
from baton.temporal import TaskQueues

ACTIVITIES: dict[str, list[Callable[..., Any]]] = {
    TaskQueues.WORKFLOWS: [
        set_commit_status,
        merged_pull_request,
        change_authors,
        update_change_comment,
        report_deployment,
        join_lane,
        is_running,
        send_notification,
    ],
    TaskQueues.BUILD: [
        run_check,
        build_image,
        publish_artifact,
        refresh_mirrors,
        propose_pin_bumps,
    ],
    TaskQueues.DEPLOY: [
        render_environment,
        gitops_head,
        propose_gitops_change,
        merge_gitops_pr,
        close_gitops_pr,
        revert_gitops_change,
        is_descendant,
        request_reconcile,
        apply_manifests,
        check_sync,
        verify_endpoint,
    ],
}
