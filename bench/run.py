"""Run every benchmark, one process each, and keep what each prints in `bench/results/NAME.json`.

Each benchmark prints one JSON object last (a Temporal dev server it starts may print its banner
first); that object is written to `bench/results/<name>.json`, with the date and the machine it
ran on. Ends non-zero if a benchmark fails. `make bench` runs this.

    .venv/bin/python -m bench.run [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime

from baton.tools import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results"
BENCHMARKS = [
    "render",
    "ingress",
    "cli",
    "http",
    "orchestration",
    "approval",
    "flux_event",
    "sync",
    "pipeline",
    "inflight",
    "sandbox",
    "recovery",
]


def machine() -> str:
    """`2 cores, Debian GNU/Linux 12 (bookworm), x86_64`: what a figure was measured on."""
    system = platform.system()
    try:
        release = platform.freedesktop_os_release().get("PRETTY_NAME", system)
    except OSError:
        release = system
    return f"{os.cpu_count()} cores, {release}, {platform.machine()}"


def last_json(text: str) -> dict:
    """The JSON object that starts at the last line beginning with `{` and runs to the end."""
    lines = text.splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if lines[start].startswith("{"):
            try:
                return json.loads("\n".join(lines[start:]))
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object in the benchmark's output")


def run(name: str) -> dict:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench.{name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result = last_json(done.stdout)
    result["measured"] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"of {', '.join(BENCHMARKS)}")
    names = parser.parse_args().names or BENCHMARKS
    if unknown := set(names) - set(BENCHMARKS):
        parser.error(f"no benchmark {', '.join(sorted(unknown))}: one of {', '.join(BENCHMARKS)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in names:
        result = run(name)
        path = RESULTS / f"{name}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"{name}: {path.relative_to(PROJECT_ROOT)} ({result['measured']['wall_s']} s)")


if __name__ == "__main__":
    main()
