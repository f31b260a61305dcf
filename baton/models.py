"""Domain models passed between the API, workflows and activities: change, stage, gate, check, artifact."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field

from baton.config import (
    AppConfig,
    BatonConfig,
    EnvironmentConfig,
    GitOpsConfig,
    LanePolicy,
    NotificationConfig,
    duration,
)
from baton.promotion import EnvironmentStep

LogRef = str
"""`sha256:<64 hex>` of a log's UTF-8 text, the key of the full log in the LogStore."""

StageOutcome = Literal["running", "succeeded", "failed", "cancelled", "superseded", "skipped"]
"""How one entry of a timeline ended (or that it still runs)."""
RolloutOutcome = Literal["deployed", "rejected", "failed", "aborted", "superseded"]
"""How a rollout into one environment ended."""
RollbackOutcome = Literal["running", "rolled back", "failed", "rejected"]
"""How the rollback saga of a failed rollout ended."""
SyncState = Literal["ready", "failed", "progressing"]
"""Where an environment's sync stands, as a Flux (or local cluster) event reports it."""
GateKind = Literal["merge", "approval", "sync", "verification", "lane", "freeze", "hold"]
"""What a change or rollout waits for."""
ChangeState = Literal[
    "validating",
    "awaiting-merge",
    "integrating",
    "integrated",
    "promoting",
    "completed",
    "failed",
    "closed",
    "aborted",
    "superseded",
    "batched",
]
# A change in one of these states has ended. `batched`: merged into a release branch integrated on
# a schedule (`apps[].ci.schedule`), where the batch change of its commit carries it on.
TERMINAL_STATES = ("completed", "failed", "closed", "aborted", "superseded", "batched")


class PinnedImage(BaseModel):
    """An image pinned by digest: what the rendered manifests must run."""

    repository: str  # e.g. 127.0.0.1:5000/sample-app
    digest: str  # sha256:<64 hex>
    tag: str | None = None  # a tag CI pushed it under too, for charts that build `repo:tag`

    @property
    def ref(self) -> str:
        return f"{self.repository}@{self.digest}"


class OmittedObject(BaseModel):
    """An object the chart renders that Baton leaves out of the manifests, and why."""

    key: str  # Kind/namespace/name
    reason: str


class CheckResult(BaseModel):
    """The outcome of one check, small enough for workflow history."""

    name: str
    passed: bool
    exit_code: int | None  # None when the check never finished (timeout) or ran no process
    duration_s: float
    summary: str  # one line: the tool's own finding
    excerpt: str  # the last lines of output
    log_ref: LogRef | None = None  # the full output in the LogStore
    error: bool = Field(
        default=False,
        description="the step could not run (a tool or service missing or down on the worker, "
        "after retries): it says nothing about the code, and is re-run once fixed",
    )


class TreeChecks(BaseModel):
    """The checks a PR pipeline passed at `commit`, by kind (lint, test, dockerfile, templates),
    kept with the long tests of the commit's tree (`AppConfig.long_tests_ahead`): CI of a merge
    commit with that tree takes them rather than running them again."""

    commit: str
    checks: dict[str, CheckResult]


class Artifact(BaseModel):
    """What CI built from one commit of an app, as CD will deploy it: the image by digest, and
    the app's chart (Helm apps) or Kustomize bundle (Kustomize apps), each an OCI artifact."""

    app: str
    commit: str
    image: str  # repository, e.g. 127.0.0.1:5000/sample-app
    image_digest: str
    image_ref: str  # repository@sha256:...
    chart_ref: str | None = None  # oci://127.0.0.1:5000/charts/sample-app
    chart_version: str | None = None  # 0.1.0-g<sha12>
    chart_digest: str | None = None
    kustomize_ref: str | None = None  # oci://127.0.0.1:5000/kustomize/sample-kustomize
    kustomize_tag: str | None = None  # the commit
    kustomize_digest: str | None = None  # what Flux's OCIRepository takes as spec.ref.digest
    kustomize_path: str | None = None  # the app's kustomization in the bundle: deploy/overlays/x
    created_at: datetime
    metadata: dict[str, str] = {}

    @property
    def pinned_image(self) -> PinnedImage:
        tag = self.metadata.get("tag") or self.commit
        return PinnedImage(repository=self.image, digest=self.image_digest, tag=tag)

    @property
    def chart_repository(self) -> str:
        """The chart's repository name in its registry, e.g. `charts/sample-app`."""
        return (self.chart_ref or "").removeprefix("oci://").split("/", 1)[-1]

    @property
    def chart_name(self) -> str:
        return (self.chart_ref or "").rsplit("/", 1)[-1]


