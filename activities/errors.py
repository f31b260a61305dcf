"""How Baton's errors leave an activity: as `ApplicationError`s typed by their class.

The type is the class name (what workflows' retry policies list via `baton.errors.non_retryable`),
and the class's `retryable` decides whether Temporal tries again, whatever the policy says.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from temporalio.exceptions import ApplicationError

from baton.errors import BatonError

F = TypeVar("F", bound=Callable[..., Any])


def application_error(error: BatonError) -> ApplicationError:
    """`error` as Temporal carries it: same message, its class name as type, retried if it says so."""
    details = error.details()
    return ApplicationError(
        str(error),
        *([details] if details else []),
        type=type(error).__name__,
        non_retryable=not error.retryable,
        next_retry_delay=error.next_retry_delay,
    )


def typed_errors(fn: F) -> F:
    """Make `fn` (an activity, under `@activity.defn`) raise its BatonErrors as `application_error`s."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except BatonError as error:
                raise application_error(error) from error

        return cast(F, run_async)

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BatonError as error:
            raise application_error(error) from error

    return cast(F, run)
