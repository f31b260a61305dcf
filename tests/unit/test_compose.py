"""docker-compose.yml stays valid and production-shaped: Temporal on PostgreSQL with its UI, every
image pinned, Baton's search attributes registered (by deploy/temporal/register-search-attributes.sh,
tried here against a real Temporal server) before Baton's processes start, which are the
embedded stack's."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import uuid

import yaml
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.testing import WorkflowEnvironment

from baton.settings import Settings
from baton.temporal import DEV_SERVER_DYNAMIC_CONFIG, SearchAttributes
from baton.tools import PROJECT_ROOT, find_tool
from tests.fixtures import unavailable

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
REGISTER = PROJECT_ROOT / "deploy" / "temporal" / "register-search-attributes.sh"
PUSH, PULL = "BATON_REGISTRY_PASSWORD", "BATON_REGISTRY_PULL_PASSWORD"
SECRETS = {"BATON_WEBHOOK_SECRET": "x", PUSH: "y", PULL: "w", "TEMPORAL_DB_PASSWORD": "z"}
BATON_SERVICES = ("api", "worker", "cluster")


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    if tool is None:
        unavailable("docker-compose not installed: run `make docker`")
    return subprocess.run(
        [tool, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        env={**env, "PATH": "/usr/bin:/bin"},
    )


def test_compose_file_is_valid() -> None:
    result = _compose_config(SECRETS)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_run_without_the_database_password() -> None:
    result = _compose_config({k: v for k, v in SECRETS.items() if k != "TEMPORAL_DB_PASSWORD"})
    assert result.returncode != 0
    assert "set TEMPORAL_DB_PASSWORD" in result.stderr


def _services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_compose_runs_the_embedded_stacks_processes() -> None:
    services = _services()
    commands = {name: service.get("command") for name, service in services.items()}
    assert commands["api"] == ["python", "-m", "api"]
    assert commands["worker"] == ["python", "-m", "workers.main"]
    assert commands["cluster"] == ["python", "-m", "baton.local.cluster"]
    assert all(service["network_mode"] == "host" for service in services.values())


def test_compose_gives_the_registry_push_password_to_the_worker_alone() -> None:
    services = _services()
    holds = {
        name: sorted({PUSH, PULL} & set(services[name]["environment"])) for name in BATON_SERVICES
    }
    assert holds == {"api": [PULL], "worker": [PUSH], "cluster": [PULL]}
    assert all("BATON_WEBHOOK_SECRET" in services[name]["environment"] for name in BATON_SERVICES)
    config = yaml.safe_load((PROJECT_ROOT / "examples" / "baton.yaml").read_text())
    assert config["registry"]["pull_credentials"]["token_env"] == PULL


def test_compose_runs_a_production_shaped_temporal_with_pinned_images() -> None:
    services = _services()
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert services["temporal"]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:\d[\w.-]*", image), f"{name}: {image} is not pinned by tag"


def test_compose_temporal_loads_its_queues_as_often_as_the_dev_server() -> None:
    temporal = _services()["temporal"]
    path = temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    mounted = {
        volume.split(":")[1]: PROJECT_ROOT / volume.split(":")[0] for volume in temporal["volumes"]
    }
    dynamic = yaml.safe_load(mounted[f"/etc/temporal/{path}"].read_text())
    assert {key: values[0]["value"] for key, values in dynamic.items()} == (
        DEV_SERVER_DYNAMIC_CONFIG
    )


def test_compose_registers_every_search_attribute_before_baton_starts() -> None:
    services = _services()
    setup = services["temporal-search-attributes"]
    assert setup["image"].startswith("temporalio/admin-tools:")
    assert setup["entrypoint"][-1] == "/scripts/register-search-attributes.sh"
    assert (
        f"./{REGISTER.relative_to(PROJECT_ROOT)}:/scripts/register-search-attributes.sh:ro"
        in (setup["volumes"])
    )
    for name in BATON_SERVICES:
        condition = services[name]["depends_on"]["temporal-search-attributes"]["condition"]
        assert condition == "service_completed_successfully", name
    listed = re.search(r'^ATTRIBUTES="([^"]*)"', REGISTER.read_text(), re.MULTILINE)
    assert listed is not None
    assert listed.group(1).split() == [key.name for key in SearchAttributes.ALL]


async def test_register_script_registers_every_attribute_on_a_real_server(
    temporal_env: WorkflowEnvironment,
) -> None:
    client = temporal_env.client
    namespace = f"compose-{uuid.uuid4().hex[:12]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": namespace,
        "TEMPORAL_CLI": find_tool("temporal"),
    }
    for _ in range(2):  # a second run (a restarted container) changes nothing and succeeds
        done = await asyncio.to_thread(
            subprocess.run,
            ["sh", str(REGISTER)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    assert {key.name: listed.custom_attributes.get(key.name) for key in SearchAttributes.ALL} == {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SearchAttributes.ALL
    }


def test_the_apis_start_journal_outlives_its_container_and_has_time_to_drain() -> None:
    api = _services()["api"]
    assert "baton-data:/data" in api["volumes"]  # a named volume: kept across recreation
    drain_s = Settings.model_fields["api_drain_s"].default  # BATON_API_DRAIN_S's
    assert int(api["stop_grace_period"].removesuffix("s")) > drain_s
