"""Heartbeats of activities that may run for more than a few seconds.

An activity whose worker dies (killed, out of memory, its host gone) sends no more heartbeats, so
Temporal retries it once the heartbeat timeout the workflow set passes (`workflows.retries
.HEARTBEAT`: seconds), instead of when its start-to-close timeout does (minutes). A blocking call
(helm, git, a forge request) cannot heartbeat by itself: `heartbeating` keeps the activity alive
from a thread of its own for as long as the activity runs, repeating the latest progress that
`report` sent (the build's current step, say), so a reader of the heartbeat still sees it. The
thread also carries Temporal's cancellation of the activity into its thread. Model: PostHog's
`common/heartbeat.py`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from temporalio import activity

F = TypeVar("F", bound=Callable[..., Any])

EVERY_S = 2.0
"""Seconds between heartbeats while nothing is reported; well under any heartbeat timeout (the
SDK sends at most one per 80% of the timeout, the latest)."""


class _Latest:
    details: tuple[Any, ...] = ()


_latest: contextvars.ContextVar[_Latest] = contextvars.ContextVar("baton_heartbeat")


def report(*details: Any) -> None:
    """Heartbeat `details` (a one-line progress) now; the keep-alive repeats them from then on."""
    latest = _latest.get(None)
    if latest is not None:
        latest.details = details
    activity.heartbeat(*details)


def heartbeating(fn: F) -> F:
    """Make the activity `fn` (under `@activity.defn`) heartbeat every `EVERY_S` seconds while it
    runs: from a thread of its own when `fn` is synchronous, from a task on the worker's event
    loop when it is a coroutine function (one that awaits a blocking call in a thread, such as a
    forge request). Outside an activity (a direct call in a test) it only calls `fn`."""
    if inspect.iscoroutinefunction(fn):
        return cast(F, _heartbeating_async(fn))

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not activity.in_activity():
            return fn(*args, **kwargs)
        latest = _Latest()
        token = _latest.set(latest)
        done = threading.Event()

        def keep_alive() -> None:
            while not done.wait(EVERY_S):
                activity.heartbeat(*latest.details)

        # A copy of this context, so activity.heartbeat finds the activity from the thread.
        beat = threading.Thread(
            target=contextvars.copy_context().run,
            args=(keep_alive,),
            name=f"heartbeat {activity.info().activity_type}",
            daemon=True,
        )
        beat.start()
        try:
            return fn(*args, **kwargs)
        finally:
            done.set()
            beat.join()
            _latest.reset(token)

    return cast(F, run)


def _heartbeating_async(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        if not activity.in_activity():
            return await fn(*args, **kwargs)
        latest = _Latest()
        token = _latest.set(latest)

        async def keep_alive() -> None:
            while True:
                await asyncio.sleep(EVERY_S)
                activity.heartbeat(*latest.details)

        beat = asyncio.create_task(keep_alive(), name=f"heartbeat {activity.info().activity_type}")
        try:
            return await fn(*args, **kwargs)
        finally:
            beat.cancel()
            _latest.reset(token)

    return run
