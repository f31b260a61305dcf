"""The command line's errors tell the truth: one line naming the problem and a fix that exists, and
an exit code saying which kind of problem it is (README: Exit codes)."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from baton.changes import ChangeNotFound, WorkerUnavailable
from baton.config import ConfigError
from baton.errors import BatonError, ToolNotFound
from baton.forges.base import HeadChanged, PullRequestNotFound
from baton.forges.http import ForgeUnavailable
from baton.local.stack import BASE_IMAGE, LOCAL_BASE_IMAGE, Stack, StackError, services
from baton.policy import PolicyViolation
from baton.settings import Settings
from baton.temporal import TemporalUnavailable, connect_config
from baton.tools import PROJECT_ROOT, find_tool
from cli import main
from cli.demo import DemoFailed
from cli.exits import Exit
from cli.watch import WaitTimedOut
from tests.conftest import Baton
from tests.unit.test_rollback_activities import closed_port


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError(["apps: field required"]), Exit.USAGE),
        (PolicyViolation("alice may not approve prod: she authored the change"), Exit.REFUSED),
        (ChangeNotFound("change/web/404"), Exit.NOT_FOUND),
        (TemporalUnavailable("127.0.0.1:7233", "connection refused"), Exit.UNREACHABLE),
        (WorkerUnavailable("change/web/1"), Exit.UNREACHABLE),
        (WaitTimedOut("change/web/1 is not deployed:prod after 30min"), Exit.TIMED_OUT),
        (DemoFailed("the PR pipeline failed"), Exit.NOT_THROUGH),
        (HeadChanged("sample-app", 1, "a" * 40, "b" * 40), Exit.REFUSED),
        (PullRequestNotFound("sample-app", 42), Exit.NOT_FOUND),
        (ForgeUnavailable("github answered 503"), Exit.UNREACHABLE),
    ],
)
def test_each_kind_of_error_is_one_line_and_its_own_exit_code(
    error: BatonError,
    code: Exit,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fail() -> None:
        raise error

    monkeypatch.setattr(main, "app", fail)
    assert main.run() == code
    assert capsys.readouterr().err == f"error: {error}\n"


def test_the_exit_codes_are_the_ones_the_readme_lists() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n#", 1)[0]
    listed = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")]
    assert listed[1:] == [str(int(code)) for code in Exit]


def test_a_bad_command_line_exits_2_before_reaching_temporal(baton: Baton) -> None:
    code, _, err = baton("changes", "wait", "web/1", "--until", "deployed:prod", "--timeout", "x")
    assert (code, err) == (2, "error: --timeout 'x': give a duration like 90s, 30m or 2h\n")
    code, _, _ = baton("changes", "watch")
    assert code == 2


def test_the_client_reaches_temporal_on_baton_temporal_port_as_dev_status_does(
    monkeypatch: pytest.MonkeyPatch, baton: Baton
) -> None:
    port = closed_port()
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    monkeypatch.setenv("BATON_TEMPORAL_PORT", str(port))
    assert connect_config()["target_host"] == f"127.0.0.1:{port}"

    code, out, err = baton("changes", "ls")

    assert (code, out) == (Exit.UNREACHABLE, "")
    assert err.startswith(f"error: cannot reach Temporal at 127.0.0.1:{port} (")
    assert len(err.splitlines()) == 1
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{port + 1}")
    assert connect_config()["target_host"] == f"127.0.0.1:{port + 1}"


def test_a_missing_temporal_is_installed_by_make_install_helm_by_make_tools(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("baton.tools.search_path", lambda: str(tmp_path))
    for tool, fix in [("temporal", "make install"), ("helm", "make tools")]:
        with pytest.raises(ToolNotFound) as missing:
            find_tool(tool)
        assert f"run `{fix}` or put {tool} on PATH" in str(missing.value)
    assert "make install" in (PROJECT_ROOT / "Makefile").read_text().split("tools:")[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def local_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry_port: int | None = None
) -> Stack:
    """The embedded stack of a home of its own, on ports nothing uses (the registry's: given)."""
    config = yaml.safe_load((PROJECT_ROOT / "examples" / "baton.yaml").read_text())
    config["registry"]["url"] = f"127.0.0.1:{registry_port or closed_port()}"
    (tmp_path / "baton.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BATON_CONFIG", str(tmp_path / "baton.yaml"))
    for setting in ("BATON_TEMPORAL_PORT", "BATON_TEMPORAL_UI_PORT", "BATON_API_PORT"):
        monkeypatch.setenv(setting, str(closed_port()))
    return Stack(Settings())


def test_a_busy_registry_port_points_at_registry_url_in_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, busy_port: int
) -> None:
    stack = local_stack(tmp_path, monkeypatch, registry_port=busy_port)
    with pytest.raises(StackError) as busy:
        stack.up()
    assert str(busy.value) == (
        f"port {busy_port} on 127.0.0.1 is in use by another process (needed by registry): stop "
        f"that process or change the port of registry.url in {tmp_path / 'baton.yaml'}"
    )


