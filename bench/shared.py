"""What the benchmarks share: the Temporal dev server they run against, and percentiles."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.fixtures.temporal import start_dev_server


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Processes started meanwhile write their stdout to this process's stderr: the dev server
    prints its banner on stdout, and a benchmark's stdout is its one JSON object."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@asynccontextmanager
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server with Baton's search attributes, stopped when the block ends."""
    with stdout_to_stderr():
        env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50, p99 (the nearest rank) and max of `seconds`, in ms."""
    ordered = sorted(seconds)
    p99 = ordered[max(0, round(len(ordered) * 0.99) - 1)]
    return {
        "p50": round(statistics.median(ordered) * 1000, 1),
        "p99": round(p99 * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
    }


def print_result(result: dict) -> None:
    """Print the benchmark's JSON object and end the process at once: the Temporal SDK's core
    threads may still call into Python while the interpreter finalizes, which aborts it
    ("PyGILState_Release: thread state ... must be current", temporalio/sdk-python#300)."""
    print(json.dumps(result, indent=1), flush=True)
    sys.stderr.flush()
    os._exit(0)


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temp directory for a benchmark that builds images; on leaving, the images named after
    the registry whose `HOST:PORT` it wrote to `<dir>/registry-host` are removed (a free port:
    no one else's images carry it)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as root:
        try:
            yield Path(root)
        finally:
            host = Path(root, "registry-host")
            if host.exists():
                remove_images(host.read_text())


def remove_images(registry_host: str) -> None:
    """Remove the images named after the registry at `registry_host`."""
    listed = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    mine = [name for name in listed.stdout.split() if name.startswith(f"{registry_host}/")]
    if mine:
        subprocess.run(["docker", "image", "rm", *mine], capture_output=True, check=False)
