"""Baton finds helm, kubectl and friends where `make tools` puts them, and says so when it can't."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from baton.errors import ToolNotFound
from baton.tools import find_tool, run_tool, tools_dir
from tests.fixtures import unavailable


def _fake_tool(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    return tool


def test_tools_dir_wins_over_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = _fake_tool(tmp_path / "tools", "helm")
    on_path = _fake_tool(tmp_path / "elsewhere", "helm")
    monkeypatch.setenv("BATON_TOOLS_DIR", str(installed.parent))
    monkeypatch.setenv("PATH", str(on_path.parent))

    assert find_tool("helm") == str(installed)


@pytest.mark.parametrize(
    ("tool", "version_args"), [("helm", ["version"]), ("kubectl", ["version", "--client"])]
)
def test_make_tools_installs_runnable_helm_and_kubectl(tool: str, version_args: list[str]) -> None:
    if not (tools_dir() / tool).exists():
        unavailable(f"{tool} not in {tools_dir()}: run `make tools`")

    found = find_tool(tool)

    assert found == str(tools_dir() / tool)
    subprocess.run([found, *version_args], check=True, capture_output=True, timeout=30)


def test_missing_tool_names_the_tool_and_the_fix() -> None:
    with pytest.raises(ToolNotFound) as raised:
        find_tool("baton-no-such-tool")

    assert "baton-no-such-tool" in str(raised.value)
    assert "make tools" in str(raised.value)


def test_helm_sees_its_settings_and_home_but_not_the_workers_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker's environment as the stack gives it: a forge token and the registry password
    # beside helm's own settings. helm (here a script printing what it sees) gets the latter only.
    tool = _fake_tool(tmp_path / "tools", "helm")
    tool.write_text("#!/bin/sh\nenv\n")
    monkeypatch.setenv("BATON_TOOLS_DIR", str(tool.parent))
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("BATON_REGISTRY_PASSWORD", "hunter2")
    monkeypatch.setenv("HELM_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))

    seen = run_tool([find_tool("helm")], timeout_s=30, env={"TMPDIR": str(tmp_path)}).stdout

    variables = dict(line.split("=", 1) for line in seen.splitlines() if "=" in line)
    assert variables["HELM_CACHE_HOME"] == str(tmp_path / "cache")
    assert variables["KUBECONFIG"] == str(tmp_path / "kubeconfig")
    assert variables["TMPDIR"] == str(tmp_path)
    assert variables["PATH"].startswith(str(tool.parent))
    assert "ghp_secret" not in seen and "hunter2" not in seen
