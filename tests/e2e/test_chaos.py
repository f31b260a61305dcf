"""Nothing is lost or done twice when processes die and dependencies go away: one change whose PR
is opened and merged while the API is down (its webhooks lost; the reconciler the API runs when
it starts makes up for them) survives worker kills during the build, a GitOps PR creation and a
sync wait, and a registry restart during CI's image steps, and reaches prod with exactly one
GitOps PR, deploy commit and image per environment.

Kills happen once the step is under way (its activity is in the history), so no kill depends on
how fast a step runs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from temporalio.client import Client, ScheduleOverlapPolicy
from temporalio.service import RPCError

from baton.temporal import RECONCILE_SCHEDULE, WorkflowTypes, pipeline_id, rollout_id
from tests.conftest import eventually
from tests.e2e.stack import ENVIRONMENTS, E2EStack, running_stack, version
from tests.e2e.test_change_flow import gate_is

pytestmark = pytest.mark.docker


def hourly(config: dict) -> None:
    """The Schedule's next run is an hour away: only the API's start can act in this test."""
    config["reconcile"] = {"interval": "1h"}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, base_image: str, docker_client
) -> Iterator[E2EStack]:
    with running_stack(tmp_path_factory.mktemp("baton"), base_image, hourly) as stack:
        yield stack


def read_every_app(stack: E2EStack) -> bool:
    """Whether a Reconcile run that completed read every app's repository (and so noted its
    release head, against which a later reading sees the head move)."""

    async def read(client: Client) -> bool:
        query = f"WorkflowType = '{WorkflowTypes.RECONCILE}' AND ExecutionStatus = 'Completed'"
        async for run in client.list_workflows(query):
            handle = client.get_workflow_handle(run.id, run_id=run.run_id, result_type=list[str])
            if not any("not read" in line for line in await handle.result()):
                return True
        return False

    return stack.run(read)


def reconcile_now(stack: E2EStack) -> None:
    """Run the reconciler's Schedule once more, after any reading under way."""

    async def trigger(client: Client) -> None:
        handle = client.get_schedule_handle(RECONCILE_SCHEDULE)
        await handle.trigger(overlap=ScheduleOverlapPolicy.BUFFER_ONE)

    stack.run(trigger)


def approve_through(stack: E2EStack, change: str) -> None:
    """Staging's one approval and prod's two, as in the demo's policy."""
    stack.wait(change, gate_is("approval", "staging"))
    assert stack.baton("approve", change, "--env", "staging", user="carol").returncode == 0
    stack.wait(change, gate_is("approval", "prod"))
    for approver in ("carol", "dave"):
        assert stack.baton("approve", change, "--env", "prod", user=approver).returncode == 0


def assert_delivered_once(stack: E2EStack, merge: str) -> None:
    """Each environment serves `merge` through exactly one GitOps PR and one deploy commit, from
    one image tag of it in the registry."""
    for env in ENVIRONMENTS:
        assert version(stack.config.environment(env).verify.url)["commit"] == merge
    gitops = stack.forge().list_pull_requests("gitops")
    mine = [p for p in gitops if p.head_branch.endswith(merge[:12])]
    assert sorted(p.head_branch.split("/")[2] for p in mine) == sorted(ENVIRONMENTS)
    assert all(p.state == "merged" for p in mine)
    log = subprocess.run(
        ["git", "log", "--format=%s", "main"],
        cwd=stack.forge().repo_path("gitops"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    deploys = [c for c in log if c.startswith(f"Deploy sample-app {merge[:12]}")]
    assert len(deploys) == len(ENVIRONMENTS)
    assert merge in stack.registry_tags("sample-app")


def started(stack: E2EStack, workflow_id: str, activity: str) -> bool:
    """Whether `workflow_id` has scheduled `activity` (running now, or done already)."""

    async def scheduled(client: Client) -> bool:
        try:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        except RPCError:
            return False
        return any(
            e.activity_task_scheduled_event_attributes.activity_type.name == activity
            for e in history.events
        )

    return stack.run(scheduled)


def waiting_for_registry(stack: E2EStack, ci: str) -> bool:
    """Whether a step of CI failed to reach the registry and waits for another attempt (the
    image push, or the build handing its log to the registry-backed store)."""
    registry = stack.config.registry.url

    async def pending(client: Client) -> bool:
        described = await client.get_workflow_handle(ci).describe()
        return any(
            registry in a.last_failure.message for a in described.raw_description.pending_activities
        )

    return stack.run(pending)


def crash_during(stack: E2EStack, service: str, workflow_id: str, activity: str) -> None:
    """Kill `service` once `activity` of `workflow_id` is under way, and start it again."""
    eventually(
        lambda: started(stack, workflow_id, activity),
        timeout=400,
        every=0.2,
        what=f"{activity} in {workflow_id}",
    )
    stack.kill(service)
    assert stack.stack.up() == [service]


def acted(stack: E2EStack) -> list[str]:
    """What every Reconcile run did (its result): the record of which path acted."""

    async def results(client: Client) -> list[str]:
        query = f"WorkflowType = '{WorkflowTypes.RECONCILE}' AND ExecutionStatus = 'Completed'"
        lines = []
        async for run in client.list_workflows(query):
            handle = client.get_workflow_handle(run.id, run_id=run.run_id, result_type=list[str])
            lines += await handle.result()
        return lines

    return stack.run(results)


def test_one_change_survives_crashes_and_a_registry_restart_delivering_everything_once(
    stack: E2EStack,
) -> None:
    # The reading the API's start asked for may have come before the stack made the apps'
    # repositories: one more, which notes their heads.
    reconcile_now(stack)
    eventually(lambda: read_every_app(stack), what="a reading of every app's repository")
    # The API dies; the PR is opened and merged meanwhile, its webhooks lost on the way. The
    # reconciler the API runs when it starts again makes up for them, within two minutes.
    stack.kill("api")
    change, pr = stack.open_pr("chaos")
    merge = stack.forge("bob").merge_pull_request("sample-app", pr.number, pr.head_sha)
    lost = [d for d in stack.forge().list_deliveries() if d.event == "pull_request"]
    assert lost and all(not d.delivered for d in lost)  # nobody was there to take them
    assert stack.stack.up() == ["api"]
    eventually(lambda: stack.detail(change), timeout=120, what=f"{change} to exist")
    done = f"sample-app#{pr.number} closed: signalled {change}"
    eventually(lambda: acted(stack), lambda lines: done in lines, what="the reconciler's record")

    ci = pipeline_id(change, "ci")
    crash_during(stack, "worker", ci, "build_image")
    # The registry goes away while CI's image steps run again: they wait for it.
    stack.kill("registry")
    eventually(lambda: waiting_for_registry(stack, ci), timeout=300, what="CI to wait")
    shown = stack.baton("changes", "show", change).stdout
    assert "waiting since" in shown and stack.config.registry.url in shown, shown
    assert stack.stack.up() == ["registry"]

    dev = rollout_id("sample-app", "dev", merge)
    crash_during(stack, "worker", dev, "propose_gitops_change")
    crash_during(stack, "worker", dev, "check_sync")
    approve_through(stack, change)
    detail = stack.wait(change, lambda d: d.change.state == "completed")
    assert detail.change.merge_commit == merge
    assert_delivered_once(stack, merge)
