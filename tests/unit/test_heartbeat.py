"""Long activities heartbeat while they block, repeating the latest progress they reported."""

from __future__ import annotations

import asyncio
import threading

import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities import heartbeat
from activities.heartbeat import heartbeating, report


def test_a_blocked_activity_keeps_heartbeating_its_latest_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(heartbeat, "EVERY_S", 0.05)
    beats: list[tuple[object, ...]] = []
    enough = threading.Event()

    def seen(*details: object) -> None:
        beats.append(details)
        if beats.count(("step 2/3",)) >= 3:
            enough.set()

    @activity.defn
    @heartbeating
    def render() -> str:
        report("step 2/3")
        # Blocked as in a helm or git call: only the keep-alive heartbeats meanwhile.
        assert enough.wait(10), beats
        return "rendered"

    environment = ActivityEnvironment()
    environment.on_heartbeat = seen

    assert environment.run(render) == "rendered"
    assert beats[0] == ("step 2/3",) and beats.count(("step 2/3",)) >= 3
    # Nothing beats once it returned: the keep-alive thread has ended.
    assert not [t for t in threading.enumerate() if t.name.startswith("heartbeat ")]


def test_outside_an_activity_it_only_runs_the_function() -> None:
    assert heartbeating(lambda: "ran")() == "ran"


async def test_an_async_activity_awaiting_a_blocking_call_keeps_heartbeating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A coroutine activity that awaits a forge request in a thread (the PR comment's update)
    heartbeats from the event loop meanwhile, so a worker that dies mid-call is noticed at the
    heartbeat timeout, not the start-to-close timeout; and stops once it returned."""
    monkeypatch.setattr(heartbeat, "EVERY_S", 0.05)
    beats: list[tuple[object, ...]] = []
    enough = threading.Event()

    def seen(*details: object) -> None:
        beats.append(details)
        if len(beats) >= 3:
            enough.set()

    @activity.defn
    @heartbeating
    async def update_comment() -> int:
        # Blocked in a thread as asyncio.to_thread(forge.upsert_comment, ...) is.
        assert await asyncio.to_thread(enough.wait, 10), beats
        return 7

    environment = ActivityEnvironment()
    environment.on_heartbeat = seen

    assert await environment.run(update_comment) == 7
    counted = len(beats)
    await asyncio.sleep(0.2)
    assert counted >= 3 and len(beats) == counted
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("heartbeat ")]


async def test_an_async_activity_outside_an_activity_only_runs() -> None:
    async def ran() -> str:
        return "ran"

    assert await heartbeating(ran)() == "ran"
