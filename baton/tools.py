"""Locating the external tools Baton runs (helm, kubectl, hadolint, temporal, docker...)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from baton.errors import ToolNotFound

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def tools_dir() -> Path:
    """The git-ignored directory `make tools` installs helm and kubectl into."""
    return Path(os.environ.get("BATON_TOOLS_DIR", PROJECT_ROOT / ".tools" / "bin"))


def search_path() -> str:
    """PATH for child processes: the tools directory and this interpreter's scripts first."""
    venv_bin = str(Path(sys.executable).parent)
    return os.pathsep.join([str(tools_dir()), venv_bin, os.environ.get("PATH", "")])


def find_tool(name: str) -> str:
    """Absolute path of `name`, preferring the tools directory, then the venv, then PATH."""
    found = shutil.which(name, path=search_path())
    if found is None:
        raise ToolNotFound(name, str(tools_dir()))
    return found


def run_tool(
    command: list[str],
    *,
    timeout_s: float,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool with the tools directory first on PATH, its output captured as text.

    Raises `subprocess.TimeoutExpired` after `timeout_s`; the exit status is the caller's to judge.
    """
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout_s,
        env={**os.environ, **(env or {}), "PATH": search_path()},
    )


# helm ends every template error with this hint; the error itself is on the lines before it.
_DEBUG_HINT = "Use --debug flag"


def error_line(output: str) -> str:
    """A tool's own error in its output, as one line: helm's or kustomize's `Error:` line (and
    the lines that continue it), never helm's trailing `--debug` hint; else the last line."""
    lines = [line.strip() for line in output.splitlines()]
    for i, line in enumerate(lines):
        if line.lower().startswith("error:"):
            message = [line[len("error:") :].strip()]
            for more in lines[i + 1 :]:
                if not more or more.startswith(_DEBUG_HINT):
                    break
                message.append(more)
            return " ".join(message)
    last = next((line for line in reversed(lines) if line and _DEBUG_HINT not in line), "")
    return last or "no output"
