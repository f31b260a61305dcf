"""EnvironmentRollout's decisions on a real Temporal server, with its side effects replaced.

The activities here stand in for the deploy activities by name, so the workflow's gates (approval
policy through Updates, exact-revision sync through signals) and its rollback saga are tested
without a cluster. `world` scripts what the stand-ins report; each test starts from a fresh one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import activity
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities import context, deploy
from activities.deploy import (
    CloseInput,
    MergeInput,
    ProposeInput,
    Revert,
    RevertInput,
    SyncCheckInput,
    VerifyInput,
)
from activities.errors import application_error, typed_errors
from baton.cluster.kubernetes import ClusterForbidden
from baton.config import (
    AppConfig,
    ApprovalPolicy,
    EnvironmentConfig,
    FreezeWindow,
    SecurityApprovals,
    SyncConfig,
    VerifyConfig,
)
from baton.errors import BatonError
from baton.forges.base import HeadChanged
from baton.models import (
    Decision,
    ForgeReview,
    Gate,
    GateKind,
    GitOpsPullRequest,
    Rendered,
    RolloutInput,
    RolloutResult,
    RolloutStatus,
    SyncEvent,
    SyncOutcome,
)
from baton.temporal import TaskQueues
from tests.conftest import at_gate, until
from tests.fakes.records import fake_artifact, fake_rendered
from workflows.rollout import EnvironmentRollout

OLD, M, CHILD, HEAD = "a" * 40, "b" * 40, "c" * 40, "d" * 40
REVERT, REVERT_HEAD, PREVIOUS, COMMIT = "e" * 40, "9" * 40, "8" * 40, "f" * 40


@dataclass
class World:
    """What the stand-in activities report, and what they were asked to do."""

    polled_synced: set[str] = field(default_factory=set)  # commits check_sync reports synced
    bad_versions: set[str] = field(default_factory=set)  # commits whose verification fails
    first_deploy: bool = False  # the revert removes the app: nothing ran before
    reconcile_fails: bool = False
    poll_error: str | None = None  # a cluster configuration error check_sync raises
    rolling_out: str | None = None  # the Deployments are still rolling out: the status says so
    closed: list[str] = field(default_factory=list)
    merged: list[int] = field(default_factory=list)
    reconciles: int = 0
    verified: list[VerifyInput] = field(default_factory=list)
    sensitive: list[str] = field(default_factory=list)  # what render reports as sensitive
    bodies: list[str] = field(default_factory=list)  # GitOps PR bodies proposed
    moved_head: str | None = None  # someone pushed to the GitOps PR: its head is now this
    rerendered: tuple[str, list[str]] | None = None  # Baton moved it: content hash, sensitive
    render_error: BatonError | None = None  # what render_environment raises
    running_unverifiable: bool = False  # verification does not answer for the running version
    checked_running: int = 0


world = World()


@pytest.fixture(autouse=True)
def fresh_world() -> None:
    global world
    world = World()


@activity.defn(name="render_environment")
@typed_errors
async def render_environment(input: RolloutInput) -> Rendered:
    if world.render_error:
        raise world.render_error
    return fake_rendered(input, world.sensitive)


@activity.defn(name="propose_gitops_change")
async def propose(input: ProposeInput) -> GitOpsPullRequest:
    world.bodies.append(input.body)
    return GitOpsPullRequest(
        number=7,
        url="http://forge/gitops/pulls/7",
        head_branch="baton/web/prod/ffffffffffff",
        head_sha=HEAD,
    )


@activity.defn(name="merge_gitops_pr")
async def merge(input: MergeInput) -> str:
    if world.moved_head and input.pr.head_sha != world.moved_head:
        # What the merge activity reports when the forge refuses: HeadChanged with its facts.
        hash, sensitive = world.rerendered or (None, None)
        moved = HeadChanged(
            "gitops",
            input.pr.number,
            input.pr.head_sha,
            world.moved_head,
            content_hash=hash,
            sensitive=sensitive,
        )
        raise application_error(moved)
    world.merged.append(input.pr.number)
    return REVERT if input.pr.head_branch.endswith("-revert") else M


@activity.defn(name="close_gitops_pr")
async def close(input: CloseInput) -> None:
    world.closed.append(input.reason)


@activity.defn(name="revert_gitops_change")
async def revert(input: RevertInput) -> Revert:
    assert input.revision == M and "Baton-Rollout: rollout/test/" in input.body
    pr = GitOpsPullRequest(
        number=8,
        url="http://forge/gitops/pulls/8",
        head_branch="baton/web/prod/ffffffffffff-revert",
        head_sha=REVERT_HEAD,
    )
    if world.first_deploy:
        return Revert(pr=pr, removed=True)
    return Revert(pr=pr, previous_commit=PREVIOUS)


@activity.defn(name="is_descendant")
async def is_descendant(input: SyncCheckInput) -> bool:
    return input.merged_revision == M and input.revision in (M, CHILD)


@activity.defn(name="request_reconcile")
async def request_reconcile(input: RolloutInput) -> None:
    world.reconciles += 1
    if world.reconcile_fails:
        raise ApplicationError(
            "forbidden: grant Baton patch on gitrepositories", non_retryable=True
        )


@activity.defn(name="check_sync")
async def check_sync(input: SyncCheckInput) -> SyncOutcome:
    """Synced by polling only for the commits the test says; a look that confirms a sync event
    (`revision` set) agrees with the event unless the Deployments are still rolling out."""
    await asyncio.sleep(0.2)
    if world.poll_error:
        raise ApplicationError(world.poll_error, type="ClusterConfigError", non_retryable=True)
    if world.rolling_out:
        raise ApplicationError(f"not synced yet: {world.rolling_out}", type="NotSynced")
    if input.revision is not None:
        return SyncOutcome(synced=True, revision=input.revision, reason="Ready")
    if input.merged_revision in world.polled_synced:
        return SyncOutcome(
            synced=True, revision=input.merged_revision, reason="ReconciliationSucceeded"
        )
    raise ApplicationError("not synced yet: applied revision is aaaaaaaaaaaa", type="NotSynced")


@activity.defn(name="verify_endpoint")
async def verify(input: VerifyInput) -> SyncOutcome:
    world.verified.append(input)
    if input.removed:
        return SyncOutcome(synced=True, message="ConnectError: connection refused")
    commit = input.commit or input.rollout.artifact.commit
    if commit in world.bad_versions:
        return SyncOutcome(synced=False, message=f"/version does not report {commit[:12]}")
    return SyncOutcome(synced=True, revision=commit, message="200 ok")


@activity.defn(name="verify_running")
async def verify_running(input: RolloutInput) -> SyncOutcome:
    world.checked_running += 1
    if world.running_unverifiable:
        return SyncOutcome(
            synced=False,
            reason="verification is broken",
            message="verification is broken: http://127.0.0.1:1/version does not answer for the "
            "running version",
        )
    return SyncOutcome(synced=True, revision=PREVIOUS, reason="verified")


@activity.defn(name="gitops_head")
async def gitops_head(input: RolloutInput) -> str:
    return M


DEPLOY_STAND_INS = [
    render_environment,
    propose,
    merge,
    close,
    revert,
    is_descendant,
    request_reconcile,
    check_sync,
    verify,
    verify_running,
    gitops_head,
]
"""The deploy queue's activities of a rollout, stood in for as this module's world says."""


@pytest.fixture
async def workers(temporal_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    client = temporal_env.client
    deploy = Worker(client, task_queue=TaskQueues.DEPLOY, activities=DEPLOY_STAND_INS)
    flows = Worker(client, task_queue=TaskQueues.WORKFLOWS, workflows=[EnvironmentRollout])
    async with deploy, flows:
        yield client


def rollout_input(
    required: int = 2,
    allow_self: bool = False,
    production: bool = False,
    sync_timeout_s: int = 600,
    freeze: list[FreezeWindow] = (),
    security: SecurityApprovals | None = None,
) -> RolloutInput:
    app = AppConfig(name="web", repo="web", image="web", chart="chart")
    env = EnvironmentConfig(
        name="prod",
        namespace="prod",
        production=production,
        approvals=ApprovalPolicy(
            required=required,
            approvers=["alice", "carol", "dave"],
            allow_self_approval=allow_self,
            security=security or SecurityApprovals(),
        ),
        sync=SyncConfig(timeout_s=sync_timeout_s),
        verify=VerifyConfig(url="http://127.0.0.1:1/version", expected_body="{commit}"),
        freeze=list(freeze),
    )
    return RolloutInput(
        change_id="change/web/1",
        app=app,
        environment=env,
        artifact=fake_artifact("web", COMMIT),
        author="alice",
    )


async def start(client: Client, input: RolloutInput) -> WorkflowHandle:
    return await client.start_workflow(
        EnvironmentRollout.run,
        input,
        id=f"rollout/test/{uuid.uuid4()}",
        task_queue=TaskQueues.WORKFLOWS,
    )


async def wait_for_gate(handle: WorkflowHandle, kind: GateKind) -> None:
    await at_gate(handle, kind, RolloutStatus)


async def wait_for_stage(handle: WorkflowHandle, name: str) -> None:
    await until(
        lambda: handle.query(EnvironmentRollout.status),
        lambda status: any(stage.name == name for stage in status.timeline),
        f"{handle.id} at its {name} stage",
    )


async def notes_when(handle: WorkflowHandle, count: int) -> RolloutStatus:
    """The rollout's status once its timeline holds `count` notes: what it said it ignored."""
    return await until(
        lambda: handle.query(EnvironmentRollout.status),
        lambda status: sum(s.name == "note" for s in status.timeline) >= count,
        f"{handle.id} to note {count} thing(s)",
    )


