"""Temporal wiring shared by every process: connection, task queues, search attributes, and the
names processes use to reach each other's workflows (ids, workflow types, signals, updates, queries).

The API and the CLI start, signal, update and query workflows by these names only, so they never
import workflow code; each workflow class declares its handlers with the same constants.
"""

from __future__ import annotations

import hashlib
import json
import os

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
)
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from baton.change_ids import CHANGE_KEY  # noqa: F401 (re-exported: api.v1)
from baton.errors import ConfigurationError, InfrastructureError
from baton.models import ChangeInput
from baton.settings import Settings
from baton.telemetry import client_interceptors


class TaskQueues:
    """Where work runs. At scale, BUILD workers sit next to a container engine, DEPLOY next to clusters."""

    WORKFLOWS = "baton-workflows"
    BUILD = "baton-build"
    DEPLOY = "baton-deploy"


class SearchAttributes:
    """Typed search attributes shown in the Temporal UI, one meaning each. Never put secrets in them.

    `BatonState` is a change's state (`ChangeState`: validating ... completed), `BatonStep` the step a
    rollout is at (render, approval, sync ...), `BatonOutcome` how a rollout ended
    (`RolloutOutcome`). Workflows started before that split kept all three in `BatonStage`, which
    stays registered so they still run and can still be found.
    """

    APP = SearchAttributeKey.for_keyword("BatonApp")
    STATE = SearchAttributeKey.for_keyword("BatonState")
    STEP = SearchAttributeKey.for_keyword("BatonStep")
    OUTCOME = SearchAttributeKey.for_keyword("BatonOutcome")
    COMMIT = SearchAttributeKey.for_keyword("BatonCommit")
    PR = SearchAttributeKey.for_keyword("BatonPR")
    ENVIRONMENT = SearchAttributeKey.for_keyword("BatonEnvironment")
    GATE = SearchAttributeKey.for_keyword("BatonGate")
    LEGACY_STAGE = SearchAttributeKey.for_keyword("BatonStage")

    ALL = (APP, STATE, STEP, OUTCOME, COMMIT, PR, ENVIRONMENT, GATE, LEGACY_STAGE)

    @classmethod
    def dev_server_flags(cls) -> list[str]:
        """`temporal server start-dev` flags that register every attribute."""
        flags = []
        for key in cls.ALL:
            flags += ["--search-attribute", f"{key.name}=Keyword"]
        return flags


DEV_SERVER_DYNAMIC_CONFIG = {
    "history.transferProcessorMaxPollRPS": 1000,
    "history.timerProcessorMaxPollRPS": 1000,
    "history.visibilityProcessorMaxPollRPS": 1000,
}
"""Dynamic config values the Temporal dev server runs with, here and in tests and benchmarks.

The dev server has one history shard, and each shard's transfer, timer and visibility queues load
their tasks at most 20 times a second by default (temporalio/temporal
common/dynamicconfig/constants.go, `history.transferProcessorMaxPollRPS` and its siblings). With
every workflow on that one shard, a busy minute of rollouts uses the budget up, and each task then
waits up to 50 ms to reach a worker: a workflow task after an activity on another queue, an
activity on another queue, a signal's workflow task (measured: 40 ms per hop, ~180 ms from a Flux
event to verification, against ~65 ms with these values). A production cluster spreads workflows
over hundreds of shards, each with its own budget; docker-compose.yml sets the same values for its
server (deploy/temporal/dynamicconfig.yaml)."""


def dev_server_dynamic_config_flags() -> list[str]:
    """`temporal server start-dev` flags that set DEV_SERVER_DYNAMIC_CONFIG."""
    flags = []
    for key, value in DEV_SERVER_DYNAMIC_CONFIG.items():
        flags += ["--dynamic-config-value", f"{key}={value}"]
    return flags


MEMO_GATE = "gate"
"""The memo key under which changes and rollouts publish their current `Gate` (absent: none)."""