class Stage(BaseModel):
    """One entry of a change's timeline."""

    name: str
    started_at: datetime
    ended_at: datetime | None = None
    outcome: StageOutcome = "running"
    detail: str = ""
    links: dict[str, str] = {}
    checks: list[CheckResult] = []


class Gate(BaseModel):
    """What the change currently waits for, and on whom."""

    kind: GateKind
    environment: str | None = None
    description: str
    waiting_on: list[str] = []
    required: int = 0
    approved_by: list[str] = []
    deadline: datetime | None = None
    content_hash: str | None = Field(
        default=None, description="approval gates: the rendered content hash being approved"
    )
    head: str | None = Field(
        default=None, description="approval gates: the GitOps PR head commit being approved"
    )


OUTAGE_WAIT_S = 6 * 3600
"""How long steps wait out a dependency's outage unless `outages.wait` says otherwise."""


UNKNOWN_PUSHER = "unknown"
"""A push's pusher when no delivery named one: the reconciler found the push on the forge (no
forge API says who pushed), or the delivery lacked it."""


class CommitAuthor(BaseModel):
    """Who wrote one commit of a pull request: the git author's name and email, and the forge
    account the forge links to that email (GitHub's and Gitea's `author.login`), if any."""

    sha: str
    name: str = ""
    email: str = ""
    login: str | None = None


class ChangePlan(BaseModel):
    """The configuration a change runs under, frozen when the change starts."""

    app: AppConfig
    environments: list[EnvironmentConfig] = []
    stages: list[list[str]] = Field(
        default=[],
        description="the promotion graph's stages of environment names (`baton.promotion`); "
        "empty: one stage per environment, in order (changes started before stages existed)",
    )
    gitops: GitOpsConfig = GitOpsConfig()
    ui_url: str = "http://127.0.0.1:8233"
    namespace: str = "default"
    notifications: list[NotificationConfig] = []
    outage_wait_s: int = Field(
        default=OUTAGE_WAIT_S, description="how long steps retry while a dependency is away"
    )

    pr_comment: bool = Field(
        default=False, description="keep one comment on the PR up to date (forge.pr_comment)"
    )
    deployments: bool = Field(
        default=False, description="report deployments per environment (forge.kind github)"
    )
    commit_authors: bool = Field(
        default=False,
        description="learn the commits' authors once merged: none of them may approve (the API "
        "sets it; changes started before it only know the PR's author)",
    )

    @classmethod
    def of(cls, config: BatonConfig, app_name: str, *, ui_url: str, namespace: str) -> ChangePlan:
        """The plan of a new change of `app_name` under `config` (ConfigError: no such app)."""
        app = config.app(app_name)
        return cls(
            app=app,
            environments=config.promotion_order(app),
            stages=config.promotion_stages(),
            gitops=config.gitops,
            ui_url=ui_url,
            namespace=namespace,
            notifications=config.notifications,
            outage_wait_s=int(duration(config.outages.wait).total_seconds()),
            pr_comment=config.forge.pr_comment,
            deployments=config.forge.kind == "github",
            commit_authors=True,
        )


class BatchCommit(BaseModel):
    """A commit on the release branch, as a batch lists it."""

    sha: str
    title: str = ""
    author: str = ""


class ReleaseBatch(BaseModel):
    """The commits on an app's release branch since the last integrated one, newest first
    (first-parent history: each commit that landed there), and the pull requests merged as any
    of them; `head` is the newest, `since` the last integrated commit (None: none was found
    within the history read)."""

    branch: str
    head: str
    since: str | None = None
    commits: list[BatchCommit] = []
    pull_requests: list[int] = []

    def describe(self) -> str:
        """One line: `3 commits on main since 1a2b3c4d5e6f (#12, #14)`."""
        count = f"{len(self.commits)} commit{'s' if len(self.commits) != 1 else ''}"
        since = f" since {self.since[:12]}" if self.since else ""
        prs = f" ({', '.join(f'#{n}' for n in self.pull_requests)})" if self.pull_requests else ""
        return f"{count} on {self.branch}{since}{prs}"


