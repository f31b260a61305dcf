"""Benchmark: signed GitHub-format webhooks through Baton's API into a real Temporal dev server.

Each delivery is a `pull_request` `opened` for a new PR: verify the HMAC, normalize, start a
ChangeWorkflow (no worker runs, so only ingress is measured). Prints one JSON object.

    .venv/bin/python -m bench.ingress [--deliveries N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.github import sign
from baton.config import load_config
from baton.settings import Settings
from baton.temporal import SearchAttributes
from baton.tools import PROJECT_ROOT, find_tool

SECRET = "bench-secret"


def delivery(number: int) -> tuple[bytes, dict[str, str]]:
    payload = {
        "action": "opened",
        "number": number,
        "repository": {"name": "sample-app", "full_name": "sample-app"},
        "pull_request": {
            "number": number,
            "title": f"bench {number}",
            "user": {"login": "alice"},
            "head": {"ref": f"bench/{number}", "sha": f"{number:040x}"},
            "base": {"ref": "main", "sha": "0" * 40},
        },
    }
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(SECRET, body),
        "Content-Type": "application/json",
    }
    return body, headers


async def run(deliveries: int, concurrency: int) -> dict:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_tool("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=SearchAttributes.ALL,
        dev_server_extra_args=["--log-level", "error"],
    )
    try:
        with tempfile.TemporaryDirectory() as home:
            os.environ["BATON_WEBHOOK_SECRET"] = SECRET
            settings = Settings(home=Path(home))
            config = load_config(PROJECT_ROOT / "examples" / "baton.yaml")
            app = create_app(settings, config, env.client)
            latencies: list[float] = []
            semaphore = asyncio.Semaphore(concurrency)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:

                    async def send(number: int) -> None:
                        body, headers = delivery(number)
                        async with semaphore:
                            started = time.perf_counter()
                            answer = await http.post(
                                "/webhooks/github", content=body, headers=headers
                            )
                            latencies.append(time.perf_counter() - started)
                        assert answer.status_code == 202, answer.text

                    started = time.perf_counter()
                    await asyncio.gather(*(send(n) for n in range(1, deliveries + 1)))
                    elapsed = time.perf_counter() - started
    finally:
        await env.shutdown()
    latencies.sort()
    return {
        "benchmark": "ingress.github.pull_request_opened",
        "deliveries": deliveries,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "per_second": round(deliveries / elapsed, 1),
        "latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 1),
            "p95": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
            "max": round(latencies[-1] * 1000, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.deliveries, args.concurrency))))


if __name__ == "__main__":
    main()