def stages(status) -> dict[str, str]:
    return {s.name: s.outcome for s in status.timeline if s.name != "note"}


async def ui_details(handle: WorkflowHandle) -> str:
    """The markdown the Temporal UI shows for the workflow (its current details)."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def synced(handle: WorkflowHandle) -> RolloutResult:
    """The rollout's result once it reached the sync gate and its merge commit synced."""
    await wait_for_gate(handle, "sync")
    await handle.signal(EnvironmentRollout.sync_event, SyncEvent(revision=M, state="ready"))
    return await handle.result()


async def refused(handle: WorkflowHandle, user: str) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update(EnvironmentRollout.approve, Decision(user=user))
    return info.value.cause.message


async def test_prod_needs_two_distinct_approvers_and_refuses_author(workers: Client) -> None:
    handle = await start(workers, rollout_input())
    await wait_for_gate(handle, "approval")

    assert "alice is the change's author" in await refused(handle, "alice")
    assert "mallory may not approve prod" in await refused(handle, "mallory")
    assert await handle.execute_update(EnvironmentRollout.approve, Decision(user="carol"))
    assert "carol has already approved prod" in await refused(handle, "carol")

    status = await handle.query(EnvironmentRollout.status)
    assert status.gate.approved_by == ["carol"] and status.gate.waiting_on == ["dave"]
    await handle.execute_update(EnvironmentRollout.approve, Decision(user="dave"))

    result = await synced(handle)
    assert result.outcome == "deployed"
    assert [a.user for a in result.approvals] == ["carol", "dave"]
    assert result.revision == M