class ChangeInput(BaseModel):
    """Starts a ChangeWorkflow: a pull request on an application repository, (`trigger:
    push`, no `pr_number`) a commit pushed to the release branch that no pull request merged,
    or (`trigger: batch`, with `batch`) the commits a CI schedule found on the release branch;
    for both of the latter `head_sha` is the commit to integrate; or an operation on an artifact
    CI built before (`trigger: promote`, `baton promote`: into the plan's environments; `trigger:
    retry`, `baton retry`: a failed rollout of a change again, and what follows it)."""

    plan: ChangePlan
    repo: str
    pr_number: int | None = None
    trigger: Literal["pull_request", "push", "batch", "promote", "retry"] = "pull_request"
    batch: ReleaseBatch | None = None
    title: str = ""
    author: str
    commit_authors: list[str] = Field(
        default=[],
        description="push: who wrote the pushed commits, as Baton users where auth.users maps "
        "them (`policy.authors_of`), read from the delivery (or, for a push the reconciler "
        "found, from the forge's comparison of the old and new heads); `author` is who pushed "
        "(`UNKNOWN_PUSHER` when no delivery said)",
    )
    head_branch: str
    head_sha: str
    base_branch: str = "main"
    artifact: Artifact | None = None
    """promote, retry: what CI already built for `head_sha`, deployed as it is (no validation,
    no integration)."""
    earlier: ChangeStatus | None = None
    """retry: the change as it ended; its timeline goes on, the environments it deployed to stay
    deployed and `retry` (an environment's name) is rolled out again."""
    retry: str | None = None


class PullRequestEvent(BaseModel):
    """A forge event about the change's pull request, signalled by the API.

    `reopened`: the PR is one Baton acts on again (reopened, or retargeted into the app's release
    branch); `retargeted`: its base is now `base_branch`, not the release branch, so the change
    stops unless its merge was already seen.
    """

    action: Literal["synchronize", "merged", "closed", "reopened", "retargeted"]
    head_sha: str | None = None
    merge_commit_sha: str | None = None
    base_branch: str | None = None
    updated_at: datetime | None = None  # the PR's `updated_at`: orders deliveries that crossed
    delivery_id: str = ""


class PipelineInput(BaseModel):
    """Runs the PR or CI pipeline of one app at one commit."""

    app: AppConfig
    repo: str
    commit: str
    pr_number: int | None = None
    status_url: str | None = None
    outage_wait_s: int = Field(
        default=OUTAGE_WAIT_S,
        description="how long a step retries its infrastructure errors (registry, container "
        "engine, forge unreachable) before the pipeline gives up",
    )


class PipelineResult(BaseModel):
    passed: bool
    checks: list[CheckResult] = []
    artifact: Artifact | None = None
    long_tests: str | None = Field(
        default=None,
        description="the id of the LongTests workflow a PR pipeline started on its head "
        "(`AppConfig.long_tests_ahead`), which a newer head cancels",
    )

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    @property
    def errored(self) -> bool:
        """Failed only because steps could not run (infrastructure), not on a finding."""
        return bool(self.failures) and all(c.error for c in self.failures)

    def summary(self) -> str:
        """One line: what failed, in the tools' own words, or that everything passed."""
        if self.passed:
            return f"{len(self.checks)} step(s) passed"
        return "; ".join(f"{c.name}: {c.summary}" for c in self.failures)[:1000]


DecisionVia = Literal["temporal", "token", "oidc", "forge"]
"""How a decider was authenticated: a Baton API token, an OIDC bearer token, a forge review (the
forge authenticated them), or `temporal`: sent straight to Temporal by an administrator."""


class Decision(BaseModel):
    """A person's decision on a rollout (an approval, a rejection or a freeze override), made
    through Baton (`source="baton"`) or as a review on the forge: who (user and groups; subject and
    issuer), through what, when, on which content, and why. Never carries a secret."""

    user: str
    comment: str = ""
    source: Literal["baton", "forge"] = "baton"
    at: datetime | None = None
    groups: list[str] = Field(default=[], description="the decider's groups, as authenticated")
    forge_users: list[str] = Field(
        default=[], description="the decider's forge logins (auth.users): whose changes are theirs"
    )
    via: DecisionVia = "temporal"
    issuer: str | None = Field(
        default=None, description="the OIDC issuer; `baton` for Baton API tokens; the forge kind"
    )
    subject: str | None = Field(
        default=None, description="the OIDC `sub`, the Baton token's id, or the forge user"
    )
    content_hash: str | None = Field(
        default=None, description="the rendered content hash the decision was made on"
    )
    head: str | None = Field(default=None, description="the GitOps PR head commit it was made on")


