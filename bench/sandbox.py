"""Benchmark: what Temporal's workflow sandbox costs a worker per workflow run, on the workers'
runner (`workers.main.WORKFLOW_RUNNER`: outside the sandbox; until issue 18's last change, the
sandbox with the `workflows` package passed through) against the default sandbox, which imports a
workflow's modules afresh for every run.

A workflow run starts by creating its sandboxed instance: the worker does it once per run it
caches (and again after an eviction), and keeps it while the run is cached. This creates N
instances of Baton's EnvironmentRollout on each runner in one process, keeps them all, and reports
per instance the CPU time it took to create and the RSS it added (VmRSS before and after,
collected). CPU time, not wall time, so other jobs on the machine move the figures little.
Prints one JSON object.

    .venv/bin/python -m bench.sandbox [--n N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
from typing import Any

import temporalio.converter
import temporalio.workflow
from temporalio.api.common.v1.message_pb2 import Payloads
from temporalio.api.failure.v1.message_pb2 import Failure
from temporalio.worker import WorkflowRunner
from temporalio.worker._workflow_instance import WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox._runner import _fake_info

from bench.rollouts import status_kb
from bench.shared import print_result
from workers.main import WORKFLOW_RUNNER
from workflows.rollout import EnvironmentRollout


def details() -> WorkflowInstanceDetails:
    """What the worker passes to create a run of EnvironmentRollout (the SDK's own validation
    uses the same, with its placeholder info)."""
    converter = temporalio.converter.DataConverter.default
    return WorkflowInstanceDetails(
        payload_converter_factory=converter._new_payload_converter,
        failure_converter_class=converter.failure_converter_class,
        interceptor_classes=[],
        defn=temporalio.workflow._Definition.must_from_class(EnvironmentRollout),
        info=_fake_info,
        randomness_seed=-1,
        extern_functions={},
        disable_eager_activity_execution=False,
        worker_level_failure_exception_types=[],
        patch_activation_callback=None,
        last_completion_result=Payloads(),
        last_failure=Failure(),
    )


async def measure(runner: WorkflowRunner, n: int) -> dict[str, float]:
    """Create `n` instances on `runner` (an instance needs a running loop) and keep them."""
    runner.create_instance(details())  # the first imports what every later one reuses
    gc.collect()
    rss, cpu = status_kb(os.getpid(), "VmRSS"), time.process_time()
    kept = [runner.create_instance(details()) for _ in range(n)]
    cpu = time.process_time() - cpu
    gc.collect()
    added = status_kb(os.getpid(), "VmRSS") - rss
    assert len(kept) == n
    return {"cpu_ms_per_run": round(cpu / n * 1000, 2), "rss_kb_per_run": round(added / n, 1)}


async def run(n: int) -> dict[str, Any]:
    # The workers' runner first: the default one's instances would otherwise be in its RSS.
    workers = await measure(WORKFLOW_RUNNER, n)
    default = await measure(SandboxedWorkflowRunner(), n)
    return {
        "benchmark": "sandbox.rollout",
        "workflow": "EnvironmentRollout, created N times on each runner and kept",
        "baseline": "Temporal's default sandbox (the workflow's modules imported afresh per run)",
        "n": n,
        "workers_runner": workers,
        "default_sandbox": default,
        "ratio": {
            "cpu": round(workers["cpu_ms_per_run"] / default["cpu_ms_per_run"], 3),
            "rss": round(workers["rss_kb_per_run"] / default["rss_kb_per_run"], 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    print_result(asyncio.run(run(parser.parse_args().n)))


if __name__ == "__main__":
    main()