async def test_an_approval_beyond_the_required_count_is_not_counted(workers: Client) -> None:
    handle = await start(workers, rollout_input(required=2, allow_self=True))
    await wait_for_gate(handle, "approval")

    # Three approvals at once: they can all pass the validator before the first is counted.
    answers = await asyncio.gather(
        *(
            handle.execute_update(EnvironmentRollout.approve, Decision(user=user))
            for user in ("carol", "dave", "alice")
        ),
        return_exceptions=True,
    )

    texts = sorted(
        a.cause.message if isinstance(a, WorkflowUpdateFailedError) else a for a in answers
    )
    assert sorted(t[-5:] for t in texts if t.endswith("/2)")) == ["(1/2)", "(2/2)"], texts
    (third,) = [t for t in texts if not t.endswith("/2)")]
    assert third.endswith("is not needed") or "not waiting for approval" in third, texts
    result = await synced(handle)
    assert len(result.approvals) == 2, result.approvals


async def test_a_broken_verification_stops_the_rollout_before_its_gitops_pr(
    workers: Client,
) -> None:
    world.running_unverifiable = True
    handle = await start(workers, rollout_input())

    result = await handle.result()

    assert (result.outcome, result.gitops_pr, result.revision) == ("failed", None, None)
    assert result.reason == (
        "verification is broken: http://127.0.0.1:1/version does not answer for the running version"
    )
    assert result.rollback is None and world.merged == [] and world.verified == []
    status = await handle.query(EnvironmentRollout.status)
    assert stages(status)["check verification"] == "failed"
    assert "gitops pull request" not in stages(status)


async def test_rejection_stops_the_rollout_and_closes_the_gitops_pr(workers: Client) -> None:
    handle = await start(workers, rollout_input())
    await wait_for_gate(handle, "approval")
    await handle.execute_update(EnvironmentRollout.reject, Decision(user="dave", comment="not now"))
    result = await handle.result()
    assert result.outcome == "rejected" and "dave" in result.reason
    assert world.closed == ["rejected"] and result.rollback is None


async def test_superseded_before_the_merge_closes_the_gitops_pr(workers: Client) -> None:
    handle = await start(workers, rollout_input())
    await wait_for_gate(handle, "approval")
    await handle.signal(EnvironmentRollout.supersede, "change/web/2")
    result = await handle.result()
    assert (result.outcome, result.reason) == ("superseded", "superseded by change/web/2")
    assert world.closed == ["superseded"] and world.merged == []
    status = await handle.query(EnvironmentRollout.status)
    assert stages(status)["approval"] == "superseded"


