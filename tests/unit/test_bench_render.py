"""bench/render.py runs and says what it measured (its numbers are read side by side, not here)."""

from __future__ import annotations

import json
import subprocess
import sys

from baton.tools import PROJECT_ROOT


def test_the_render_benchmark_prints_both_inputs_as_json() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.render", "--rounds", "1"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    results = {r["input"]: r for r in json.loads(run.stdout)["results"]}
    assert set(results) == {"helm chart, 50 objects", "kustomize sample app"}
    assert results["helm chart, 50 objects"]["objects"] == 50
    for result in results.values():
        assert result["tool_s"] > 0 and result["baton_s"] > 0
        # Each figure is rounded on its own: the ratio agrees with the rounded times to 2 %.
        assert abs(result["ratio"] - result["baton_s"] / result["tool_s"]) <= 0.02 * result["ratio"]
