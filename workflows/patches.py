"""The patches (`workflow.patched`) of Baton's workflows, taken through one marker by new runs.

Each `workflow.patched(id)` a run takes records a marker and, with it, an upsert of the
`TemporalChangeVersion` search attribute (sdk-core since temporalio/sdk-core#495): ten of each in
a rollout (88 history events, each workflow task that held some taking ~0.8 ms more of the
server's time per patch; bench.orchestration, issue 18). A run started on this code records one
marker, `BASELINE`, which stands for every patch in `COVERED`: `patched(id)` is true in such a
run with no marker of its own.

A run started before `BASELINE` existed replays as before: a replay answers false for a patch its
history lacks, and the SDK keeps a patch's first answer for the rest of the run (temporalio,
`_WorkflowInstanceImpl.workflow_patch`), so `BASELINE` stays false in a run that asked for a
patch before the upgrade, and each covered patch answers from its own marker. One that asks for
its first patch after the upgrade records `BASELINE` and takes every patch from then on, as it
would have taken each one asked for live. A patch added after `BASELINE` is not covered (runs that recorded
`BASELINE` did not take it): call `workflow.patched` for it, and `patched` refuses it.
"""

from __future__ import annotations

from temporalio import workflow

BASELINE = "baseline-2026-12"
"""The marker a run records at its first patch, standing for every patch in `COVERED`."""

COVERED = frozenset(
    {
        "approval-withdrawn",
        "approvals-capped",
        "approvals-follow-head",
        "candidates-beside-checks",
        "ci-failed-notice",
        "ci-schedule",
        "comment-handover",
        "commit-authors",
        "environment-clusters",
        "forge-deployments",
        "gate-cleared-at-end",
        "gate-memo",
        "image-beside-checks",
        "image-test-step",
        "lanes",
        "merge-waits-for-moved-head",
        "notifications",
        "pr-comment",
        "preflight-with-render",
        "promotion-graph",
        "publish-beside-push",
        "queued-after-grant",
        "reconcile-with-sync",
        "record-coalesced",
        "reopened-while-closing",
        "request-reconcile",
        "revert-approval-notice",
        "rollback",
        "search-attributes-split",
        "status-memo",
        "sync-event-confirmed",
        "unvalidated-merge",
        "verify-running-first",
    }
)
"""The patches of Baton's workflows when `BASELINE` was made: runs that record it take them all."""


def patched(patch_id: str) -> bool:
    """`workflow.patched(patch_id)` for a patch in `COVERED`: true in a run that records (or
    recorded) `BASELINE`, else the patch's own answer. Raises ValueError for any other patch
    (call `workflow.patched` for it)."""
    if patch_id not in COVERED:
        raise ValueError(
            f"patch {patch_id!r} is newer than {BASELINE}: call workflow.patched for it"
        )
    return workflow.patched(BASELINE) or workflow.patched(patch_id)