async def test_superseded_after_the_merge_finishes_first(workers: Client) -> None:
    handle = await start(workers, rollout_input(required=0))
    await wait_for_gate(handle, "sync")
    await handle.signal(EnvironmentRollout.supersede, "change/web/2")
    await handle.signal(EnvironmentRollout.sync_event, SyncEvent(revision=M, state="ready"))
    result = await handle.result()
    assert result.outcome == "deployed" and world.closed == []
    notes = [
        s.detail
        for s in (await handle.query(EnvironmentRollout.status)).timeline
        if s.name == "note"
    ]
    assert "change/web/2 is newer, but this rollout merged already: it finishes first" in notes


async def test_sync_gate_ignores_older_revisions_and_accepts_descendants(workers: Client) -> None:
    handle = await start(workers, rollout_input(required=0))
    await wait_for_gate(handle, "sync")
    await handle.signal(EnvironmentRollout.sync_event, SyncEvent(revision=OLD, state="ready"))
    status = await notes_when(handle, 1)  # the event was judged, and ignored
    notes = [s.detail for s in status.timeline if s.name == "note"]
    assert notes == [f"ignored sync event for older revision {OLD[:12]}"]
    assert status.gate is not None and status.gate.kind == "sync"
    await handle.signal(EnvironmentRollout.sync_event, SyncEvent(revision=CHILD, state="ready"))
    result = await handle.result()
    assert result.outcome == "deployed"


async def test_failed_sync_of_merge_commit_fails_with_reason(workers: Client) -> None:
    handle = await start(workers, rollout_input(required=0))
    await wait_for_gate(handle, "sync")
    event = SyncEvent(revision=M, state="failed", reason="HealthCheckFailed", message="not ready")
    await handle.signal(EnvironmentRollout.sync_event, event)
    await wait_for_stage(handle, "rollback: sync")
    await handle.signal(EnvironmentRollout.sync_event, SyncEvent(revision=REVERT, state="ready"))
    result = await handle.result()
    assert result.outcome == "failed"
    assert result.reason.startswith("sync failed: HealthCheckFailed: not ready; ")
    assert result.reason.endswith(f"rolled back to {PREVIOUS[:12]} (GitOps PR #8)")
    assert result.rollback.outcome == "rolled back" and result.rollback.revert_revision == REVERT
    assert world.merged == [7, 8] and world.reconciles == 2
    assert world.verified[-1].commit == PREVIOUS and world.verified[-1].rolled_back_from == COMMIT
    status = await handle.query(EnvironmentRollout.status)
    assert stages(status) == {
        "render": "succeeded",
        "check verification": "succeeded",
        "gitops pull request": "succeeded",
        "merge": "succeeded",
        "sync": "failed",
        "rollback: revert PR": "succeeded",
        "rollback: merge": "succeeded",
        "rollback: sync": "succeeded",
        "rollback: verify": "succeeded",
    }


async def test_forge_review_of_a_stale_head_does_not_count(workers: Client) -> None:
    handle = await start(workers, rollout_input(required=1))
    await wait_for_gate(handle, "approval")
    await handle.signal(
        EnvironmentRollout.forge_review, ForgeReview(user="carol", approved=True, commit=OLD)
    )
    await handle.signal(
        EnvironmentRollout.forge_review, ForgeReview(user="alice", approved=True, commit=HEAD)
    )
    status = await notes_when(handle, 2)  # both reviews were judged
    assert status.gate is not None and status.gate.kind == "approval" and status.approvals == []
    notes = [s.detail for s in status.timeline if s.name == "note"]
    assert any("not the PR's head" in n for n in notes)
    assert any("alice is the change's author" in n for n in notes)
    await handle.signal(
        EnvironmentRollout.forge_review, ForgeReview(user="dave", approved=True, commit=HEAD)
    )
    assert (await synced(handle)).approvals[0].source == "forge"


async def test_a_forge_review_by_a_commit_author_does_not_count(workers: Client) -> None:
    """carol's forge login wrote a commit of the change (the change's authors say so)."""
    authored = rollout_input(required=1).model_copy(update={"authors": ["alice", "carol"]})
    handle = await start(workers, authored)
    await wait_for_gate(handle, "approval")
    await handle.signal(
        EnvironmentRollout.forge_review, ForgeReview(user="carol", approved=True, commit=HEAD)
    )
    status = await notes_when(handle, 1)
    assert status.approvals == [] and status.gate is not None
    assert status.gate.waiting_on == ["dave"]
    [note] = [s.detail for s in status.timeline if s.name == "note"]
    assert note.startswith(
        "review by carol not counted: carol is an author of the change's commits and prod's "
        "policy forbids self-approval"
    )


