"""`workflows.rollout.steps.background`: work a rollout starts and may never await (the poll
of a sync gate it passed by an event, a verification pre-check when the render failed) ends
without asyncio logging "Task exception was never retrieved", while awaiting it still raises."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from workflows.rollout.steps import background


async def refused() -> str:
    raise RuntimeError("the cluster said no")


def unhandled(loop: asyncio.AbstractEventLoop) -> list[dict[str, Any]]:
    """What the loop's exception handler receives from now on."""
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: seen.append(context))
    return seen


async def test_work_that_fails_unawaited_is_not_logged() -> None:
    seen = unhandled(asyncio.get_running_loop())
    future = background(refused())
    await asyncio.sleep(0)
    assert future.done()
    del future
    gc.collect()
    assert seen == []


async def test_plain_futures_would_be_logged() -> None:
    """The check above can fail: the same work as a plain task is reported."""
    seen = unhandled(asyncio.get_running_loop())
    future = asyncio.ensure_future(refused())
    await asyncio.sleep(0)
    del future
    gc.collect()
    assert [c["message"] for c in seen] == ["Task exception was never retrieved"]


async def test_awaiting_it_still_raises_and_returns() -> None:
    with pytest.raises(RuntimeError, match="the cluster said no"):
        await background(refused())

    async def fine() -> str:
        return "synced"

    assert await background(fine()) == "synced"


async def test_cancelled_work_is_not_logged() -> None:
    seen = unhandled(asyncio.get_running_loop())
    future = background(asyncio.sleep(60))
    await asyncio.sleep(0)
    future.cancel()
    await asyncio.sleep(0)
    assert future.cancelled()
    del future
    gc.collect()
    assert seen == []
