"""docker-compose.yml stays valid: the services it runs are the embedded stack's."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from baton.temporal import SearchAttributes
from baton.tools import PROJECT_ROOT
from tests.fixtures import unavailable

COMPOSE = PROJECT_ROOT / "docker-compose.yml"


def test_compose_file_is_valid() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        unavailable("docker-compose not installed: run `make docker`")
    result = subprocess.run(
        [tool, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        env={"BATON_WEBHOOK_SECRET": "x", "BATON_REGISTRY_PASSWORD": "y", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr


def test_compose_runs_the_embedded_stacks_processes() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    commands = {name: service.get("command") for name, service in services.items()}
    assert commands["api"] == ["python", "-m", "api"]
    assert commands["worker"] == ["python", "-m", "workers.main"]
    assert commands["cluster"] == ["python", "-m", "baton.local.cluster"]
    for key in SearchAttributes.ALL:
        assert f"--search-attribute {key.name}=Keyword" in commands["temporal"]
    assert all(service["network_mode"] == "host" for service in services.values())