async def test_an_approval_dismissed_while_frozen_is_needed_again_before_the_merge(
    workers: Client,
) -> None:
    """carol's forge approval satisfies the round, a freeze holds the merge, and meanwhile her
    review is dismissed on the forge: past the freeze, the rollout waits for another approval."""
    begins = datetime.now(UTC) + timedelta(seconds=10)  # after the approval gate is reached
    freeze = FreezeWindow(name="release freeze", start=begins, end=begins + timedelta(hours=1))
    handle = await start(workers, rollout_input(required=1, freeze=[freeze]))
    await wait_for_gate(handle, "approval")
    await until(lambda: datetime.now(UTC), lambda now: now > begins, "the freeze to begin")
    carol = ForgeReview(user="carol", approved=True, commit=HEAD)
    await handle.signal(EnvironmentRollout.forge_review, carol)
    await wait_for_gate(handle, "freeze")

    dismissed = carol.model_copy(update={"dismissed": True})
    await handle.signal(EnvironmentRollout.forge_review, dismissed)
    await notes_when(handle, 1)
    await handle.execute_update(
        EnvironmentRollout.override_freeze, Decision(user="dave", comment="hotfix")
    )

    await wait_for_gate(handle, "approval")
    status = await handle.query(EnvironmentRollout.status)
    assert status.approvals == [] and status.gate is not None
    assert status.gate.description == "0/1 approvals for prod"
    await handle.execute_update(EnvironmentRollout.approve, Decision(user="dave"))
    result = await synced(handle)
    assert result.outcome == "deployed"
    assert [a.user for a in result.approvals] == ["dave"]
    status = await handle.query(EnvironmentRollout.status)
    assert [(s.outcome, s.detail) for s in status.timeline if s.name == "approval"] == [
        ("succeeded", "approved by carol"),
        ("succeeded", "approved by dave"),
    ]


async def test_failed_verification_rolls_back_to_the_previous_version(workers: Client) -> None:
    world.polled_synced = {M, REVERT}
    world.bad_versions = {COMMIT}
    handle = await start(workers, rollout_input(required=0))
    result = await handle.result()
    assert result.outcome == "failed"
    assert result.reason == (
        f"verification failed: /version does not report {COMMIT[:12]}; "
        f"rolled back to {PREVIOUS[:12]} (GitOps PR #8)"
    )
    assert [v.commit for v in world.verified] == [None, PREVIOUS]
    assert result.rollback.cause.startswith("verification failed")
    details = await ui_details(handle)
    assert f"**failed**: verification failed: /version does not report {COMMIT[:12]}" in details
    assert "Revert PR: [#8](http://forge/gitops/pulls/8)" in details
    assert "✅ rollback: verify 200 ok" in details


async def test_rolling_back_a_first_deploy_says_the_app_was_removed(workers: Client) -> None:
    world.polled_synced = {M, REVERT}
    world.bad_versions = {COMMIT}
    world.first_deploy = True
    handle = await start(workers, rollout_input(required=0))
    result = await handle.result()
    assert result.outcome == "failed"
    assert result.reason == (
        f"verification failed: /version does not report {COMMIT[:12]}; "
        "rolled back: web removed from prod (its first deploy there; GitOps PR #8)"
    )
    assert result.rollback.outcome == "rolled back" and result.rollback.removed
    check = world.verified[-1]
    assert (check.commit, check.rolled_back_from, check.removed) == (None, COMMIT, True)


async def test_prod_revert_waits_for_its_own_approvals(workers: Client) -> None:
    handle = await start(workers, rollout_input(required=2, production=True))
    await wait_for_gate(handle, "approval")
    for user in ("carol", "dave"):
        await handle.execute_update(EnvironmentRollout.approve, Decision(user=user))
    await wait_for_gate(handle, "sync")
    await handle.signal(
        EnvironmentRollout.sync_event,
        SyncEvent(revision=M, state="failed", reason="HealthCheckFailed"),
    )
    await wait_for_gate(handle, "approval")

    status = await handle.query(EnvironmentRollout.status)
    assert status.gate.description == "0/2 approvals to roll back prod"
    assert status.rollback.revert_pr.number == 8 and world.merged == [7]
    assert "alice is the change's author" in await refused(handle, "alice")
    await handle.signal(
        EnvironmentRollout.forge_review,
        ForgeReview(user="carol", approved=True, commit=REVERT_HEAD),
    )
    world.polled_synced = {REVERT}
    await handle.execute_update(EnvironmentRollout.approve, Decision(user="dave"))

    result = await handle.result()
    assert result.outcome == "failed" and result.reason.endswith("(GitOps PR #8)")
    assert [a.user for a in result.approvals] == ["carol", "dave"]
    assert [(a.user, a.source) for a in result.rollback.approvals] == [
        ("carol", "forge"),
        ("dave", "baton"),
    ]
    assert world.merged == [7, 8]