class ForgeReview(BaseModel):
    """A review on the GitOps PR, as the forge reported it; `dismissed`: the user's review was
    dismissed, withdrawn or reset on the forge, so their approval no longer counts."""

    user: str
    approved: bool
    commit: str
    dismissed: bool = False


class RolloutInput(BaseModel):
    """Starts an EnvironmentRollout: one artifact into one environment."""

    change_id: str
    app: AppConfig
    environment: EnvironmentConfig
    artifact: Artifact
    author: str
    authors: list[str] = Field(
        default=[], description="the change's authors (PR and commits; `policy.authors_of`)"
    )
    ui_url: str = "http://127.0.0.1:8233"
    namespace: str = "default"
    notifications: list[NotificationConfig] = []
    pr_comment: bool = Field(default=False, description="the change keeps a comment on its PR")
    deployments: bool = Field(default=False, description="report deployments to the forge")


class Rendered(BaseModel):
    """An environment's rendered manifests (stored by reference) and their diff to the GitOps repo."""

    path: str
    also_paths: list[str] = Field(
        default=[],
        description="the manifests' path in the environment's other clusters: the GitOps PR "
        "writes the same manifests (and their records) there too",
    )
    content_ref: str
    content_hash: str
    diff_markdown: str
    changed_objects: int
    sensitive: list[str] = Field(
        default=[], description="why the diff is security-sensitive (it then needs extra approval)"
    )
    unstable: list[str] = Field(
        default=[],
        description="objects whose fields differ between two renders of the same inputs, with "
        "those fields (`Secret/prod/x: data.password`); they keep the deployed value",
    )
    template_diff_markdown: str = Field(
        default="", description="what changed in the chart or base and the environment's inputs"
    )
    rendered_from_ref: str | None = Field(
        default=None, description="blob of the record of what the manifests were rendered from"
    )
    template_diff_ref: str | None = Field(
        default=None, description="blob of the full template diff, committed beside the record"
    )
    omitted: list[OmittedObject] = Field(
        default=[], description="objects the chart renders that an install does not leave running"
    )


class GitOpsPullRequest(BaseModel):
    number: int
    url: str
    head_branch: str
    head_sha: str


class SyncEvent(BaseModel):
    """A Flux (or local cluster) event about an environment, signalled by the API."""

    revision: str
    state: SyncState
    reason: str = ""
    message: str = ""
    cluster: str | None = Field(
        default=None,
        description="the cluster it comes from (a Flux Alert's eventMetadata `cluster`); "
        "None: the environment's one cluster",
    )


class SyncOutcome(BaseModel):
    synced: bool
    revision: str | None = None
    reason: str = ""
    message: str = ""


class Rollback(BaseModel):
    """Undoing a failed rollout's GitOps change: why, the revert PR, and how it ended."""

    cause: str
    outcome: RollbackOutcome = "running"
    detail: str = ""
    revert_pr: GitOpsPullRequest | None = None
    # The plugin cannot see that AliasChoices leaves the field optional (it has a default).
    revert_revision: str | None = Field(  # type: ignore[pydantic-alias]
        default=None,
        # Rollbacks recorded before the rename carry `revert_commit`.
        validation_alias=AliasChoices("revert_revision", "revert_commit"),
        description="the GitOps revision the revert PR merged as",
    )
    previous_commit: str | None = Field(
        default=None, description="the app commit the environment ran before, when Baton knows it"
    )
    removed: bool = Field(
        default=False, description="the environment ran nothing of the app before: it was removed"
    )
    approvals: list[Decision] = []


class RolloutResult(BaseModel):
    environment: str
    outcome: RolloutOutcome
    reason: str = ""
    gitops_pr: GitOpsPullRequest | None = None
    revision: str | None = Field(  # type: ignore[pydantic-alias]
        default=None,
        # Results recorded before the rename carry `merge_commit`.
        validation_alias=AliasChoices("revision", "merge_commit"),
        description="the GitOps revision the rollout's PR merged as",
    )
    approvals: list[Decision] = []
    served: str | None = None
    rollback: Rollback | None = None
    freeze_override: Decision | None = Field(
        default=None, description="the break-glass override that let it through a freeze"
    )


