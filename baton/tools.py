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
# Tools that come as Python packages (pyproject.toml), so `make install` puts them in the venv.
PACKAGED_TOOLS = {"temporal", "temporal-test-server"}


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
        install = "make install" if name in PACKAGED_TOOLS else "make tools"
        raise ToolNotFound(name, str(tools_dir()), install)
    return found


# What a child tool may see of the worker's environment: where its home, temporary files, caches,
# kubeconfig and CA certificates are, and the proxies. Never the rest: the worker's environment
# holds Baton's secrets (forge tokens, the registry password, webhook secrets).
_TOOL_ENV = (
    "HOME",
    "TMPDIR",
    "TZ",
    "KUBECONFIG",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
# helm's own settings (HELM_CACHE_HOME, HELM_REGISTRY_CONFIG...; `helm env` lists them).
_TOOL_ENV_PREFIXES = ("HELM_",)


def tool_env(
    extra: Mapping[str, str] | None = None,
    keep: tuple[str, ...] = _TOOL_ENV,
    prefixes: tuple[str, ...] = _TOOL_ENV_PREFIXES,
) -> dict[str, str]:
    """The environment for a child tool: PATH with the tools first, a UTF-8 locale, the worker's
    variables named in `keep` or starting with one of `prefixes`, then `extra` (which wins)."""
    env = {"PATH": search_path(), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    for key, value in os.environ.items():
        if key in keep or key.startswith(prefixes):
            env[key] = value
    env.update(extra or {})
    return env


def run_tool(
    command: list[str],
    *,
    timeout_s: float,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool with the tools directory first on PATH, its output captured as text. The tool
    sees `tool_env(env)`, never the worker's secrets.

    Raises `subprocess.TimeoutExpired` after `timeout_s`; the exit status is the caller's to judge.
    """
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout_s,
        env=tool_env(env),
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