async def test_rejected_prod_revert_is_closed_and_the_reason_says_so(workers: Client) -> None:
    handle = await start(workers, rollout_input(required=1, production=True))
    await wait_for_gate(handle, "approval")
    await handle.execute_update(EnvironmentRollout.approve, Decision(user="carol"))
    await wait_for_gate(handle, "sync")
    await handle.signal(
        EnvironmentRollout.sync_event,
        SyncEvent(revision=M, state="failed", reason="HealthCheckFailed"),
    )
    await wait_for_gate(handle, "approval")
    await handle.execute_update(EnvironmentRollout.reject, Decision(user="dave", comment="fix fwd"))
    result = await handle.result()
    assert result.reason == (
        "sync failed: HealthCheckFailed; rollback rejected by dave: revert PR closed"
    )
    assert result.rollback.outcome == "rejected" and world.closed == ["rollback rejected"]
    assert world.merged == [7]


async def test_a_revert_that_fails_to_sync_says_the_rollback_failed(workers: Client) -> None:
    handle = await start(workers, rollout_input(required=0))
    await wait_for_gate(handle, "sync")
    await handle.signal(
        EnvironmentRollout.sync_event,
        SyncEvent(revision=M, state="failed", reason="HealthCheckFailed"),
    )
    await wait_for_stage(handle, "rollback: sync")
    await handle.signal(
        EnvironmentRollout.sync_event,
        SyncEvent(revision=REVERT, state="failed", reason="BuildFailed", message="bad YAML"),
    )
    result = await handle.result()
    assert result.reason == (
        "sync failed: HealthCheckFailed; rollback failed: sync failed: BuildFailed: bad YAML"
    )
    assert result.rollback.outcome == "failed"
    assert "rollback: verify" not in stages(await handle.query(EnvironmentRollout.status))


async def test_sync_timeout_is_durable_and_names_the_last_status(workers: Client) -> None:
    world.polled_synced = {REVERT}
    handle = await start(workers, rollout_input(required=0, sync_timeout_s=3))
    result = await handle.result()
    assert result.reason.startswith(
        "sync timed out: not synced within 3s; last seen: not synced yet: applied revision is "
        "aaaaaaaaaaaa; rolled back to"
    ), result.reason


async def test_cluster_configuration_error_fails_the_sync_gate_at_once(workers: Client) -> None:
    world.poll_error = "cannot use the cluster: kustomizations is forbidden: grant Baton get"
    handle = await start(workers, rollout_input(required=0))
    result = await handle.result()
    assert result.reason.startswith(f"sync failed: {world.poll_error}; rollback failed: ")


async def test_failed_reconcile_request_is_noted_and_does_not_fail_the_rollout(
    workers: Client,
) -> None:
    world.reconcile_fails = True
    world.polled_synced = {M}
    handle = await start(workers, rollout_input(required=0))
    result = await handle.result()
    assert result.outcome == "deployed" and world.reconciles == 1
    notes = [
        s.detail
        for s in (await handle.query(EnvironmentRollout.status)).timeline
        if s.name == "note"
    ]
    assert notes == [
        (
            "reconcile request failed (forbidden: grant Baton patch on gitrepositories): "
            "sync waits for local's own poll"
        )
    ]


def test_check_sync_fails_at_once_on_cluster_configuration_errors(monkeypatch) -> None:
    class ForbiddenCluster:
        def cluster(self, environment):
            raise ClusterForbidden("kustomizations is forbidden: grant Baton's user get (RBAC)")

    monkeypatch.setattr(context, "_current", ForbiddenCluster())
    with pytest.raises(ApplicationError) as info:
        ActivityEnvironment().run(
            deploy.check_sync, SyncCheckInput(rollout=rollout_input(), merged_revision=M)
        )
    assert info.value.non_retryable and info.value.type == "ClusterConfigError"
    assert "grant Baton's user get (RBAC)" in info.value.message


# Freeze windows


def frozen_for(seconds: float) -> list[FreezeWindow]:
    now = datetime.now(UTC)
    return [
        FreezeWindow(
            name="release freeze",
            start=now - timedelta(minutes=1),
            end=now + timedelta(seconds=seconds),
        )
    ]


