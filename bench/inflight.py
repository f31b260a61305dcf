"""Benchmark: N changes in flight at once, Baton's rollouts against raw Temporal workflows running
the same number of no-op activities, on one Temporal dev server.

For each N (10 and 100; 500 too with BENCH_FULL=1) and each kind, a fresh worker process
(`python -m bench.rollouts`, set up as Baton's worker is; all of them started at once, each
waiting idle, not polling, for its phase) serves the workflows; N workflows are
started at once and awaited. Baton's are real EnvironmentRollouts of `sample-app` into dev under
examples/baton.yaml with no-op stand-in activities (bench.rollouts); the raw ones run as many
no-op activities one after another as a sample of those rollouts' histories scheduled. Reports per
N and kind: errors (workflows that did not end well, or not within the patience; goal 0),
throughput (workflows per second, start of the first to end of the last) and its ratio to raw,
the worker process's RSS idle and at its peak (/proc/PID/status VmRSS sampled, and VmHWM; goal
at most 300 MB at 500) and the dev server's peak RSS while the N ran (sampled VmRSS; the server
keeps every history it was sent, so it grows over the run), and the worker's CPU time per
workflow. `--before DIR` also runs Baton's rollouts on a worker from another checkout (e.g. the
previous commit, `git archive` unpacked; its bench/ must have `bench.rollouts`), in the same run.
Prints one JSON object.

    .venv/bin/python -m bench.inflight [--n N ...] [--before DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import statistics
import sys
import time
import uuid
from asyncio.subprocess import Process
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from baton.tools import PROJECT_ROOT
from bench import raw
from bench.rollouts import (
    dev_server_pid,
    history_figures,
    rollout_input,
    start_rollout,
    status_kb,
)
from bench.shared import dev_server, print_result

PATIENCE_S = 600  # for the N workflows of one phase to end
STARTUP_S = 120  # for a worker process to start polling, or to stop
SAMPLE = 5  # rollout histories read per phase for their activity count
NUMBERS = itertools.count(1)


class Peaks:
    """The highest VmRSS of each process seen while it runs, sampled every `every` seconds."""

    def __init__(self, pids: dict[str, int], every: float = 0.1) -> None:
        self.pids = pids
        self.every = every
        self.kb = dict.fromkeys(pids, 0)

    async def sample(self) -> None:
        while True:
            for name, pid in self.pids.items():
                self.kb[name] = max(self.kb[name], status_kb(pid, "VmRSS"))
            await asyncio.sleep(self.every)


def mb(kb: int) -> float:
    return round(kb / 1024, 1)


def cpu_s(pid: int) -> float:
    """The CPU time (user and system) process `pid` has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def worker_process(
    kind: str, target: str, tree: Path = PROJECT_ROOT, wait: bool = False
) -> Process:
    """A worker process serving `kind` (`python -m bench.rollouts` of the checkout `tree`) on the
    Temporal at `target`; `wait`: it polls once `phase` says so on its stdin."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.rollouts",
        "--target",
        target,
        "--kind",
        kind,
        *(["--wait"] if wait else []),
        cwd=tree,
        stdin=asyncio.subprocess.PIPE if wait else None,
        stdout=asyncio.subprocess.PIPE,
    )


async def phase(
    client: Client,
    kind: str,
    n: int,
    steps: int,
    server: int,
    tree: Path = PROJECT_ROOT,
    ahead: Process | None = None,
) -> dict[str, Any]:
    """Start `n` workflows of `kind` at once on a fresh worker process (the checkout `tree`'s
    code; `ahead`: one started with `wait`, set up and waiting for its turn) and wait for them."""
    target = client.service_client.config.target_host
    if ahead is not None:
        assert ahead.stdin is not None
        ahead.stdin.write(b"go\n")
        await ahead.stdin.drain()
        ahead.stdin.close()
    worker = ahead or await worker_process(kind, target, tree)
    try:
        assert worker.stdout is not None
        ready = await asyncio.wait_for(worker.stdout.readline(), timeout=STARTUP_S)
        assert ready.strip() == b"ready", f"the worker did not start: {ready!r}"
        idle_kb, idle_cpu = status_kb(worker.pid, "VmRSS"), cpu_s(worker.pid)
        peaks = Peaks({"worker": worker.pid, "server": server})
        sampling = asyncio.create_task(peaks.sample())
        inputs = [rollout_input("dev", next(NUMBERS)) for _ in range(n)] if kind == "baton" else []
        started = time.perf_counter()
        if kind == "baton":
            starts: list[Awaitable[WorkflowHandle]] = [
                start_rollout(client, input) for input in inputs
            ]
        else:
            starts = [
                client.start_workflow(
                    raw.RawSteps.run, steps, id=f"bench-raw-{uuid.uuid4()}", task_queue=raw.QUEUE
                )
                for _ in range(n)
            ]
        handles = await asyncio.gather(*starts)
        done, late = await asyncio.wait(
            [asyncio.ensure_future(handle.result()) for handle in handles], timeout=PATIENCE_S
        )
        elapsed = time.perf_counter() - started
        sampling.cancel()
        worker_hwm = status_kb(worker.pid, "VmHWM")
        worker_cpu = cpu_s(worker.pid) - idle_cpu
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(worker.wait(), timeout=STARTUP_S)
        except TimeoutError:
            worker.kill()
    for task in late:
        task.cancel()
    failed = [t for t in done if t.exception() is not None]
    if kind == "baton":
        failed += [t for t in done if t.exception() is None and t.result().outcome != "deployed"]
    sampled = [await history_figures(h) for h in handles[:SAMPLE]]
    return {
        "kind": kind,
        "n": n,
        "errors": len(failed) + len(late),
        "wall_s": round(elapsed, 2),
        "throughput_per_s": round(n / elapsed, 2),
        "worker_cpu_ms_per_workflow": round(worker_cpu / n * 1000, 1),
        "activities_per_workflow": round(statistics.mean(f["activities"] for f in sampled), 1),
        "history_events_per_workflow": round(
            statistics.mean(f["history_events"] for f in sampled), 1
        ),
        "worker_rss_mb": {
            "idle": mb(idle_kb),
            "peak": mb(max(peaks.kb["worker"], worker_hwm)),
        },
        "server_rss_peak_mb": mb(peaks.kb["server"]),
    }


async def run(ns: list[int], before: Path | None) -> dict:
    results = []
    async with dev_server() as env:
        server = dev_server_pid()
        target = env.client.service_client.config.target_host
        # Every phase's worker process of this checkout is started at once, here: their imports
        # and set-up (seconds each on a loaded host) overlap one another instead of coming one
        # after another between the phases. Each waits, idle and not polling, for its phase;
        # its idle RSS and CPU are read once it polls, as before.
        ahead = {
            (kind, n): await worker_process(kind, target, wait=True)
            for n in ns
            for kind in ("baton", "raw")
        }
        try:
            for process in ahead.values():  # all set up before the first phase is timed
                assert process.stdout is not None
                line = await asyncio.wait_for(process.stdout.readline(), timeout=STARTUP_S)
                assert line.strip() == b"waiting", f"the worker did not start: {line!r}"
            for n in ns:
                results.append(await phases(env.client, n, server, ahead, before))
        finally:
            for process in ahead.values():
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    return {
        "benchmark": "inflight.rollouts",
        "workflow": "EnvironmentRollout into dev (examples/baton.yaml), no-op stand-in activities",
        "baseline": "raw Temporal workflows running as many no-op activities, one after another",
        "scaled": "N = 10 and 100 within make bench's 10 minutes; BENCH_FULL=1 adds 500",
        "goals": {"errors": 0, "worker_rss_mb_at_500": 300},
        **({"before": str(before)} if before else {}),
        "results": results,
    }


async def phases(
    client: Client, n: int, server: int, ahead: dict[tuple[str, int], Process], before: Path | None
) -> dict[str, Any]:
    """Baton's rollouts, the raw workflows (and `before`'s rollouts) with `n` in flight."""
    baton = await phase(client, "baton", n, 0, server, ahead=ahead[("baton", n)])
    steps = round(baton["activities_per_workflow"])
    base = await phase(client, "raw", n, steps, server, ahead=ahead[("raw", n)])
    result = {"n": n, "baton": baton, "raw": base}
    if before is not None:
        result["before"] = await phase(client, "baton", n, 0, server, before)
    for name in ("baton", "before"):
        if name in result:
            result[f"{name}_ratio"] = {
                "throughput": round(result[name]["throughput_per_s"] / base["throughput_per_s"], 2),
                "worker_cpu": round(
                    result[name]["worker_cpu_ms_per_workflow"] / base["worker_cpu_ms_per_workflow"],
                    2,
                ),
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    full = os.environ.get("BENCH_FULL") == "1"
    parser.add_argument("--n", type=int, nargs="+", default=[10, 100, 500] if full else [10, 100])
    parser.add_argument(
        "--before", type=Path, help="another checkout whose worker to run too (`before`)"
    )
    args = parser.parse_args()
    before = args.before.resolve() if args.before else None
    print_result(asyncio.run(run(args.n, before)))


if __name__ == "__main__":
    main()
