"""The embedded stack starts what does not wait on each other together, and stops it together:
the worker does not wait for the API to answer before it starts, and `down` stops everything."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import httpx
import pytest

from baton.local import stack as local_stack_module
from baton.local.stack import Service, Stack
from baton.temporal import DEV_SERVER_DYNAMIC_CONFIG
from tests.unit.test_cli_errors import local_stack
from tests.unit.test_rollback_activities import closed_port

SERVE = """
import http.server, pathlib, sys, time
port, after = int(sys.argv[1]), sys.argv[2:]
while after and not pathlib.Path(after[0]).exists():
    time.sleep(0.05)
http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
"""
"""A stand-in that answers HTTP on its port, once the file it is given (if any) exists."""

MARK = "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(3600)"
"""A stand-in that says it started by creating a file, then runs until stopped."""


def stand_in(service: Service, worker_started: Path) -> Service:
    if service.name == "worker":
        command = [sys.executable, "-c", MARK, str(worker_started)]
    elif service.ready_url is None:
        command = [sys.executable, "-c", "import time; time.sleep(3600)"]
    else:
        # The API answers only once the worker has started: waiting for the API before
        # starting the worker would never end.
        after = [str(worker_started)] if service.name == "api" else []
        port = httpx.URL(service.ready_url).port
        command = [sys.executable, "-c", SERVE, str(port), *after]
    return dataclasses.replace(service, command=command)


def test_the_worker_starts_while_the_api_is_still_starting_and_down_stops_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack: Stack = local_stack(tmp_path, monkeypatch, registry_port=closed_port())
    worker_started = tmp_path / "worker-started"
    real = local_stack_module.services(stack.settings, stack.config)
    monkeypatch.setattr(
        local_stack_module,
        "services",
        lambda settings, config: [stand_in(service, worker_started) for service in real],
    )

    try:
        assert stack.up(timeout_s=60) == ["temporal", "registry", "api", "worker", "cluster"]
        assert worker_started.exists()
    finally:
        stopped = stack.down()

    assert stopped == ["cluster", "worker", "api", "registry", "temporal"]
    assert stack.status() == dict.fromkeys(stopped[::-1], None)


def test_the_embedded_temporal_loads_its_queues_without_the_default_per_shard_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One history shard holds every workflow on the dev server: at the default 20 loads a second,
    # a busy stack's tasks wait up to 50 ms each to reach a worker (baton.temporal).
    stack: Stack = local_stack(tmp_path, monkeypatch, registry_port=closed_port())
    temporal = next(
        service.command
        for service in local_stack_module.services(stack.settings, stack.config)
        if service.name == "temporal"
    )
    values = [
        temporal[i + 1] for i, flag in enumerate(temporal) if flag == "--dynamic-config-value"
    ]
    assert values == [f"{key}={value}" for key, value in DEV_SERVER_DYNAMIC_CONFIG.items()]
    assert all(value >= 1000 for value in DEV_SERVER_DYNAMIC_CONFIG.values())
