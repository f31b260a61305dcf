"""The exit codes of `baton`: what kind of problem stopped a command (README: Exit codes).

Every command imports this module, so it imports nothing heavy: the error classes of the forges
and of `cli.watch` are looked up among the modules already loaded (an error of a module that was
never imported cannot have been raised).
"""

from __future__ import annotations

import sys
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


class _Never(Exception):
    """No error is one of these: what `_loaded` gives for a class whose module is not loaded."""


def _loaded(module: str, name: str) -> type[Exception]:
    """The class `module.name` if `module` is loaded, else `_Never` (nothing raised it)."""
    loaded = sys.modules.get(module)
    found = getattr(loaded, name, None) if loaded is not None else None
    return found if isinstance(found, type) and issubclass(found, Exception) else _Never


def exit_code(error: BatonError) -> Exit:
    """The exit code a command that stopped on `error` ends with."""
    if isinstance(error, _loaded("cli.watch", "WaitTimedOut")):
        return Exit.TIMED_OUT
    not_found = (
        NotFound,
        _loaded("baton.forges.base", "PullRequestNotFound"),
        _loaded("baton.forges.base", "RepositoryNotFound"),
        _loaded("baton.forges.base", "BranchNotFound"),
        _loaded("baton.forges.http", "ResourceNotFound"),
    )
    if isinstance(error, not_found):
        return Exit.NOT_FOUND
    if isinstance(error, RequestError | ConfigurationError):
        return Exit.USAGE
    if isinstance(error, (DecisionRefused, _loaded("baton.forges.base", "ForgeRefusal"))):
        return Exit.REFUSED
    if error.retryable:  # a service, tool, forge or cluster that may come back
        return Exit.UNREACHABLE
    return Exit.NOT_THROUGH
