"""Worker entry point: maps workflows and activities to task queues and runs them until stopped.

`python -m workers.main [QUEUE ...]` serves every queue by default; at scale, run build queues on
hosts with a container engine and deploy queues on hosts with cluster credentials. Prometheus
metrics are served at http://$BATON_WORKER_METRICS_ADDRESS/metrics (default 127.0.0.1:9464), logs
and traces as `baton.telemetry` says.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities import ACTIVITIES
from activities.context import Context, install
from baton import private
from baton.errors import BatonError
from baton.telemetry import configure_logging, configure_tracing, worker_runtime
from baton.temporal import TaskQueues, connect
from workflows import WORKFLOWS

MAX_CONCURRENT_ACTIVITIES = 8

WORKFLOW_RUNNER = UnsandboxedWorkflowRunner()
"""Workers run Baton's workflows outside Temporal's sandbox. The sandbox's restrictions (no
clock, random or I/O) only reach code it imports afresh for each run, and it already passed the
`workflows` package through (a fresh import cost a rollout 41 ms of CPU and 326 kB held while it
ran), so what remained of it was cost: on every payload of every workflow task it runs code in the
sandbox to find the payload's serialization context (temporalio 1.35,
`_Instance.get_serialization_context`), 70 % of the worker's time handling activations in a
profile of the Flux event benchmark. Without it a rollout costs the worker 84.5 ms of CPU
instead of 125 ms (`bench.inflight --n 100`, both in one run; raw Temporal 68.6 ms). The package
keeps no module state a run could change (tests/unit/test_workflows_package.py); the tests run
every workflow in the default sandbox, where a forbidden call fails, and replay the recorded
histories on both runners (tests/workflows/test_replay.py)."""


def build_workers(client: Client, queues: list[str] | None = None) -> list[Worker]:
    """One worker per task queue that has work; workflows run on the WORKFLOWS queue, in
    `WORKFLOW_RUNNER`."""
    queues = [q for q in queues or ACTIVITIES if ACTIVITIES[q] or q == TaskQueues.WORKFLOWS]
    executor = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_ACTIVITIES * len(queues))
    return [
        Worker(
            client,
            task_queue=queue,
            workflows=WORKFLOWS if queue == TaskQueues.WORKFLOWS else [],
            workflow_runner=WORKFLOW_RUNNER,
            activities=ACTIVITIES[queue],
            activity_executor=executor,
            max_concurrent_activities=MAX_CONCURRENT_ACTIVITIES,
            graceful_shutdown_timeout=timedelta(seconds=10),
        )
        for queue in queues
    ]


async def serve(queues: list[str] | None = None) -> None:
    install(Context.load())
    runtime = worker_runtime()  # a bad telemetry variable stops the worker before it acts
    # Credentials a killed worker left behind in the temp directory (baton.private).
    for leftover in private.remove_leftovers():
        logging.getLogger(__name__).info(
            "removed %s, left by a worker that no longer runs", leftover
        )
    client = await connect(runtime=runtime)
    workers = build_workers(client, queues)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with asyncio.TaskGroup() as group:
        for worker in workers:
            group.create_task(worker.run())
        await stop.wait()
        await asyncio.gather(*(worker.shutdown() for worker in workers))


def main() -> None:
    unknown = [q for q in sys.argv[1:] if q not in ACTIVITIES]
    if unknown:
        sys.exit(f"unknown task queue(s) {', '.join(unknown)}: choose from {', '.join(ACTIVITIES)}")
    try:
        configure_logging()
        configure_tracing("baton-worker")
        asyncio.run(serve(sys.argv[1:] or None))
    except BatonError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
