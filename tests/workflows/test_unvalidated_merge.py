"""A pull request merged on a hosted forge while its validation failed or had not finished:
ChangeWorkflow notices, and `apps[].on_unvalidated_merge` decides (validate the merge commit
first, or stop). Same server, stand-ins and helpers as test_change.py."""

from __future__ import annotations

import pytest
from temporalio.client import Client, WorkflowHandle

from baton.models import ChangeInput, ChangePlan, ChangeStatus
from baton.temporal import TaskQueues, WorkflowTypes, change_id, initial_search_attributes
from tests.conftest import at_gate, until
from tests.workflows import test_change as change
from tests.workflows.test_change import head, merge_commit, pull_request, timeline
from tests.workflows.test_pipelines import APP, Steps

# test_change's fixtures: its workers and stand-ins on an isolated namespace.
client, closing, steps, fresh_world = (
    change.client,
    change.closing,
    change.steps,
    change.fresh_world,
)
LINT = "app.py:3:1: F401 'os' imported but unused"


async def open_change(client: Client, on_unvalidated_merge: str = "validate") -> WorkflowHandle:
    """Change 1 of an app with that policy, started as the API does (no environments)."""
    app = APP.model_copy(update={"on_unvalidated_merge": on_unvalidated_merge})
    input = ChangeInput(
        plan=ChangePlan(app=app, environments=[]),
        repo=app.repo,
        pr_number=1,
        title="change 1",
        author="alice",
        head_branch="feature-1",
        head_sha=head(1),
    )
    return await client.start_workflow(
        WorkflowTypes.CHANGE,
        input,
        id=change_id(app.name, 1),
        task_queue=TaskQueues.WORKFLOWS,
        search_attributes=initial_search_attributes(input),
        result_type=ChangeStatus,
    )


async def test_a_merge_before_validation_finished_validates_the_merge_commit_before_ci(
    client: Client, steps: Steps
) -> None:
    steps.held = {head(1)}
    handle = await open_change(client)
    await until(lambda: steps.ran(head(1)), bool, "the validation of the head to start")

    await pull_request(handle, "merged", merge_commit_sha=merge_commit(1))

    status = await handle.result()
    assert status.state == "completed"
    why = f"merged while the validation of {head(1)[:12]} had not finished"
    assert [(name, outcome) for name, outcome, _ in timeline(status)] == [
        (f"validate {head(1)[:12]}", "superseded"),
        ("note", "skipped"),
        (f"validate {merge_commit(1)[:12]}", "succeeded"),
        (f"integrate {merge_commit(1)[:12]}", "succeeded"),
    ]
    assert timeline(status)[1][2] == (
        f"{why}: validating the merge commit {merge_commit(1)[:12]} first"
    )
    pr_checks = steps.reported(merge_commit(1))
    assert pr_checks[:2] == [
        ("baton/pr", "pending", "PR pipeline running"),
        ("baton/pr", "success", "5 step(s) passed"),
    ]
    assert pr_checks[-1][:2] == ("baton/ci", "success")


async def merged_after_failed_lint(client: Client, steps: Steps, policy: str) -> ChangeStatus:
    """Change 1 under `policy`: its validation fails lint, then it is merged anyway."""
    steps.failing = {"lint": LINT}
    handle = await open_change(client, on_unvalidated_merge=policy)
    await at_gate(handle, "merge", ChangeStatus)
    await pull_request(handle, "merged", merge_commit_sha=merge_commit(1))
    return await handle.result()


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        ("stop", "had failed: stopped (apps[].on_unvalidated_merge: stop)"),
        ("validate", f"had failed, and the merge commit failed it: lint: {LINT}"),
    ],
)
async def test_a_merge_of_a_failed_validation_is_never_integrated(
    client: Client, steps: Steps, policy: str, reason: str
) -> None:
    status = await merged_after_failed_lint(client, steps, policy)

    assert (status.state, status.reason) == (
        "failed",
        f"merged while the validation of {head(1)[:12]} {reason}",
    )
    ran = steps.ran(merge_commit(1))
    assert "long_test" not in ran and "publish" not in ran and status.artifact is None
    if policy == "validate":
        assert timeline(status)[-1][:2] == (f"validate {merge_commit(1)[:12]}", "failed")
    else:
        assert ran == []