class RolloutStatus(Stage):
    """The `status` query of a rollout: its stage plus the gate and the decisions so far."""

    environment: str
    gate: Gate | None = None
    approvals: list[Decision] = []
    gitops_pr: GitOpsPullRequest | None = None
    revision: str | None = Field(  # type: ignore[pydantic-alias]
        default=None,
        validation_alias=AliasChoices("revision", "merge_commit"),
        description="the GitOps revision the rollout's PR merged as",
    )
    timeline: list[Stage] = []
    rollback: Rollback | None = None
    freeze_override: Decision | None = None
    content_hash: str | None = Field(
        default=None, description="the rendered content hash of the GitOps PR"
    )
    voided: list[Decision] = Field(
        default=[], description="approvals that stopped counting: the PR's content changed"
    )


class ChangeStatus(BaseModel):
    """The `status` query: the change's timeline and its current gate."""

    id: str
    app: str
    repo: str
    pr_number: int | None = None  # None: a pushed commit's change
    author: str
    authors: list[str] = Field(
        default=[],
        description="who authored it: the PR's author and its commits' authors, as Baton users "
        "where auth.users maps them, and their forge logins (known once the PR merged)",
    )
    head_sha: str
    merge_commit: str | None = None
    merged_at: datetime | None = None
    state: ChangeState
    gate: Gate | None = None
    timeline: list[Stage] = Field(default_factory=list)
    artifact: Artifact | None = None
    reason: str | None = None
    rollouts: list[RolloutResult] = []
    current_rollout: str | None = Field(
        default=None, description="the first rollout under way (`running_rollouts[0]`), or none"
    )
    running_rollouts: list[str] = Field(
        default=[],
        description="every rollout under way, in the order they started: the environments of a "
        "parallel stage roll out at once (changes recorded before it carry `current_rollout` only)",
    )
    environments: list[str] = Field(
        default=[], description="the environments it is promoted to, in order (empty: unknown)"
    )
    batch: ReleaseBatch | None = Field(
        default=None, description="a scheduled batch's commits and pull requests"
    )
    promotion: list[EnvironmentStep] = Field(
        default=[],
        description="the promotion graph and where the change stands in each environment",
    )


class PipelineStatus(BaseModel):
    """What a pipeline publishes as its `status` memo: its headline and its steps so far."""

    headline: str
    timeline: list[Stage] = []


class AbortInput(BaseModel):
    user: str
    reason: str


class LaneRequest(BaseModel):
    """A change asking its environment's lane for a turn to roll out."""

    change_id: str
    run_id: str = Field(
        default="",
        description="the change's run that asks: a retried change (a new run) joins again",
    )
    commit: str
    merged_at: datetime = Field(description="when the change merged: what newer means")
    policy: LanePolicy | None = Field(
        default=None, description="the environment's lane policy when the change joined"
    )


class LaneUpdate(BaseModel):
    """The lane's answer to a change, by signal: queued (behind `holder`), granted, or
    superseded (by the newer change `by`)."""

    environment: str
    kind: Literal["queued", "granted", "superseded"]
    holder: str | None = None
    by: str | None = None


class JoinLane(BaseModel):
    """Starts the lane if need be and queues the request (signal-with-start)."""

    app: str
    environment: str
    policy: LanePolicy
    request: LaneRequest


class LaneState(BaseModel):
    """Everything the lane knows; carried over when it continues as new."""

    app: str
    environment: str
    policy: LanePolicy = "latest"
    queue: list[LaneRequest] = []
    holder: LaneRequest | None = None
    newest: LaneRequest | None = None
    told_holder: str | None = None
    holder_check_s: int = Field(
        default=60, description="how often to check, while nothing happens, that the holder runs"
    )
    rounds_per_run: int = Field(
        default=1000, description="continue as new after this many rounds (or when Temporal says)"
    )


class LaneStatus(LaneState):
    """The lane's `status` query: its state and how many turns were released."""

    released: int = 0


ChangeInput.model_rebuild()  # `earlier` is a ChangeStatus, defined after it
