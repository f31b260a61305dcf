"""Shared parts of the workflow benchmarks (`orchestration`, `approval`, `inflight`).

Baton's real EnvironmentRollout runs on workers set up as `workers.main.build_workers` sets them
up (every Baton workflow on the workflows queue, the same activity concurrency and executor), with
each activity it calls replaced by a no-op stand-in of the same name and input type, the way
tests/workflows/test_rollout.py stands in for deploy steps: render, the GitOps PR, its merge, the
reconcile request, the sync poll and the verification answer at once and succeed. What remains is
Baton's orchestration: its workflow code, retry policies and timeouts, heartbeat timeouts, record
keeping (search attributes, memos, the UI's details), the PR comment keeper and the payloads it
sends. The rollout's input is what a change of `sample-app` under examples/baton.yaml passes.

The baselines are raw Temporal workflows (bench.raw) on the same Temporal dev server and the same
worker options. `python -m bench.rollouts --target HOST:PORT --kind baton|raw` serves one kind in
a process of its own (`inflight` measures its RSS); it prints `ready` once polling. With
`--wait` it prints `waiting` once set up and starts polling only once a line on stdin says so: it
can be started ahead of its turn.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.deploy import (
    MergeInput,
    ProposeInput,
    SyncCheckInput,
    VerifyInput,
)
from activities.forge import ChangeCommentInput, DeploymentInput
from activities.notify import NotifyInput
from baton.config import BatonConfig, load_config
from baton.models import (
    ChangePlan,
    GitOpsPullRequest,
    Rendered,
    RolloutInput,
    RolloutResult,
    SyncOutcome,
)
from baton.temporal import SearchAttributes, TaskQueues, WorkflowTypes, change_id, rollout_id
from baton.tools import PROJECT_ROOT
from bench import raw
from tests.fakes.records import fake_artifact, fake_rendered
from workers.main import MAX_CONCURRENT_ACTIVITIES, WORKFLOW_RUNNER
from workflows import WORKFLOWS

APP = "sample-app"
MERGED = "b" * 40  # the GitOps merge commit every stand-in merge returns
HEAD = "d" * 40

STARTED = raw.STARTED
"""Workflow id -> `time.monotonic()` when its merge stand-in started (this process)."""


# Stand-ins for the activities a rollout into dev or staging calls, by name: each answers at once,
# as a healthy forge and cluster would (nothing is closed, reverted or checked for descent).


@activity.defn(name="render_environment")
async def render_environment(input: RolloutInput) -> Rendered:
    return fake_rendered(input)


@activity.defn(name="verify_running")
async def verify_running(input: RolloutInput) -> SyncOutcome:
    return SyncOutcome(synced=True, revision="8" * 40, reason="verified")


@activity.defn(name="propose_gitops_change")
async def propose_gitops_change(input: ProposeInput) -> GitOpsPullRequest:
    env, app = input.rollout.environment.name, input.rollout.app.name
    return GitOpsPullRequest(
        number=7,
        url="http://forge/gitops/pulls/7",
        head_branch=f"baton/{app}/{env}/{input.rollout.artifact.commit[:12]}",
        head_sha=HEAD,
    )


@activity.defn(name="merge_gitops_pr")
async def merge_gitops_pr(input: MergeInput) -> str:
    STARTED[activity.info().workflow_id] = time.monotonic()
    return MERGED


@activity.defn(name="request_reconcile")
async def request_reconcile(input: RolloutInput) -> None:
    pass


@activity.defn(name="check_sync")
async def check_sync(input: SyncCheckInput) -> SyncOutcome:
    revision = input.revision or input.merged_revision
    return SyncOutcome(synced=True, revision=revision, reason="ReconciliationSucceeded")


@activity.defn(name="verify_endpoint")
async def verify_endpoint(input: VerifyInput) -> SyncOutcome:
    commit = input.commit or input.rollout.artifact.commit
    return SyncOutcome(synced=True, revision=commit, message="200 ok")


@activity.defn(name="update_change_comment")
async def update_change_comment(input: ChangeCommentInput) -> int | None:
    return 1


@activity.defn(name="report_deployment")
async def report_deployment(input: DeploymentInput) -> int | None:
    return 1


@activity.defn(name="send_notification")
async def send_notification(input: NotifyInput) -> int:
    return len(input.targets)


STAND_INS = {
    TaskQueues.WORKFLOWS: [update_change_comment, report_deployment, send_notification],
    TaskQueues.DEPLOY: [
        render_environment,
        verify_running,
        propose_gitops_change,
        merge_gitops_pr,
        request_reconcile,
        check_sync,
        verify_endpoint,
    ],
}


def workers(
    client: Client, kind: str, replaced: Mapping[str, Callable[..., Any]] | None = None
) -> list[Worker]:
    """Baton's workflows and the stand-ins (`baton`), or the raw workflows (`raw`), with the
    options `workers.main.build_workers` gives Baton's workers. `replaced`: activities by name
    that take the place of the stand-ins of that name (the real ones a benchmark measures)."""
    if kind == "raw":
        queues = {raw.QUEUE: ([raw.RawSteps, raw.RawGate], [raw.noop, raw.started])}
    else:
        mine = replaced or {}

        def of(queue: str) -> list[Callable[..., Any]]:
            return [mine.get(stand_in.__name__, stand_in) for stand_in in STAND_INS[queue]]

        queues = {
            TaskQueues.WORKFLOWS: (WORKFLOWS, of(TaskQueues.WORKFLOWS)),
            TaskQueues.DEPLOY: ([], of(TaskQueues.DEPLOY)),
        }
    executor = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_ACTIVITIES * len(queues))
    return [
        Worker(
            client,
            task_queue=queue,
            workflows=flows,
            workflow_runner=WORKFLOW_RUNNER,
            activities=activities,
            activity_executor=executor,
            max_concurrent_activities=MAX_CONCURRENT_ACTIVITIES,
            graceful_shutdown_timeout=timedelta(seconds=10),
        )
        for queue, (flows, activities) in queues.items()
    ]


@asynccontextmanager
async def serving(
    client: Client, *kinds: str, replaced: Mapping[str, Callable[..., Any]] | None = None
) -> AsyncIterator[None]:
    """The workers of each of `kinds` (see `workers`) run in this process meanwhile."""
    async with AsyncExitStack() as stack:
        for kind in kinds:
            for worker in workers(client, kind, replaced):
                await stack.enter_async_context(worker)
        yield


@functools.cache
def example_config() -> BatonConfig:
    """examples/baton.yaml, read once: a rollout's input is built before it starts, so reading
    the config is no part of what a benchmark times."""
    return load_config(PROJECT_ROOT / "examples" / "baton.yaml")


def rollout_input(environment: str, number: int, config: BatonConfig | None = None) -> RolloutInput:
    """What change `sample-app`#`number` passes to its rollout into `environment`, under
    `config` (default examples/baton.yaml; `ChangePlan.of`), for an artifact of a commit made
    from `number`."""
    config = config or example_config()
    plan = ChangePlan.of(config, APP, ui_url="http://127.0.0.1:8233", namespace="default")
    env = next(e for e in plan.environments if e.name == environment)
    return RolloutInput(
        change_id=change_id(APP, number),
        app=plan.app,
        environment=env,
        artifact=fake_artifact(APP, f"{number:040x}"),
        author="alice",
        authors=["alice"],
        ui_url=plan.ui_url,
        namespace=plan.namespace,
        notifications=plan.notifications,
        pr_comment=plan.pr_comment,
        deployments=plan.deployments,
    )


async def start_rollout(client: Client, input: RolloutInput) -> WorkflowHandle[Any, RolloutResult]:
    """Start the rollout as ChangeWorkflow starts it (its id and search attributes)."""
    app, env, commit = input.app.name, input.environment.name, input.artifact.commit
    return await client.start_workflow(
        WorkflowTypes.ROLLOUT,
        input,
        id=rollout_id(app, env, commit),
        task_queue=TaskQueues.WORKFLOWS,
        result_type=RolloutResult,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SearchAttributes.APP, app),
                SearchAttributePair(SearchAttributes.ENVIRONMENT, env),
                SearchAttributePair(SearchAttributes.COMMIT, commit),
            ]
        ),
    )


async def history_figures(handle: WorkflowHandle) -> dict[str, int]:
    """A finished workflow's history events, activities scheduled and their inputs' bytes (the
    payloads' data as the data converter wrote it)."""
    history = await handle.fetch_history()
    scheduled = [
        event.activity_task_scheduled_event_attributes
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
    return {
        "history_events": len(history.events),
        "activities": len(scheduled),
        "activity_input_bytes": sum(
            len(payload.data) for attrs in scheduled for payload in attrs.input.payloads
        ),
    }


def status_kb(pid: int, field: str) -> int:
    """A field of /proc/PID/status in kB (`VmRSS`: resident now, `VmHWM`: its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise ValueError(f"no {field} in /proc/{pid}/status")


def dev_server_pid() -> int:
    """The pid of the Temporal dev server this process started (a child named `temporal`)."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        parent = text[text.rindex(")") + 2 :].split()[1]
        if parent == me and name.startswith("temporal"):
            return int(stat.parent.name)
    raise RuntimeError("no Temporal dev server among this process's children")


async def serve(target: str, kind: str, wait: bool = False) -> None:
    client = await Client.connect(target, data_converter=pydantic_data_converter)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    running = workers(client, kind)
    if wait:  # connected and set up: poll once a line on stdin says so
        print("waiting", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
    async with asyncio.TaskGroup() as group:
        for worker in running:
            group.create_task(worker.run())
        print("ready", flush=True)
        await stop.wait()
        await asyncio.gather(*(worker.shutdown() for worker in running))


def main() -> None:
    parser = argparse.ArgumentParser(description="serve the benchmark's workers")
    parser.add_argument("--target", required=True, help="the Temporal frontend, HOST:PORT")
    parser.add_argument("--kind", choices=["baton", "raw"], required=True)
    parser.add_argument(
        "--wait",
        action="store_true",
        help="start polling once a line on stdin says so (a process started ahead of its turn)",
    )
    args = parser.parse_args()
    asyncio.run(serve(args.target, args.kind, args.wait))


if __name__ == "__main__":
    main()
