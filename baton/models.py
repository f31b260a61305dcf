"""Domain models passed between the API, workflows and activities: change, stage, gate, check, artifact."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from baton.checks import CheckResult
from baton.config import AppConfig, EnvironmentConfig, GitOpsConfig

Outcome = Literal["running", "succeeded", "failed", "cancelled", "superseded", "skipped"]
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
]


class Stage(BaseModel):
    """One entry of a change's timeline."""

    name: str
    started_at: datetime
    ended_at: datetime | None = None
    outcome: Outcome = "running"
    detail: str = ""
    links: dict[str, str] = {}
    checks: list[CheckResult] = []


class Gate(BaseModel):
    """What the change currently waits for, and on whom."""

    kind: Literal["merge", "approval", "sync", "verification"]
    environment: str | None = None
    description: str
    waiting_on: list[str] = []
    required: int = 0
    approved_by: list[str] = []
    deadline: datetime | None = None


class ChangePlan(BaseModel):
    """The configuration a change runs under, frozen when the change starts."""

    app: AppConfig
    environments: list[EnvironmentConfig] = []
    gitops: GitOpsConfig = GitOpsConfig()
    ui_url: str = "http://127.0.0.1:8233"
    namespace: str = "default"


class ChangeInput(BaseModel):
    """Starts a ChangeWorkflow: a pull request on an application repository."""

    plan: ChangePlan
    repo: str
    pr_number: int
    title: str = ""
    author: str
    head_branch: str
    head_sha: str
    base_branch: str = "main"


class PullRequestEvent(BaseModel):
    """A forge event about the change's pull request, signalled by the API."""

    action: Literal["synchronize", "merged", "closed", "reopened"]
    head_sha: str | None = None
    merge_commit_sha: str | None = None
    delivery_id: str = ""


class Artifact(BaseModel):
    """What CI publishes and CD deploys (CD never rebuilds): templates plus the image by digest."""

    app: str
    commit: str
    image: str
    image_digest: str
    chart_ref: str | None = None
    chart_digest: str | None = None
    metadata: dict[str, str] = {}

    @property
    def image_ref(self) -> str:
        return f"{self.image}@{self.image_digest}"


class PipelineInput(BaseModel):
    """Runs the PR or CI pipeline of one app at one commit."""

    app: AppConfig
    repo: str
    commit: str
    pr_number: int | None = None
    status_url: str | None = None


class PipelineResult(BaseModel):
    passed: bool
    checks: list[CheckResult] = []
    artifact: Artifact | None = None

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        """One line: what failed, in the tools' own words, or that everything passed."""
        if self.passed:
            return f"{len(self.checks)} step(s) passed"
        return "; ".join(f"{c.name}: {c.summary}" for c in self.failures)[:1000]


class ChangeStatus(BaseModel):
    """The `status` query: the change's timeline and its current gate."""

    id: str
    app: str
    repo: str
    pr_number: int
    author: str
    head_sha: str
    merge_commit: str | None = None
    state: ChangeState
    gate: Gate | None = None
    timeline: list[Stage] = Field(default_factory=list)
    artifact: Artifact | None = None
    reason: str | None = None