async def test_break_glass_override_is_checked_and_recorded(workers: Client) -> None:
    handle = await start(workers, rollout_input(required=1, freeze=frozen_for(3600)))
    await wait_for_gate(handle, "freeze")

    async def override(user: str, reason: str) -> str:
        try:
            return await handle.execute_update(
                EnvironmentRollout.override_freeze, Decision(user=user, comment=reason)
            )
        except WorkflowUpdateFailedError as failed:
            return failed.cause.message

    assert await override("carol", " ") == "a freeze override needs a reason (--reason)"
    assert (await override("mallory", "hotfix")).startswith(
        "mallory may not override the freeze of prod: allowed approvers are"
    )
    assert "alice is the change's author" in await override("alice", "hotfix")
    assert await override("carol", "CVE-2026-1234 hotfix") == "carol overrode the freeze of prod"
    await wait_for_gate(handle, "approval")
    refused_again = await override("dave", "again")
    assert refused_again == "prod is not frozen for this rollout: nothing to override"
    await handle.execute_update(EnvironmentRollout.approve, Decision(user="dave"))
    result = await synced(handle)
    assert result.outcome == "deployed"
    assert (result.freeze_override.user, result.freeze_override.comment) == (
        "carol",
        "CVE-2026-1234 hotfix",
    )
    status = await handle.query(EnvironmentRollout.status)
    freeze = next(s for s in status.timeline if s.name == "freeze")
    assert freeze.detail == "overridden by carol: CVE-2026-1234 hotfix"


# Security-sensitive diffs


async def test_sensitive_diff_needs_the_extra_security_approval(workers: Client) -> None:
    world.sensitive = ["Role/prod/reader added"]
    security = SecurityApprovals(required=1, approvers=["erin"])
    handle = await start(workers, rollout_input(required=1, security=security))
    await wait_for_gate(handle, "approval")
    gate = (await handle.query(EnvironmentRollout.status)).gate
    assert gate.description == "0/2 approvals for prod (security-sensitive: Role/prod/reader added)"
    assert gate.waiting_on == ["carol", "dave", "erin"]
    assert "### ⚠ Security-sensitive" in world.bodies[0]
    assert "It needs 1 extra approval(s) from erin." in world.bodies[0]

    await handle.execute_update(EnvironmentRollout.approve, Decision(user="carol"))
    assert (await handle.query(EnvironmentRollout.status)).gate.waiting_on == ["erin"]
    assert await refused(handle, "dave") == (
        "the rendered diff for prod is security-sensitive: the remaining approval(s) must come "
        "from erin"
    )
    await handle.execute_update(EnvironmentRollout.approve, Decision(user="erin"))
    result = await synced(handle)
    assert result.outcome == "deployed"
    assert [a.user for a in result.approvals] == ["carol", "erin"]


async def test_without_a_sensitive_diff_security_approvers_are_not_needed(workers: Client) -> None:
    security = SecurityApprovals(required=1, approvers=["erin"])
    handle = await start(workers, rollout_input(required=1, security=security))
    await wait_for_gate(handle, "approval")
    assert "erin may not approve prod" in await refused(handle, "erin")
    await handle.execute_update(EnvironmentRollout.approve, Decision(user="carol"))
    await wait_for_gate(handle, "sync")
    assert "Security-sensitive" not in world.bodies[0]


# Approvals bound to content


async def test_a_moved_gitops_pr_head_voids_the_approvals_and_asks_again(workers: Client) -> None:
    moved = "7" * 40
    world.moved_head = moved
    handle = await start(workers, rollout_input(required=1))
    await wait_for_gate(handle, "approval")
    await handle.execute_update(EnvironmentRollout.approve, Decision(user="carol"))

    status = await until(
        lambda: handle.query(EnvironmentRollout.status),
        lambda seen: bool(seen.voided) and seen.gate is not None,
        f"{handle.id} to ask again",
    )
    assert status.gate.kind == "approval" and status.gate.head == moved
    assert [d.user for d in status.voided] == ["carol"] and status.approvals == []
    assert status.voided[0].head == HEAD  # what carol approved
    notes = [s.detail for s in status.timeline if s.name == "note"]
    assert notes == [
        (
            f"GitOps PR #7 moved from {HEAD[:12]} to {moved[:12]}: earlier approvals no longer "
            "count, asking again"
        )
    ]
    # The refused merge is no failure: the rollout goes on, waiting for approvals again.
    assert [(s.outcome, s.detail) for s in status.timeline if s.name == "merge"] == [
        ("skipped", f"not merged: the PR's head moved to {moved[:12]}, approvals asked again")
    ]
    with pytest.raises(WorkflowUpdateFailedError) as stale:
        await handle.execute_update(EnvironmentRollout.approve, Decision(user="dave", head=HEAD))
    assert f"GitOps PR head {HEAD[:12]}, the PR now holds {moved[:12]}" in stale.value.cause.message

    await handle.execute_update(EnvironmentRollout.approve, Decision(user="dave", head=moved))
    result = await synced(handle)
    assert result.outcome == "deployed" and world.closed == []
    assert [(a.user, a.head) for a in result.approvals] == [("dave", moved)]


