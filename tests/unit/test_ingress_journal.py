"""The API's journal of accepted starts (`baton.start_journal`): a delivery that starts a change
is answered once journaled, and its start survives the API's crash; an API stopped with SIGTERM
makes its pending starts first, for BATON_API_DRAIN_S at most; duplicates start once; a signal
right behind a journaled start reaches the started change."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from baton.config import load_config
from baton.settings import Settings
from baton.temporal import change_id
from baton.tools import PROJECT_ROOT
from bench.ingress import SECRET, delivery
from bench.shared import dev_server
from tests.conftest import PATIENCE_S, eventually, eventually_async
from tests.fixtures.ports import free_port

CONFIG = PROJECT_ROOT / "examples" / "baton.yaml"  # app sample-app, repository sample-app


def journaled(home: Path) -> list[str]:
    """The workflow ids the journal in `home` holds."""
    with sqlite3.connect(Settings(home=home).start_journal_file) as db:
        return [row[0] for row in db.execute("SELECT workflow_id FROM pending_starts")]


async def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(f"{url}/webhooks/github", content=body, headers=headers)


@contextmanager
def api_process(
    home: Path, temporal: str, port: int, **env_vars: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m api` on `port` with `home` (and `env_vars`): its URL and process, killed
    (SIGKILL, as a crash) when the block ends if it still runs."""
    env = {
        **os.environ,
        **env_vars,
        "BATON_HOME": str(home),
        "BATON_CONFIG": str(CONFIG),
        "BATON_API_PORT": str(port),
        "BATON_WEBHOOK_SECRET": SECRET,
        "TEMPORAL_ADDRESS": temporal,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "api"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                return httpx.get(f"{url}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        eventually(healthy, what="the API to answer /healthz")
        yield url, process
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def server_process(port: int) -> int:
    """The pid of this process's child Temporal dev server listening on `port`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = next(line for line in status.splitlines() if line.startswith("PPid:"))
        if int(parent.split()[1]) == os.getpid() and str(port).encode() in command:
            return int(entry.name)
    raise AssertionError(f"no dev server of this test on port {port}")


@pytest.fixture
async def own_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of this test's own, which it may freeze."""
    async with dev_server() as env:
        yield env


async def test_a_start_accepted_before_the_api_crashed_is_made_after_its_restart(
    own_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Temporal frozen (SIGSTOP), so no start can be made: the delivery is answered 202 from the
    journal, the API is killed with the entry pending, and the restarted API starts it."""
    client = own_server.client
    target = client.service_client.config.target_host
    server = server_process(int(target.rpartition(":")[2]))
    home, port = tmp_path / "home", free_port()
    with api_process(home, target, port) as (url, _):
        os.kill(server, signal.SIGSTOP)
        try:
            body, headers = delivery(7)
            answer = await post(url, body, headers)
            assert (answer.status_code, answer.json()["result"]) == (
                202,
                f"accepted: starting {change_id('sample-app', 7)}",
            )
            assert journaled(home) == [change_id("sample-app", 7)]
            async with httpx.AsyncClient() as http:  # what an alert on a stuck start reads
                scraped = (await http.get(f"{url}/metrics")).text
            assert "\nbaton_pending_starts 1.0\n" in scraped
        except BaseException:
            os.kill(server, signal.SIGCONT)
            raise
    # The API was killed with the start pending: Temporal, frozen, could not have taken it.
    os.kill(server, signal.SIGCONT)
    assert journaled(home) == [change_id("sample-app", 7)]

    with api_process(home, target, port) as (url, _):
        handle = client.get_workflow_handle(change_id("sample-app", 7))
        await eventually_async(lambda: _status(handle), what="the change to run")
        eventually(lambda: journaled(home) == [], what="the journal to be empty")
        # The forge's redelivery after its timeout: no second start.
        again = await post(url, body, headers)
        assert again.status_code == 202, again.text
        eventually(lambda: journaled(home) == [], what="the journal to be empty")
    assert await _runs(client, change_id("sample-app", 7)) == 1


async def test_an_api_stopped_with_sigterm_makes_its_pending_starts_first(
    own_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A replica scaled down (SIGTERM) while Temporal is frozen: it waits for Temporal to take
    the pending start before it exits, and leaves an empty journal."""
    client = own_server.client
    target = client.service_client.config.target_host
    server = server_process(int(target.rpartition(":")[2]))
    home = tmp_path / "home"
    with api_process(home, target, free_port()) as (url, api):
        os.kill(server, signal.SIGSTOP)
        try:
            answer = await post(url, *delivery(8))
            assert answer.status_code == 202, answer.text
            api.send_signal(signal.SIGTERM)
            logged(api, "making 1 pending start(s) before stopping")
        finally:
            os.kill(server, signal.SIGCONT)
        # uvicorn ends by raising the SIGTERM it caught, once the lifespan's shutdown returned.
        assert api.wait(timeout=PATIENCE_S) == -signal.SIGTERM
    assert journaled(home) == []
    assert await _status(client.get_workflow_handle(change_id("sample-app", 8))) is not None


async def test_a_start_temporal_does_not_take_within_the_drain_time_stays_journaled(
    own_server: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_WEBHOOK_SECRET", SECRET)
    target = own_server.client.service_client.config.target_host
    server = server_process(int(target.rpartition(":")[2]))
    home = tmp_path / "home"
    settings = Settings(home=home, api_drain_s=0.5)
    app = create_app(settings, load_config(CONFIG), own_server.client)
    os.kill(server, signal.SIGSTOP)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
                body, headers = delivery(9)
                answer = await http.post("/webhooks/github", content=body, headers=headers)
            assert answer.status_code == 202, answer.text
        # The shutdown returned with Temporal still frozen: the start waits for the next run.
        assert journaled(home) == [change_id("sample-app", 9)]
    finally:
        os.kill(server, signal.SIGCONT)


async def test_a_start_no_retry_can_make_is_put_aside_and_the_others_are_made(
    own_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A start journaled while Temporal was frozen, and beside it one as an earlier Baton wrote
    it, which no longer reads as a change (its `plan` was then `config`). The restarted API puts
    that one aside before it makes any start (no retry loop), says so in its log and metrics,
    makes the other, and the forge's redelivery of the refused one's PR starts its change."""
    client = own_server.client
    target = client.service_client.config.target_host
    server = server_process(int(target.rpartition(":")[2]))
    home, port = tmp_path / "home", free_port()
    old, good = change_id("sample-app", 11), change_id("sample-app", 12)
    with api_process(home, target, port) as (url, _):
        os.kill(server, signal.SIGSTOP)
        try:
            answer = await post(url, *delivery(12))
            assert answer.status_code == 202, answer.text
        except BaseException:
            os.kill(server, signal.SIGCONT)
            raise
    os.kill(server, signal.SIGCONT)  # the API was killed first, its start pending
    with sqlite3.connect(Settings(home=home).start_journal_file) as db:
        (input_json, summary) = db.execute(
            "SELECT input, summary FROM pending_starts WHERE workflow_id = ?", (good,)
        ).fetchone()
        earlier = json.loads(input_json)
        earlier["config"] = earlier.pop("plan")
        db.execute(
            "INSERT INTO pending_starts (workflow_id, input, summary) VALUES (?, ?, ?)",
            (old, json.dumps(earlier), summary),
        )
    assert sorted(journaled(home)) == [old, good]

    with api_process(home, target, port) as (url, api):
        said = logged(api, f"start of {old} ")  # its first word on it: no retry first
        assert f"start of {old} refused, put aside in " in said, said
        await eventually_async(
            lambda: _status(client.get_workflow_handle(good)), what="the readable start made"
        )
        eventually(lambda: journaled(home) == [], what="the journal to be empty")
        async with httpx.AsyncClient() as http:
            scraped = (await http.get(f"{url}/metrics")).text
        assert "\nbaton_refused_starts 1.0\n" in scraped
        assert "\nbaton_pending_starts 0.0\n" in scraped
        with sqlite3.connect(Settings(home=home).start_journal_file) as db:
            ((workflow_id, reason),) = db.execute(
                "SELECT workflow_id, reason FROM refused_starts"
            ).fetchall()
        assert workflow_id == old
        assert reason == (
            "its journaled input is not a change this Baton can read (plan: Field required; "
            "1 error(s) in all)"
        )
        assert await _status(client.get_workflow_handle(old)) is None  # nothing sent it
        again = await post(url, *delivery(11))  # the forge's redelivery (or the reconciler)
        assert again.status_code == 202, again.text
        await eventually_async(
            lambda: _status(client.get_workflow_handle(old)), what="the redelivered start made"
        )
    assert await _runs(client, good) == 1


def logged(process: subprocess.Popen[bytes], text: str) -> str:
    """Read `process`'s log (stderr) until a line holds `text`, and return that line; fail if
    it ends without one."""
    assert process.stderr is not None
    for line in process.stderr:
        if text.encode() in line:
            return line.decode()
    raise AssertionError(f"the process ended without logging {text!r}")


async def _status(handle: WorkflowHandle) -> WorkflowExecutionStatus | None:
    try:
        return (await handle.describe()).status
    except RPCError as exc:  # not started yet
        assert exc.status == RPCStatusCode.NOT_FOUND, exc
        return None


async def _runs(client: Client, workflow_id: str) -> int:
    async def listed() -> int:
        return len([e async for e in client.list_workflows(f"WorkflowId = '{workflow_id}'")])

    return await eventually_async(listed, what=f"visibility to list {workflow_id}")


async def test_duplicates_start_once_and_a_signal_right_behind_reaches_the_change(
    temporal_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_WEBHOOK_SECRET", SECRET)
    client = temporal_env.client
    number = int(uuid.uuid4().int % 10**8) + 10**8  # a change of its own on the session's server
    workflow_id = change_id("sample-app", number)
    app = create_app(Settings(home=tmp_path / "home"), load_config(CONFIG), client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
            answers = [
                await http.post("/webhooks/github", content=body, headers=headers)
                for body, headers in [
                    delivery(number),
                    delivery(number),  # another delivery of the same event
                    delivery(number, "synchronize", head=2),
                ]
            ]
        assert [(a.status_code, a.json()["result"]) for a in answers] == [
            (202, f"accepted: starting {workflow_id}"),
            (202, f"accepted: starting {workflow_id}"),
            (202, f"signalled {workflow_id}"),
        ]
        await app.state.journal.drained()
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    signalled = [
        json.loads(e.workflow_execution_signaled_event_attributes.input.payloads[0].data)
        for e in history.events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert [(s["action"], s["head_sha"]) for s in signalled] == [("synchronize", f"{2:040x}")]
    assert journaled(tmp_path / "home") == []
    assert await _runs(client, workflow_id) == 1
    await client.get_workflow_handle(workflow_id).terminate("test over")
