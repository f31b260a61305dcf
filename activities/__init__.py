"""Side effects, thin and idempotent, over the adapters in `baton/`; grouped by task queue."""

from collections.abc import Callable
from typing import Any

from activities.batch import read_release_batch
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
    verify_running,
)
from activities.forge import (
    change_authors,
    merged_pull_request,
    report_deployment,
    set_commit_status,
    update_change_comment,
)
from activities.images import propose_pin_bumps, refresh_mirrors
from activities.lane import is_running, join_lane, watch_holds
from activities.notify import send_notification
from activities.pipeline import (
    build_image,
    long_tests_result,
    publish_artifact,
    pull_request_checks,
    push_image,
    run_check,
    stage_candidate,
    start_long_tests,
    try_image,
)
from activities.reconcile import reconcile_forge
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
        watch_holds,
        send_notification,
        reconcile_forge,
    ],
    TaskQueues.BUILD: [
        run_check,
        build_image,
        try_image,
        push_image,
        stage_candidate,
        publish_artifact,
        start_long_tests,
        long_tests_result,
        pull_request_checks,
        refresh_mirrors,
        propose_pin_bumps,
        read_release_batch,
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
        verify_running,
    ],
}
