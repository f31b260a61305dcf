"""How workflows retry their activities: every retry policy in one place.

Temporal stops retrying an activity whose `ApplicationError` type is named in the policy's
`non_retryable_error_types`. Those names come from the error classes (`baton.errors`), never by
hand; an error whose class says no retry can help is not retried under any policy anyway
(`activities.errors`), so these lists matter for errors raised outside Baton's own classes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from baton.errors import (
        CheckConfigError,
        ClusterConfigError,
        DeployConfigError,
        SyncFailed,
        non_retryable,
    )
    from baton.forges.base import ForgeRefusal

# Deploy steps (render, GitOps PRs, verification): retried while the forge or cluster is away.
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    # A forge refusal (the PR moved, conflicts, or is gone) or a broken deploy setup.
    non_retryable_error_types=non_retryable(DeployConfigError, ForgeRefusal),
)
# Polling the sync status: every attempt is one look; a failed sync ends the polling.
POLL = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=1.5,
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=non_retryable(SyncFailed, ClusterConfigError),
)
# A sync event is confirmed by one look at the sync status; if it does not hold, polling goes on.
ONE_LOOK = RetryPolicy(maximum_attempts=1)
# A reconcile request only hurries the cluster along: a few tries, then its own poll applies.
RECONCILE = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
# Checks are deterministic: a failing lint fails again. Retry only infrastructure errors, a few times.
CHECK_RETRY = RetryPolicy(
    maximum_attempts=3, non_retryable_error_types=non_retryable(CheckConfigError)
)
# Long tests run ahead of the merge (`AppConfig.long_tests_ahead`) only save time: starting
# them or reading their result is tried a few times, then CI runs them itself.
AHEAD = RetryPolicy(maximum_attempts=3)
# Commit statuses tell the forge the outcome: worth retrying until the forge answers.
STATUS_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
# Notifications: retried while the receiver is away (bounded by the call's schedule-to-close),
# not when it refuses the URL or the variable is unset (NotificationConfigError, by its class).
NOTIFY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
# Whether a lane's holder still runs: asked again at the next check if Temporal does not answer.
HOLDER_CHECK = RetryPolicy(maximum_attempts=3)

# Every activity that may run for more than a few seconds heartbeats (activities.heartbeat): when
# its worker dies, the attempt is retried this long after its last heartbeat, not at its
# start-to-close timeout. Short, so a crash costs seconds.
HEARTBEAT = timedelta(seconds=8)
# The reconciler's reading of the forge: the next scheduled run reads it again anyway.
ONE_READING = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=2)
# Pipeline steps: infrastructure errors (registry, container engine, forge away) are retried with
# backoff until the step's schedule-to-close timeout (`outage_wait`) ends the wait.
WAIT_OUT = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=non_retryable(CheckConfigError),
)


def outage_wait(input_wait_s: int, start_to_close: timedelta) -> dict[str, Any]:
    """Activity options that wait out an outage: retried with backoff for `input_wait_s` seconds
    from the first attempt (which also bounds the attempts' own time) instead of a few tries."""
    return {
        "start_to_close_timeout": start_to_close,
        "schedule_to_close_timeout": timedelta(seconds=input_wait_s),
        "retry_policy": WAIT_OUT,
    }


# What Baton tells on the forge (the change's comment, GitHub deployments): retried while the
# forge is away, within the call's schedule-to-close; never worth holding the change for.
TELL = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=non_retryable(ForgeRefusal),
)