async def test_a_render_again_on_a_moved_base_asks_for_approvals_of_the_new_content(
    workers: Client,
) -> None:
    moved, rendered = "7" * 40, "sha256:" + "e" * 64
    reason = "Secret/prod/db: data changed (Secret)"
    world.moved_head, world.rerendered = moved, (rendered, [reason])
    security = SecurityApprovals(required=1, approvers=["erin"])
    handle = await start(workers, rollout_input(required=1, security=security))
    await wait_for_gate(handle, "approval")
    await handle.execute_update(EnvironmentRollout.approve, Decision(user="carol"))

    status = await until(
        lambda: handle.query(EnvironmentRollout.status),
        lambda seen: bool(seen.voided) and seen.gate is not None,
        f"{handle.id} to ask again",
    )
    # The new render is security-sensitive: the gate asks for it, on its content.
    assert status.gate.content_hash == rendered and status.content_hash == rendered
    assert status.gate.required == 2 and reason in status.gate.description
    await handle.execute_update(
        EnvironmentRollout.approve, Decision(user="carol", content_hash=rendered)
    )
    await handle.execute_update(EnvironmentRollout.approve, Decision(user="erin", head=moved))
    result = await synced(handle)
    assert result.outcome == "deployed"
    assert [(a.user, a.content_hash) for a in result.approvals] == [
        ("carol", rendered),
        ("erin", rendered),
    ]


async def test_an_approval_of_other_rendered_content_is_refused(workers: Client) -> None:
    handle = await start(workers, rollout_input(required=1))
    await wait_for_gate(handle, "approval")
    status = await handle.query(EnvironmentRollout.status)
    seen = fake_rendered(rollout_input(), []).content_hash
    assert status.content_hash == seen and status.gate.content_hash == seen

    with pytest.raises(WorkflowUpdateFailedError) as stale:
        await handle.execute_update(
            EnvironmentRollout.approve, Decision(user="carol", content_hash="sha256:older")
        )
    assert stale.value.cause.type == "PolicyViolation"
    assert f"rendered content sha256:older, the PR now holds {seen}" in stale.value.cause.message
    await handle.execute_update(
        EnvironmentRollout.approve, Decision(user="carol", content_hash=seen, via="token")
    )
    result = await synced(handle)
    assert [(a.user, a.content_hash, a.via) for a in result.approvals] == [("carol", seen, "token")]


async def test_group_approvers_approve_with_the_groups_they_were_authenticated_with(
    workers: Client,
) -> None:
    input = rollout_input(required=1)
    policy = input.environment.approvals.model_copy(
        update={"approvers": ["group:release-managers"]}
    )
    input = input.model_copy(
        update={"environment": input.environment.model_copy(update={"approvals": policy})}
    )
    handle = await start(workers, input)
    await wait_for_gate(handle, "approval")
    assert "allowed approvers are group:release-managers" in await refused(handle, "carol")
    await handle.execute_update(
        EnvironmentRollout.approve, Decision(user="carol", groups=["release-managers"])
    )
    assert (await synced(handle)).approvals[0].groups == ["release-managers"]


async def test_the_gate_is_published_in_the_memo_for_readers_without_a_worker(
    workers: Client,
) -> None:
    handle = await start(workers, rollout_input(required=2))
    await wait_for_gate(handle, "approval")
    await handle.execute_update(EnvironmentRollout.approve, Decision(user="carol"))

    async def published() -> Gate | None:
        described = await handle.describe()
        if "gate" not in described.raw_info.memo.fields:
            return None
        return await described.memo_value("gate", type_hint=Gate)

    gate = await until(
        published, lambda g: g is not None and g.approved_by == ["carol"], "the gate in the memo"
    )
    assert gate.kind == "approval" and gate.waiting_on == ["dave"] and gate.head == HEAD
    await handle.execute_update(EnvironmentRollout.approve, Decision(user="dave"))
    await synced(handle)
    assert "gate" not in (await handle.describe()).raw_info.memo.fields