@pytest.mark.parametrize("service", ["temporal", "api"])
def test_a_busy_service_port_names_the_setting_that_moves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, busy_port: int, service: str
) -> None:
    local_stack(tmp_path, monkeypatch)
    monkeypatch.setenv(f"BATON_{service.upper()}_PORT", str(busy_port))
    with pytest.raises(StackError) as busy:
        Stack(Settings()).up()
    assert str(busy.value).endswith(
        f"(needed by {service}): stop that process or set BATON_{service.upper()}_PORT"
    )


def test_dev_status_lists_the_services_and_says_the_config_is_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, baton: Baton
) -> None:
    stack = local_stack(tmp_path, monkeypatch)
    run_dir = stack.settings.home / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "api.pid").write_text(str(os.getpid()))  # a live pid: the API runs
    (tmp_path / "baton.yaml").write_text("apps: {}\n")

    code, out, err = baton("dev", "status")

    assert code == 1
    assert out.split() == [
        *("temporal", "stopped", "api", "running", "(pid", f"{os.getpid()})"),
        *("worker", "stopped", "cluster", "stopped"),
    ]
    assert err.startswith(f"the configuration is broken: {tmp_path / 'baton.yaml'}: apps")
    assert len(err.splitlines()) == 1
    code, out, _ = baton("dev", "status", "--json")
    status = json.loads(out)
    assert code == 1 and status["services"]["api"] == {"running": True, "pid": os.getpid()}
    assert status["config"]["problem"].startswith(f"{tmp_path / 'baton.yaml'}: apps")


PUSH, PULL = "BATON_REGISTRY_PASSWORD", "BATON_REGISTRY_PULL_PASSWORD"


