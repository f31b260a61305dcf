"""Benchmark: signed GitHub-format webhooks through Baton's API into a real Temporal dev server,
at a fixed offered rate, against raw Temporal workflow starts at the same rate.

Each delivery is a `pull_request` `opened` for a new PR: verify the HMAC, normalize, start a
ChangeWorkflow (no worker runs, so only ingress is measured). Deliveries are sent open-loop, one
every 1/rate s whatever the answers (a forge does not wait for Baton), and each is timed until
its 202: the API answers once the start is journaled (`baton.start_journal`); after the last
answer the bench waits for the journal to have made every start and checks each change runs.
"Before", in the same run: the same deliveries to an API without the journal, answering once
Temporal started the change. The baseline, in the same run and the same Temporal:
`client.start_workflow` of a workflow with the same id scheme, at the same rate. p50/p99 of each
and the p99 ratio to the baseline (goal: p99 under 30 ms, issue 18). Prints one JSON object.

    .venv/bin/python -m bench.ingress [--deliveries N] [--rate R ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import httpx
from temporalio.client import Client, WorkflowExecutionStatus

from api.app import create_app
from api.github import sign
from baton.config import load_config
from baton.settings import Settings
from baton.temporal import change_id
from baton.tools import PROJECT_ROOT
from bench.shared import dev_server, percentiles, print_result

SECRET = "bench-secret"
WARM_UP = 10


def delivery(
    number: int, action: str = "opened", head: int | None = None, secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    """A signed GitHub `pull_request` delivery for PR `number` of sample-app (examples/baton.yaml),
    its head commit `head` (default: the PR's number)."""
    payload = {
        "action": action,
        "number": number,
        "repository": {"name": "sample-app", "full_name": "sample-app", "default_branch": "main"},
        "pull_request": {
            "number": number,
            "title": f"bench {number}",
            "user": {"login": "alice"},
            "head": {"ref": f"bench/{number}", "sha": f"{head or number:040x}"},
            "base": {"ref": "main", "sha": "0" * 40},
        },
    }
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(secret, body),
        "Content-Type": "application/json",
    }
    return body, headers


async def offered(count: int, rate: float, send: Callable[[int], Awaitable[None]]) -> list[float]:
    """Call `send(n)` for n = 1..count, one every 1/rate s (open loop); each call's seconds."""
    latencies: list[float] = []

    async def timed(number: int) -> None:
        started = time.perf_counter()
        await send(number)
        latencies.append(time.perf_counter() - started)

    tasks = []
    origin = time.perf_counter()
    for number in range(1, count + 1):
        delay = origin + (number - 1) / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timed(number)))
    await asyncio.gather(*tasks)
    return latencies


async def run(deliveries: int, rates: list[float]) -> dict:
    async with dev_server() as env:
        with tempfile.TemporaryDirectory() as home:
            os.environ["BATON_WEBHOOK_SECRET"] = SECRET
            config = load_config(PROJECT_ROOT / "examples" / "baton.yaml")
            # Baton as it is (starts journaled) and as it was (started before the answer).
            journaled = create_app(Settings(home=Path(home, "journaled")), config, env.client)
            synchronous = create_app(
                Settings(home=Path(home, "synchronous")), config, env.client, journal=False
            )
            results = []
            async with (
                journaled.router.lifespan_context(journaled),
                synchronous.router.lifespan_context(synchronous),
            ):
                journal = journaled.state.journal
                async with (
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=journaled), base_url="http://baton"
                    ) as http,
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=synchronous), base_url="http://baton"
                    ) as before_http,
                ):
                    for round_number, rate in enumerate(rates):
                        base = (round_number + 1) * 2 * deliveries  # PRs 1..deliveries: warm-up

                        async def webhook(
                            number: int,
                            base: int = base,
                            client: httpx.AsyncClient = http,
                            expect: str = "accepted: starting",
                        ) -> None:
                            body, headers = delivery(base + number)
                            answer = await client.post(
                                "/webhooks/github", content=body, headers=headers
                            )
                            assert answer.status_code == 202, answer.text
                            assert expect in answer.text, answer.text

                        before = partial(
                            webhook, base=base + deliveries, client=before_http, expect="started"
                        )

                        async def raw(number: int, rate: float = rate) -> None:
                            await env.client.start_workflow(
                                "BenchRaw",
                                id=f"bench-raw-{rate}-{number}",
                                task_queue="bench-raw",
                            )

                        if round_number == 0:  # every path's first calls, not timed
                            await offered(WARM_UP, rate, partial(webhook, base=0))
                            await offered(WARM_UP, rate, partial(before, base=WARM_UP))
                            await offered(WARM_UP, rate, partial(raw, rate=0))
                            await journal.drained()
                        cpu = time.process_time()
                        baton = percentiles(await offered(deliveries, rate, webhook))
                        last_answer = time.perf_counter()
                        await journal.drained()  # every journaled start made
                        drained_s = time.perf_counter() - last_answer
                        baton_cpu = time.process_time() - cpu
                        started = await started_changes(env.client, base, deliveries)
                        assert started == deliveries, f"{started} of {deliveries} started"
                        cpu = time.process_time()
                        synchronous_ms = percentiles(await offered(deliveries, rate, before))
                        before_cpu, cpu = time.process_time() - cpu, time.process_time()
                        baseline = percentiles(await offered(deliveries, rate, raw))
                        raw_cpu = time.process_time() - cpu
                        results.append(
                            {
                                "offered_per_second": rate,
                                "deliveries": deliveries,
                                "baton_ms": baton,
                                "journal_drained_after_last_answer_s": round(drained_s, 3),
                                "before_ms": synchronous_ms,
                                "raw_start_ms": baseline,
                                "p99_ratio": round(baton["p99"] / baseline["p99"], 2),
                                "before_p99_ratio": round(
                                    synchronous_ms["p99"] / baseline["p99"], 2
                                ),
                                "goal_p99_ms": 30,
                                # The bench process's CPU (sender, API, Temporal client) per
                                # delivery, the journaled starts included.
                                "cpu_ms_per_delivery": {
                                    "baton": round(baton_cpu / deliveries * 1000, 2),
                                    "before": round(before_cpu / deliveries * 1000, 2),
                                    "raw_start": round(raw_cpu / deliveries * 1000, 2),
                                },
                            }
                        )
    return {
        "benchmark": "ingress.github.pull_request_opened",
        "baseline": "raw Temporal start_workflow at the same rate",
        "before": "the same deliveries answered once Temporal started the change (no journal)",
        "results": results,
    }


async def started_changes(client: Client, base: int, deliveries: int) -> int:
    """How many of the changes of PRs base+1..base+deliveries run (each looked up by id)."""

    async def runs(number: int) -> bool:
        handle = client.get_workflow_handle(change_id("sample-app", base + number))
        return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

    return sum(await asyncio.gather(*(runs(n) for n in range(1, deliveries + 1))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=200, help="per rate")
    parser.add_argument("--rate", type=float, nargs="+", default=[20, 100], help="per second")
    args = parser.parse_args()
    print_result(asyncio.run(run(args.deliveries, args.rate)))


if __name__ == "__main__":
    main()
