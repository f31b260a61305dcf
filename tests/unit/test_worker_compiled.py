"""Workers compile the workflow modules once per process (`workers.compiled`): Temporal's sandbox
imports them afresh for every workflow run, which compiled their source each time wherever no
bytecode is cached on disk."""

from __future__ import annotations

import subprocess
import sys

from baton.tools import PROJECT_ROOT

FRESH_IMPORTS = """
import sys
from workers import compiled
compiled.install()
compiled.install()
def fresh():
    for name in [m for m in sys.modules if m.startswith("workflows")]:
        del sys.modules[name]
    import workflows.record
    return workflows.record
first, second = fresh(), fresh()
print(first is not second, first.failure.__code__ is second.failure.__code__,
      type(second.__spec__.loader).__name__, sum(isinstance(f, compiled._Finder) for f in sys.meta_path))
"""


def run_fresh(*options: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, *options, "-c", FRESH_IMPORTS],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def test_a_workflow_module_imported_afresh_runs_the_code_compiled_the_first_time() -> None:
    # -B: no bytecode written, as under PYTHONDONTWRITEBYTECODE or in a read-only image.
    assert run_fresh("-B") == ["True", "True", "_CompiledOnce", "1"]
