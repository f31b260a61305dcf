"""Temporal wiring shared by the CLI, the API and the workers: connection, task queues, search attributes."""

from __future__ import annotations

import os

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

from baton.errors import BatonError


class TaskQueues:
    """Where work runs. At scale, BUILD workers sit next to a container engine, DEPLOY next to clusters."""

    WORKFLOWS = "baton-workflows"
    BUILD = "baton-build"
    DEPLOY = "baton-deploy"


class SearchAttributes:
    """Typed search attributes shown in the Temporal UI. Never put secrets in them."""

    APP = SearchAttributeKey.for_keyword("BatonApp")
    STAGE = SearchAttributeKey.for_keyword("BatonStage")
    COMMIT = SearchAttributeKey.for_keyword("BatonCommit")
    PR = SearchAttributeKey.for_keyword("BatonPR")
    ENVIRONMENT = SearchAttributeKey.for_keyword("BatonEnvironment")
    GATE = SearchAttributeKey.for_keyword("BatonGate")

    ALL = (APP, STAGE, COMMIT, PR, ENVIRONMENT, GATE)

    @classmethod
    def dev_server_flags(cls) -> list[str]:
        """`temporal server start-dev` flags that register every attribute."""
        flags = []
        for key in cls.ALL:
            flags += ["--search-attribute", f"{key.name}=Keyword"]
        return flags


class TemporalUnavailable(BatonError):
    def __init__(self, target: str, reason: str) -> None:
        super().__init__(
            f"cannot reach Temporal at {target} ({reason}): start it with `baton dev up` "
            f"or set TEMPORAL_ADDRESS"
        )


def connect_config() -> dict:
    """Connection settings from TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS and API-key variables."""
    config = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"))
    return config


async def connect(target_host: str | None = None) -> Client:
    """A client with Baton's pydantic data converter; fails with one clear line when unreachable."""
    config = connect_config()
    if target_host:
        config["target_host"] = target_host
    try:
        return await Client.connect(**config, data_converter=pydantic_data_converter)
    except RuntimeError as exc:
        reason = "connection refused" if "refused" in str(exc) else str(exc).splitlines()[0][:200]
        raise TemporalUnavailable(config["target_host"], reason) from None
