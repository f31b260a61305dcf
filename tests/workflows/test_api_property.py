"""A property-based run of the /api/v1 OpenAPI schema (schemathesis) against the live API.

The API is served by uvicorn on loopback and connected to a real Temporal server, as `baton dev
up` runs it. Without a credential every operation is refused with 401 (so nobody without a token
changes any rollout); with a valid token no input gives a server error or an answer outside the
schema.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from google.protobuf.duration_pb2 import Duration
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
)
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from baton.config import AppConfig, ApprovalPolicy, BatonConfig, EnvironmentConfig
from baton.settings import Settings
from baton.tokens import TokenStore
from tests.conftest import register_search_attributes
from tests.fakes.forges import Served

CONFIG = BatonConfig(
    apps=[AppConfig(name="web", repo="web", image="web", chart="chart")],
    environments=[
        EnvironmentConfig(
            name="prod", namespace="prod", approvals=ApprovalPolicy(required=1, approvers=["carol"])
        )
    ],
)
schema = schemathesis.openapi.from_dict(create_app(Settings(), CONFIG).openapi())


@pytest.fixture(scope="module")
async def namespace(temporal_env: WorkflowEnvironment) -> str:
    """A namespace of this module's own: no other test's change can be decided on by chance."""
    name = f"fuzz-{uuid.uuid4().hex[:12]}"
    await temporal_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    client = Client(temporal_env.client.service_client, namespace=name)
    await register_search_attributes(client)
    return name


@pytest.fixture(scope="module")
def live(
    temporal_env: WorkflowEnvironment, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, str]]:
    """Two URLs of the API (for calls without and with a credential) and carol's token."""
    home: Path = tmp_path_factory.mktemp("api-fuzz")
    patch = pytest.MonkeyPatch()
    patch.setenv("TEMPORAL_ADDRESS", temporal_env.client.service_client.config.target_host)
    patch.setenv("TEMPORAL_NAMESPACE", namespace)
    settings_ = Settings(home=home)
    token = TokenStore(settings_.tokens_file).create("carol").token
    # Two API processes: failed authentications from the anonymous run must not make the
    # other refuse its client for a minute (429), as they would.
    anonymous, holder = (Served(create_app(settings_, CONFIG)).start() for _ in range(2))
    try:
        yield anonymous.url, holder.url, token
    finally:
        anonymous.stop()
        holder.stop()
        patch.undo()


FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@schema.parametrize()
@FUZZ
def test_no_credential_no_access(case: schemathesis.Case, live: tuple[str, str, str]) -> None:
    url, _, _ = live
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    response = case.call(base_url=url)
    # Refused every time: 401, or 429 once the failures from this client pile up; a body that
    # cannot be parsed is refused (400, 422) before anyone is asked who sent it, and a method
    # the route does not take is not allowed (405).
    assert response.status_code in (400, 401, 405, 422, 429), (
        case.method,
        case.formatted_path,
        response.text,
    )
    assert "error" in response.json()


@schema.parametrize()
@FUZZ
def test_with_a_token_no_input_is_a_server_error(
    case: schemathesis.Case, live: tuple[str, str, str]
) -> None:
    _, url, token = live
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
    response = case.call(base_url=url)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
    case.validate_response(response, checks=(response_schema_conformance, negative_data_rejection))
