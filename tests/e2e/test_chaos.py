"""Webhooks are hints: a PR opened and merged while the API was down (its deliveries lost) is
carried to prod once the API starts again, by the reconciler the API runs when it starts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from temporalio.client import Client

from baton.temporal import WorkflowTypes
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


def readings(stack: E2EStack) -> int:
    """Reconcile runs that completed (each reads the forge once)."""

    async def count(client: Client) -> int:
        query = f"WorkflowType = '{WorkflowTypes.RECONCILE}' AND ExecutionStatus = 'Completed'"
        return (await client.count_workflows(query)).count

    return stack.run(count)


def test_a_pr_opened_and_merged_while_the_api_was_down_goes_to_prod(stack: E2EStack) -> None:
    eventually(lambda: readings(stack), what="the reading the API's start asked for")
    stack.kill("api")
    change, pr = stack.open_pr("missed-while-down")
    merge = stack.forge("bob").merge_pull_request("sample-app", pr.number, pr.head_sha)
    lost = [d for d in stack.forge().list_deliveries() if d.event == "pull_request"]
    assert lost and all(not d.delivered for d in lost)  # nobody was there to take them

    assert stack.stack.up() == ["api"]
    eventually(lambda: stack.detail(change), timeout=120, what=f"{change} to exist")
    detail = stack.wait(change, gate_is("approval", "staging"))
    assert detail.change.merge_commit == merge
    assert stack.baton("approve", change, "--env", "staging", user="carol").returncode == 0
    stack.wait(change, gate_is("approval", "prod"))
    for approver in ("carol", "dave"):
        assert stack.baton("approve", change, "--env", "prod", user=approver).returncode == 0
    detail = stack.wait(change, lambda d: d.change.state == "completed")
    for env in ENVIRONMENTS:
        assert version(stack.config.environment(env).verify.url)["commit"] == merge
    gitops = stack.forge().list_pull_requests("gitops")
    assert len([p for p in gitops if p.head_branch.endswith(merge[:12])]) == len(ENVIRONMENTS)
    assert f"sample-app#{pr.number} closed: signalled {change}" in acted(stack)


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