def change_id(app: str, pr_number: int | str) -> str:
    """The business key of a change: one workflow per app and pull request (`pr_number`, or a
    pushed commit's key `push-<sha12>`, see CHANGE_KEY)."""
    return f"change/{app}/{pr_number}"


def push_change_id(app: str, sha: str) -> str:
    """The change of a commit pushed to the app's release branch (its first 12 hex digits)."""
    return f"change/{app}/push-{sha[:12]}"


def batch_change_id(app: str, head: str) -> str:
    """The change of a scheduled batch of commits on the release branch, by its head commit (the
    first 12 hex digits): a retried schedule action finds the batch it started."""
    return f"change/{app}/batch-{head[:12]}"


def ci_schedule_id(app: str) -> str:
    """The Temporal Schedule that integrates `app`'s release branch in batches (`apps[].ci`)."""
    return f"ci-batch-{app}"


def rollout_id(app: str, environment: str, commit: str) -> str:
    """One rollout per app, environment and app commit."""
    return f"rollout/{app}/{environment}/{commit}"


def rollout_environment(workflow_id: str) -> str:
    """The environment a rollout's id (`rollout_id`) names."""
    return workflow_id.split("/")[2]


def long_tests_id(app: str, tree: str, commands: list[str]) -> str:
    """One run of an app's long tests per tree and set of commands (`ci.long_tests:
    pull_request`): the PR pipeline starts it, CI of a merge commit with that tree reads it.
    The commands are in it by their sha256 (12 hex digits), so changed commands run again."""
    digest = hashlib.sha256(json.dumps(commands).encode()).hexdigest()[:12]
    return f"long-tests/{app}/{tree}/{digest}"


def lane_id(app: str, environment: str) -> str:
    """One lane per app and environment."""
    return f"lane/{app}/{environment}"


def holds_id(environment: str) -> str:
    """One holds workflow per environment (`baton.holds`)."""
    return f"hold/{environment}"


def promote_change_id(app: str, commit: str, environment: str) -> str:
    """A deliberate promotion (`baton promote`) of an app's commit into an environment."""
    return f"change/{app}/promote-{commit[:12]}-{environment}"


def pipeline_id(change: str, run: str) -> str:
    """A change's pipeline: `pr-<n>` for the nth validation of the PR, `ci` for integration."""
    return f"{change}/{run}"


FIRST_STATE = {
    "pull_request": "validating",
    "push": "integrating",
    "batch": "integrating",
    "promote": "promoting",
    "retry": "promoting",
}
"""The state a change starts in, by what started it (`ChangeInput.trigger`)."""


def initial_search_attributes(input: ChangeInput) -> TypedSearchAttributes:
    """What a new change shows in the Temporal UI before its workflow runs."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(SearchAttributes.APP, input.plan.app.name),
            *(
                [SearchAttributePair(SearchAttributes.PR, str(input.pr_number))]
                if input.pr_number is not None
                else []
            ),
            SearchAttributePair(SearchAttributes.COMMIT, input.head_sha),
            SearchAttributePair(SearchAttributes.STATE, FIRST_STATE[input.trigger]),
        ]
    )


class WorkflowTypes:
    CHANGE = "ChangeWorkflow"
    PR_PIPELINE = "PullRequestPipeline"
    CI_PIPELINE = "CIPipeline"
    ROLLOUT = "EnvironmentRollout"
    LANE = "EnvironmentLane"
    HOLDS = "EnvironmentHolds"
    IMAGE_REFRESH = "ImageRefresh"
    CI_BATCH = "CIBatch"
    RECONCILE = "Reconcile"
    LONG_TESTS = "LongTests"


IMAGE_REFRESH_SCHEDULE = "images-refresh"
"""The Temporal Schedule that starts ImageRefresh on `images.refresh`'s cron."""
RECONCILE_SCHEDULE = "reconcile"
"""The Temporal Schedule that starts Reconcile every `reconcile.interval`."""