def spawned_secrets(stack: Stack, names: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Which of the variables `names` (and their values) each service of `stack` starts with
    (each spawned as a process that prints its environment); a `_FILE` goes with its variable."""
    stack.run_dir.mkdir(parents=True, exist_ok=True)
    stack.log_dir.mkdir(parents=True, exist_ok=True)
    dump = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    seen = {}
    for service in services(stack.settings, stack.config):
        stack._spawn(dataclasses.replace(service, command=dump))
        pid = int((stack.run_dir / f"{service.name}.pid").read_text())
        os.waitpid(pid, 0)
        env = json.loads((stack.log_dir / f"{service.name}.log").read_text())
        seen[service.name] = {name: env[name] for name in names if name in env}
        for name in names:
            assert (f"{name}_FILE" in env) <= (name in env)
    return seen


@pytest.mark.docker
def test_the_worker_builds_app_images_from_the_local_base_image_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_image: str
) -> None:
    """`baton dev up` in a shell without BATON_BASE_IMAGE (not through make) still builds the
    sample app from the Debian-built base image `make docker` made, not from Docker Hub."""
    monkeypatch.delenv(BASE_IMAGE, raising=False)
    (tmp_path / "default").mkdir()
    (tmp_path / "set").mkdir()
    seen = spawned_secrets(local_stack(tmp_path / "default", monkeypatch), (BASE_IMAGE,))
    assert seen["worker"] == {BASE_IMAGE: LOCAL_BASE_IMAGE}
    assert seen["api"] == seen["cluster"] == {}
    monkeypatch.setenv(BASE_IMAGE, "registry.example/python:3.12")
    seen = spawned_secrets(local_stack(tmp_path / "set", monkeypatch), (BASE_IMAGE,))
    assert seen["worker"] == {BASE_IMAGE: "registry.example/python:3.12"}
    monkeypatch.setenv(BASE_IMAGE, "")  # the Dockerfiles' own base
    (tmp_path / "empty").mkdir()
    seen = spawned_secrets(local_stack(tmp_path / "empty", monkeypatch), (BASE_IMAGE,))
    assert seen["worker"] == {BASE_IMAGE: ""}


def test_the_stack_worker_links_notifications_to_the_stack_board(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded stack's API serves the board, so its worker knows where (BATON_API_BASE)
    and notifications link a change's page there, not the Temporal UI; a set one wins."""
    monkeypatch.delenv("BATON_API_BASE", raising=False)
    (tmp_path / "default").mkdir()
    stack = local_stack(tmp_path / "default", monkeypatch)
    seen = spawned_secrets(stack, ("BATON_API_BASE",))
    assert seen["worker"] == {"BATON_API_BASE": stack.settings.api_url}
    assert seen["api"] == seen["cluster"] == {}
    monkeypatch.setenv("BATON_API_BASE", "https://baton.example.org")
    (tmp_path / "set").mkdir()
    seen = spawned_secrets(local_stack(tmp_path / "set", monkeypatch), ("BATON_API_BASE",))
    assert seen["worker"]["BATON_API_BASE"] == "https://baton.example.org"


def test_each_stack_process_gets_only_the_secrets_it_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = local_stack(tmp_path, monkeypatch)
    config = yaml.safe_load((tmp_path / "baton.yaml").read_text())
    config["forge"]["credentials"] = {"token_env": "FORGE_TOKEN"}
    config["forge"]["read_credentials"] = {"token_env": "FORGE_READ_TOKEN"}
    (tmp_path / "baton.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv(PUSH, "registry-secret")
    monkeypatch.setenv(f"{PUSH}_FILE", "/run/secrets/registry")
    monkeypatch.delenv(PULL, raising=False)  # generated into the secrets directory, as locally
    monkeypatch.setenv("FORGE_TOKEN", "forge-secret")
    monkeypatch.setenv("FORGE_READ_TOKEN", "forge-read-secret")
    monkeypatch.setenv("BATON_WEBHOOK_SECRET", "webhook-secret")
    names = (PUSH, PULL, "FORGE_TOKEN", "FORGE_READ_TOKEN", "BATON_WEBHOOK_SECRET")

    seen = spawned_secrets(stack, names)

    assert {name: sorted(env) for name, env in seen.items()} == {
        "temporal": [],
        "registry": [],
        "api": sorted([PULL, "FORGE_TOKEN", "BATON_WEBHOOK_SECRET"]),
        "worker": sorted([PUSH, "FORGE_TOKEN", "BATON_WEBHOOK_SECRET"]),
        "cluster": sorted([PULL, "FORGE_READ_TOKEN", "BATON_WEBHOOK_SECRET"]),
    }
    pull = (stack.settings.secrets_dir / "registry-pull-password").read_text().strip()
    assert seen["api"][PULL] == seen["cluster"][PULL] == pull != "registry-secret"


def test_secrets_exported_in_the_shell_reach_only_the_processes_that_use_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator's shell may hold every secret the config names (and their _FILE forms):
    each stack process still starts with only its own."""
    stack = local_stack(tmp_path, monkeypatch)
    config = yaml.safe_load((tmp_path / "baton.yaml").read_text())
    config["forge"]["read_credentials"] = {"token_env": "FORGE_READ_TOKEN"}
    config["images"] = {
        "mirror": [
            {
                "source": "docker.io/library/redis:7",
                "name": "mirror/redis",
                "credentials": {"username": "bot", "token_env": "MIRROR_TOKEN"},
            }
        ]
    }
    config["notifications"] = [
        {"kind": "slack", "url_env": "SLACK_WEBHOOK_URL"},
        {"kind": "webhook", "url_env": "HOOK_URL", "secret_env": "HOOK_SECRET"},
    ]
    config["apps"][0]["build_secrets"] = [{"id": "npmrc", "env": "NPM_TOKEN"}]
    (tmp_path / "baton.yaml").write_text(yaml.safe_dump(config))
    worker_only = ("MIRROR_TOKEN", "SLACK_WEBHOOK_URL", "HOOK_URL", "HOOK_SECRET", "NPM_TOKEN")
    names = (PUSH, PULL, "FORGE_READ_TOKEN", "BATON_WEBHOOK_SECRET", "BATON_TOKEN", *worker_only)
    for name in names:
        monkeypatch.setenv(name, f"{name.lower()}-value")
        monkeypatch.setenv(f"{name}_FILE", f"/run/secrets/{name.lower()}")

    seen = spawned_secrets(stack, names)

    assert {name: sorted(env) for name, env in seen.items()} == {
        "temporal": [],
        "registry": [],
        "api": sorted([PULL, "BATON_WEBHOOK_SECRET"]),
        "worker": sorted([PUSH, "BATON_WEBHOOK_SECRET", *worker_only]),
        "cluster": sorted([PULL, "FORGE_READ_TOKEN", "BATON_WEBHOOK_SECRET"]),
    }
    assert seen["worker"][PUSH] == "baton_registry_password-value"
    assert seen["api"][PULL] == seen["cluster"][PULL] == "baton_registry_pull_password-value"
