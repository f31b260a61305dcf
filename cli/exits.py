"""The exit codes of `baton`: what kind of problem stopped a command (README: Exit codes)."""

from __future__ import annotations

from enum import IntEnum

from baton.errors import (
    BatonError,
    ConfigurationError,
    DecisionRefused,
    InfrastructureError,
    NotFound,
    RequestError,
)
from cli.watch import WaitTimedOut


class Exit(IntEnum):
    OK = 0
    NOT_THROUGH = 1
    """The change failed, was rejected, aborted, closed or superseded (watch, wait, demo); or
    another error (a forge's, say)."""
    USAGE = 2
    """A wrong command line, configuration or environment variable."""
    REFUSED = 3
    """Policy or the change's state refuses the decision (approve, reject, abort...)."""
    NOT_FOUND = 4
    """No such change, or no such environment of it."""
    UNREACHABLE = 5
    """Temporal, a Baton worker or another service Baton needs does not answer."""
    TIMED_OUT = 6
    """`baton changes wait` gave up after --timeout."""


def exit_code(error: BatonError) -> Exit:
    """The exit code a command that stopped on `error` ends with."""
    if isinstance(error, WaitTimedOut):
        return Exit.TIMED_OUT
    if isinstance(error, NotFound):
        return Exit.NOT_FOUND
    if isinstance(error, RequestError | ConfigurationError):
        return Exit.USAGE
    if isinstance(error, DecisionRefused):
        return Exit.REFUSED
    if isinstance(error, InfrastructureError):
        return Exit.UNREACHABLE
    return Exit.NOT_THROUGH
