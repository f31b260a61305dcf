"""Benchmark: the `baton` command line's latency against a raw Temporal Update, side by side.

One Temporal dev server and Baton's API (uvicorn, on 127.0.0.1) run in this process. Timed as
whole commands with hyperfine, interleaved on the same machine:

- baseline: `temporal workflow update execute` on a raw workflow whose Update handler returns at
  once (the Update a decision is, without Baton);
- `baton approve`: the CLI, its token, `GET /api/v1/changes/...` through the API to Temporal
  (a change that does not exist, so the answer is 404 and exit 4: everything the CLI does before
  its decision request, plus one API round trip);
- `baton changes show`: the CLI straight to Temporal (no such change: exit 4);
- `baton --help`: the CLI's start-up alone.

The commands take turns: each round runs every command once (see `hyperfine`).

Also `python -X importtime -c "import cli.main"`: the CLI's import time. Ratios are to the raw
Update. `--before DIR` also times, in the same hyperfine run, the CLI of another checkout (e.g.
`git archive main` unpacked) with this environment's Python: its commands are named `before_*`.
Prints one JSON object.

    .venv/bin/python -m bench.cli [--runs N] [--before DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import uvicorn
from temporalio import workflow
from temporalio.worker import Worker

from api.app import create_app
from baton.config import load_config
from baton.settings import Settings
from baton.tokens import TokenStore
from baton.tools import PROJECT_ROOT, find_tool
from bench.shared import print_result, stdout_to_stderr
from tests.fixtures.ports import free_port
from tests.fixtures.temporal import start_dev_server

QUEUE = "bench-raw"


@workflow.defn(name="BenchRawGate", sandboxed=False)
class RawGate:
    """A raw workflow that waits forever; its Update answers at once."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.update(name="approve")
    async def approve(self) -> str:
        return "approved"


def import_ms(tree: Path) -> float:
    """Cumulative import time of `cli.main` in a fresh interpreter, in ms."""
    argv = [sys.executable, "-X", "importtime", "-c", "import cli.main"]
    report = subprocess.run(argv, cwd=tree, capture_output=True, text=True, check=True).stderr
    line = next(line for line in report.splitlines() if line.endswith("| cli.main"))
    return round(int(re.split(r"\s*\|\s*", line)[1]) / 1000, 1)


def hyperfine(commands: dict[str, str], runs: int, env: dict[str, str]) -> dict[str, dict]:
    """Median and mean seconds for each command (hyperfine, exit codes ignored).

    Round by round: each round is one hyperfine run of every command once (the first round
    warms each up), so a change in the machine's load hits all commands alike, not the ones
    hyperfine happened to time while it lasted.
    """
    hyperfine_bin = shutil.which("hyperfine")
    if hyperfine_bin is None:
        raise SystemExit("hyperfine not found: install it with `apt-get install hyperfine`")
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for round_number in range(runs):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            argv = [hyperfine_bin, "--runs", "1", "--ignore-failure", "--style", "none"]
            argv += ["--warmup", "1" if round_number == 0 else "0", "--export-json", out.name]
            for name, command in commands.items():
                argv += ["--command-name", name, command]
            subprocess.run(argv, check=True, env=env, capture_output=True)
            for result in json.loads(Path(out.name).read_text())["results"]:
                samples[result["command"]] += result["times"]
    return {
        name: {
            "median_s": round(statistics.median(times), 4),
            "mean_s": round(statistics.mean(times), 4),
        }
        for name, times in samples.items()
    }


def baton_commands(prefix: str, tree: Path) -> dict[str, str]:
    """The timed `baton` commands of the checkout `tree` (`python -m cli` in it)."""
    baton = f"cd {tree} && {sys.executable} -m cli"
    return {
        f"{prefix}_approve": f"{baton} approve sample-app/999 --env dev",
        f"{prefix}_changes_show": f"{baton} changes show sample-app/999",
        f"{prefix}_help": f"{baton} --help",
    }


async def run(runs: int, before: Path | None) -> dict:
    with stdout_to_stderr():
        env = await start_dev_server()
    target = env.client.service_client.config.target_host
    try:
        with tempfile.TemporaryDirectory(prefix="bench-cli-") as home:
            settings = Settings(home=Path(home))
            token = TokenStore(settings.tokens_file).create("bench").token
            config = load_config(PROJECT_ROOT / "examples" / "baton.yaml")
            port = free_port()
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(settings, config, env.client),
                    host="127.0.0.1",
                    port=port,
                    log_level="warning",
                )
            )
            serving = asyncio.create_task(server.serve())
            async with Worker(env.client, task_queue=QUEUE, workflows=[RawGate]):
                await env.client.start_workflow(
                    RawGate.run,
                    id="bench-raw-gate",
                    task_queue=QUEUE,
                    execution_timeout=timedelta(hours=1),
                )
                while not server.started:
                    await asyncio.sleep(0.05)
                child_env = {
                    **os.environ,
                    "BATON_HOME": home,
                    "BATON_API_BASE": f"http://127.0.0.1:{port}",
                    "BATON_TOKEN": token,
                    "TEMPORAL_ADDRESS": target,
                }
                temporal = find_tool("temporal")
                commands = {
                    "raw_update": f"{temporal} workflow update execute --address {target} "
                    "--workflow-id bench-raw-gate --name approve",
                    **baton_commands("baton", PROJECT_ROOT),
                }
                if before is not None:
                    commands |= baton_commands("before_baton", before)
                timings = await asyncio.to_thread(hyperfine, commands, runs, child_env)
            server.should_exit = True
            await serving
    finally:
        await env.shutdown()
    baseline = timings["raw_update"]["median_s"]
    return {
        "benchmark": "cli",
        "runs": runs,
        "baseline": "raw_update",
        "commands": {
            name: {**timing, "ratio": round(timing["median_s"] / baseline, 2)}
            for name, timing in timings.items()
        },
        "cli_import_ms": import_ms(PROJECT_ROOT),
        **({"before": str(before), "before_cli_import_ms": import_ms(before)} if before else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--before", type=Path, help="another checkout to time side by side")
    args = parser.parse_args()
    before = args.before.resolve() if args.before else None
    print_result(asyncio.run(run(args.runs, before)))


if __name__ == "__main__":
    main()
