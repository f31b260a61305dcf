"""The exit codes of `baton`: what kind of problem stopped a command (README: Exit codes).

Every command imports this module, so it imports nothing heavy: the error classes of the forges
and of `cli.watch` are imported when a command has failed.
"""

from __future__ import annotations

from enum import IntEnum

from baton.errors import (
    BatonError,
    ConfigurationError,
    DecisionRefused,
    NotFound,
    RequestError,
)


class Exit(IntEnum):
    OK = 0
    NOT_THROUGH = 1
    """The change failed, was rejected, aborted, closed, superseded or batched (watch, wait, demo); or
    an error of no other kind."""
    USAGE = 2
    """A wrong command line, configuration or environment variable."""
    REFUSED = 3
    """Policy or the state of the change (or of a pull request) refuses what was asked."""
    NOT_FOUND = 4
    """No such change, environment of it, repository, branch or pull request."""
    UNREACHABLE = 5
    """A service Baton needs does not answer or cannot start (Temporal, a worker, a taken port)."""
    TIMED_OUT = 6
    """`baton changes wait` gave up after --timeout."""


def exit_code(error: BatonError) -> Exit:
    """The exit code a command that stopped on `error` ends with."""
    from baton.forges.base import (
        BranchNotFound,
        ForgeRefusal,
        PullRequestNotFound,
        RepositoryNotFound,
    )
    from baton.forges.http import ResourceNotFound
    from cli.watch import WaitTimedOut

    # What a command names that does not exist: a change, an environment of it, a forge's object.
    not_found = (
        NotFound,
        PullRequestNotFound,
        RepositoryNotFound,
        BranchNotFound,
        ResourceNotFound,
    )
    if isinstance(error, WaitTimedOut):
        return Exit.TIMED_OUT
    if isinstance(error, not_found):
        return Exit.NOT_FOUND
    if isinstance(error, RequestError | ConfigurationError):
        return Exit.USAGE
    if isinstance(error, DecisionRefused | ForgeRefusal):
        return Exit.REFUSED
    if error.retryable:  # a service, tool, forge or cluster that may come back
        return Exit.UNREACHABLE
    return Exit.NOT_THROUGH