class Signals:
    # ChangeWorkflow
    PULL_REQUEST_EVENT = "pull_request_event"
    LANE_UPDATE = "lane_update"
    HOLD_UPDATE = "hold_update"
    # EnvironmentRollout
    FORGE_REVIEW = "forge_review"
    GITOPS_MERGED = "gitops_merged"
    SUPERSEDE = "supersede"
    SYNC_EVENT = "sync_event"
    # EnvironmentLane
    JOIN = "join"
    RELEASE = "release"
    # EnvironmentHolds
    WATCH = "watch"
    # LongTests
    PR_CHECKS = "pr_checks"


class Updates:
    # EnvironmentRollout
    APPROVE = "approve"
    REJECT = "reject"
    OVERRIDE_FREEZE = "override_freeze"
    # ChangeWorkflow
    ABORT = "abort"
    RERUN = "rerun"
    # EnvironmentHolds
    HOLD = "hold"
    UNHOLD = "unhold"
    # LongTests
    LONG_TESTS_PASSED = "long_tests_passed"


class Queries:
    STATUS = "status"
    PR_CHECKS = "pr_checks"  # LongTests: the PR pipeline's checks that passed on its tree


class TemporalUnavailable(InfrastructureError):
    def __init__(self, target: str, reason: str) -> None:
        super().__init__(
            f"cannot reach Temporal at {target} ({reason}): start it with `baton dev up` "
            f"or set TEMPORAL_ADDRESS (or BATON_TEMPORAL_PORT)"
        )


class NamespaceNotFound(ConfigurationError):
    def __init__(self, namespace: str, target: str) -> None:
        super().__init__(
            f"Temporal at {target} has no namespace {namespace!r}: set TEMPORAL_NAMESPACE to one "
            f"it has (`temporal operator namespace list`), or unset it for `default`"
        )


async def put_schedule(
    client: Client, schedule_id: str, workflow: str, spec: ScheduleSpec | str, *args: object
) -> ScheduleHandle:
    """Create the Temporal Schedule `schedule_id` that starts `workflow` (a WorkflowTypes name)
    with `args` on `spec` (a cron string is UTC), skipping a start while the previous run still
    runs; or update it to that if it exists: safe to run again whenever the configuration is
    (re)applied. The runs' ids are `schedule_id` followed by their scheduled time (Temporal
    appends it)."""
    if isinstance(spec, str):
        spec = ScheduleSpec(cron_expressions=[spec])
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            workflow, args=args, id=schedule_id, task_queue=TaskQueues.WORKFLOWS
        ),
        spec=spec,
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        return await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)
        await handle.update(lambda _: ScheduleUpdate(schedule=schedule))
        return handle


def connect_config() -> dict:
    """Connection settings from TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS and API-key variables.

    Without TEMPORAL_ADDRESS, the embedded stack's Temporal: 127.0.0.1 on BATON_TEMPORAL_PORT
    (7233 by default), the port `baton dev up` starts it on.
    """
    config = dict(ClientConfig.load_client_connect_config())
    config.setdefault(
        "target_host",
        os.environ.get("TEMPORAL_ADDRESS") or f"127.0.0.1:{Settings().temporal_port}",
    )
    return config


async def connect(target_host: str | None = None, runtime: Runtime | None = None) -> Client:
    """A client with Baton's pydantic data converter, its namespace checked, and, when tracing is
    on, the SDK's tracing interceptor (`baton.telemetry`); on `runtime` (its metrics) if given.

    Raises `TemporalUnavailable` when Temporal does not answer and `NamespaceNotFound` when it
    has no such namespace, each one line.
    """
    config = connect_config()
    if target_host:
        config["target_host"] = target_host
    try:
        client = await Client.connect(
            **config,
            data_converter=pydantic_data_converter,
            interceptors=client_interceptors(),
            runtime=runtime,
        )
    except RuntimeError as exc:
        reason = "connection refused" if "refused" in str(exc) else str(exc).splitlines()[0][:200]
        raise TemporalUnavailable(config["target_host"], reason) from None
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NamespaceNotFound(client.namespace, config["target_host"]) from None
        raise
    return client
