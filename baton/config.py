"""`baton.yaml`: the declarative description of forge, registry, GitOps repository, apps and environments.

Secrets are never values in this file: fields ending in `_env` or `_file` name an environment variable
or a file that holds the secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from baton import promotion
from baton.errors import ConfigurationError
from baton.merge_methods import MergeMethod
from baton.references import NAME_MAX, check_domain, check_repository, parse_reference
from baton.settings import read_secret

NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
Name = Annotated[str, Field(pattern=NAME)]


LanePolicy = Literal["latest", "sequential"]
"""`latest`: a newer change supersedes waiting older ones; `sequential`: every change rolls out."""


# What git refuses in a branch name (git-check-ref-format), besides a leading or trailing "/".
_BAD_REF = re.compile(r"[\s~^:?*\[\\\x00-\x1f\x7f]|\.\.|//|@\{|/\.|^\.")


def _placeholders(template: str, known: tuple[str, ...]) -> str:
    """`template`, if every `{name}` in it is one of `known`; else a ValueError naming them."""
    unknown = set(re.findall(r"{(\w*)}", template)) - set(known)
    if unknown:
        use = ", ".join(f"{{{name}}}" for name in known)
        raise ValueError(f"unknown placeholder(s) {', '.join(sorted(unknown))}: use {use}")
    return template


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _env_or_file(env: str | None, file: Path | None) -> str | None:
    """The value of variable `env` when set, else the text of `file` when it exists."""
    if env and (value := os.environ.get(env)):
        return value.strip()
    if file is not None and file.is_file():
        return file.read_text().strip()
    return None


class Credentials(Model):
    """Where a secret lives: an environment variable or a file. Never the secret itself."""

    username: str | None = None
    token_env: str | None = None
    token_file: Path | None = None

    def token(self) -> str | None:
        """The secret, read at the moment it is needed (never stored in workflow state)."""
        return _env_or_file(self.token_env, self.token_file)

    def names_secret(self) -> bool:
        """Whether a secret is named (token_env or token_file), set or not."""
        return bool(self.token_env or self.token_file)

    def same_secret(self, other: Credentials) -> bool:
        """Whether both name the same secret (the same variable or file)."""
        return (bool(self.token_env) and self.token_env == other.token_env) or (
            self.token_file is not None and self.token_file == other.token_file
        )


def _reader_credentials(field: str, readers: str) -> Any:
    """A `Credentials` field for processes that only read (default: none, they use the writers')."""
    return Field(
        default=None,
        description=f"what {readers} read with, in place of the read-write credentials: a "
        "read-only token or robot account, so that they never hold the password that writes; "
        f"unset: they use {field}",
    )


def _needs_secret(field: str, credentials: Credentials | None) -> None:
    if credentials is not None and credentials.username and not credentials.names_secret():
        raise ValueError(f"{field}: a username needs token_env or token_file (where its secret is)")


class ForgeConfig(Model):
    kind: Literal["local", "github", "azure-devops", "gitea"] = "local"
    url: str | None = None
    credentials: Credentials = Credentials()
    read_credentials: Credentials | None = _reader_credentials(
        "forge.credentials",
        "the embedded stack's local cluster (the GitOps repository, as Flux's GitRepository "
        "secretRef)",
    )
    webhook_secret_env: str = "BATON_WEBHOOK_SECRET"
    merge: MergeMethod | None = Field(
        default=None,
        description="how Baton merges pull requests (the forge's own merge method); unset: what "
        "the repository allows (GitHub's and Gitea's repository settings, in the order merge, "
        "squash, rebase), a merge commit on Azure DevOps and the local forge",
    )
    pr_comment: bool = Field(
        default=True,
        description="keep one comment on each change's pull request up to date: its state, "
        "each environment's outcome, the gate and whom it waits on, links",
    )

    @model_validator(mode="after")
    def _hosted_forges_need_url(self) -> ForgeConfig:
        if self.kind != "local" and not self.url:
            raise ValueError(f"forge.kind {self.kind!r} needs forge.url (the API base URL)")
        if self.kind == "azure-devops" and self.merge == "fast-forward":
            raise ValueError(
                "Azure DevOps has no fast-forward merge: use merge: rebase (Azure's rebase and "
                "fast-forward), merge or squash"
            )
        _needs_secret("read_credentials", self.read_credentials)
        return self

    def webhook_secret(self) -> str | None:
        return read_secret(self.webhook_secret_env)

    def reading(self) -> ForgeConfig:
        """This forge as its readers reach it: with read_credentials, when set."""
        if self.read_credentials is None:
            return self
        return self.model_copy(update={"credentials": self.read_credentials})


class RegistryConfig(Model):
    url: str = "127.0.0.1:5000"
    credentials: Credentials = Credentials()
    pull_credentials: Credentials | None = _reader_credentials(
        "registry.credentials",
        "the API (step logs from the store) and the embedded stack's local cluster (image pulls)",
    )
    plain_http: bool = True

    @model_validator(mode="after")
    def _pull_secret_named(self) -> RegistryConfig:
        _needs_secret("pull_credentials", self.pull_credentials)
        return self

    def pulling(self) -> Credentials:
        """What readers sign in with: pull_credentials, else credentials (the push ones)."""
        return self.pull_credentials or self.credentials

    @field_validator("url")
    @classmethod
    def _host_only(cls, url: str) -> str:
        if "://" in url:
            raise ValueError("give host[:port] without a scheme, e.g. 127.0.0.1:5000")
        return check_domain(url.rstrip("/"))


class S3Credentials(Model):
    """Where an S3 access key lives: environment variables or files, never the key itself."""

    access_key_id_env: str | None = None
    access_key_id_file: Path | None = None
    secret_access_key_env: str | None = None
    secret_access_key_file: Path | None = None

    @model_validator(mode="after")
    def _both_named(self) -> S3Credentials:
        if not (self.access_key_id_env or self.access_key_id_file) or not (
            self.secret_access_key_env or self.secret_access_key_file
        ):
            raise ValueError(
                "name where both the access key id and the secret access key are: "
                "access_key_id_env or access_key_id_file, and secret_access_key_env or "
                "secret_access_key_file"
            )
        return self

    def keys(self) -> tuple[str, str] | None:
        """(access key id, secret access key), read now; None while either is unset."""
        key_id = _env_or_file(self.access_key_id_env, self.access_key_id_file)
        secret = _env_or_file(self.secret_access_key_env, self.secret_access_key_file)
        return (key_id, secret) if key_id and secret else None


class StoreConfig(Model):
    """Where workers hand each other logs, rendered manifests and records (`baton.store`): the
    OCI registry (`registry`, the default) or an S3-compatible bucket (`s3`)."""

    kind: Literal["registry", "s3"] = "registry"
    bucket: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="the S3 bucket (kind s3); it must exist",
    )
    endpoint: str | None = Field(
        default=None,
        description="the S3 API's URL, e.g. http://127.0.0.1:9000 for MinIO; unset: AWS S3 of "
        "the region",
    )
    region: str | None = Field(
        default=None, description="the bucket's region; unset: AWS_REGION or us-east-1"
    )
    prefix: str = Field(
        default="baton/",
        pattern=r"^([A-Za-z0-9!_.*'()-]+/)*$",
        description="where under the bucket Baton's objects go, ending in '/' (or empty)",
    )
    credentials: S3Credentials | None = Field(
        default=None,
        description="the workers' access key; unset: the AWS SDK's own chain "
        "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE, "
        "web identity, instance role)",
    )
    read_credentials: S3Credentials | None = Field(
        default=None,
        description="what the API reads step logs with: a read-only access key; unset: credentials",
    )

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> StoreConfig:
        if self.kind == "s3" and not self.bucket:
            raise ValueError("store.kind s3 needs store.bucket (an existing bucket)")
        if self.endpoint is not None and urlsplit(self.endpoint).scheme not in ("http", "https"):
            raise ValueError("store.endpoint: give a URL, e.g. https://s3.example.com")
        return self


class GitOpsConfig(Model):
    repo: str = "gitops"
    base_branch: str = "main"
    layout: Literal["folders", "branches"] = Field(
        default="folders",
        description="folders: every environment on base_branch, apart by path; branches: each "
        "environment on a branch of its own (`branch`), created from base_branch when missing",
    )
    branch: str = Field(
        default="env/{env}",
        description="layout branches: an environment's branch; {env} (or {environment})",
    )
    path: str = Field(
        default="rendered/{env}/{app}",
        description="where an environment's rendered manifests live; {env}, {app}, {cluster}",
    )
    values: str = Field(
        default="environments/{env}/{app}/values.yaml",
        description="an environment's values file in the GitOps repository",
    )
    overlay: str = Field(
        default="environments/{env}/{app}",
        description="Kustomize apps: the directory of an environment's inputs in the GitOps "
        "repository, a kustomization of kind Component (patches, generators, replicas) that CD "
        "adds to the app's kustomization",
    )

    @field_validator("path", "values", "overlay")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        return _placeholders(template, ("env", "app", "cluster"))

    @field_validator("branch")
    @classmethod
    def _branch_template(cls, template: str) -> str:
        _placeholders(template, ("env", "environment"))
        if not re.search(r"{env(ironment)?}", template):
            raise ValueError(
                f"{template!r} names no environment: every environment would share one branch; "
                "put {env} in it (e.g. env/{env})"
            )
        bad = _BAD_REF.search(template.replace("{env}", "x").replace("{environment}", "x"))
        if bad or template.startswith("/") or template.endswith(("/", ".lock", ".")):
            raise ValueError(f"{template!r} is not a git branch name: use letters, digits, - _ . /")
        return template

    def branch_of(self, environment: str) -> str:
        """The branch holding `environment`'s manifests and inputs: `base_branch` with layout
        folders, else the `branch` template filled in."""
        if self.layout == "folders":
            return self.base_branch
        return self.branch.format(env=environment, environment=environment)


class Commands(Model):
    lint: list[str] = []
    test: list[str] = []
    long_test: list[str] = []


class VerifyConfig(Model):
    url: str
    expected_status: int = Field(default=200, ge=100, le=599)
    expected_body: str | None = Field(
        default=None, description="substring the body must contain; {commit} is the change's commit"
    )
    timeout_s: int = Field(default=120, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{url!r} is not an http(s) URL: give the address the app answers on, "
                "e.g. http://127.0.0.1:18081/version"
            )
        return url


class ImageValues(Model):
    """The chart's values keys Baton sets to pin the image CI built (Helm's dotted `--set` paths).

    `repository` + `digest` (the default), `repository` + `tag` (as `helm create` charts take
    it; the tag is set to `<tag>@<digest>`), either with both, or one `image` string that takes
    `<repository>@<digest>`.
    """

    repository: str | None = None
    tag: str | None = None
    digest: str | None = None
    image: str | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> ImageValues:
        if self.image is not None:
            if self.repository or self.tag or self.digest:
                raise ValueError("image takes the whole reference: set it alone")
        elif not self.repository or not (self.tag or self.digest):
            raise ValueError(
                "set repository with tag and/or digest (e.g. repository: image.repository, "
                "tag: image.tag), or image alone"
            )
        return self

    def value_keys(self) -> list[str]:
        """The values keys set, in the order they are listed."""
        return [k for k in (self.repository, self.tag, self.digest, self.image) if k]


DEFAULT_IMAGE_VALUES = ImageValues(repository="image.repository", digest="image.digest")


class HelmOptions(Model):
    """How Baton renders a chart app."""

    image_values: ImageValues = Field(
        default=DEFAULT_IMAGE_VALUES,
        description="the chart's values keys that carry the image",
    )


KUBE_VERSION = "1.30"
"""The Kubernetes version CI renders and validates with, and environments' default."""


class KubernetesConfig(Model):
    """What an environment's cluster serves, for the chart's `.Capabilities`."""

    version: str = Field(
        default=KUBE_VERSION,
        pattern=r"^v?\d+\.\d+(\.\d+)?$",
        description="the cluster's Kubernetes version (helm --kube-version; validation schemas)",
    )
    api_versions: list[str] = Field(
        default=[],
        description="extra API versions the cluster serves, e.g. monitoring.coreos.com/v1 or "
        "monitoring.coreos.com/v1/ServiceMonitor (helm --api-versions)",
    )

    @field_validator("version")
    @classmethod
    def _without_v(cls, version: str) -> str:
        return version.removeprefix("v")

    @field_validator("api_versions")
    @classmethod
    def _group_versions(cls, versions: list[str]) -> list[str]:
        bad = [v for v in versions if not re.match(r"^[A-Za-z0-9.-]+(/[A-Za-z0-9.-]+){0,2}$", v)]
        if bad:
            raise ValueError(
                f"{', '.join(bad)}: give group/version or group/version/Kind, "
                "e.g. monitoring.coreos.com/v1"
            )
        return versions


class BuildSecret(Model):
    """A secret a Dockerfile mounts with `RUN --mount=type=secret,id=<id>`: read from an
    environment variable or a file on the build worker, never written into the image or a log."""

    id: str
    env: str | None = None
    file: Path | None = None

    @field_validator("id")
    @classmethod
    def _plain_id(cls, secret_id: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", secret_id):
            raise ValueError(
                f"{secret_id!r}: use letters, digits, _ . - (the id the Dockerfile's --mount names)"
            )
        return secret_id

    def value(self) -> str | None:
        """The secret, read on the build worker when the build needs it."""
        if self.env is not None:
            return os.environ.get(self.env)
        assert self.file is not None  # one of env or file is set
        return self.file.read_text() if self.file.is_file() else None

    @model_validator(mode="after")
    def _one_source(self) -> BuildSecret:
        if (self.env is None) == (self.file is None):
            raise ValueError(f"build secret {self.id!r}: set exactly one of env or file")
        return self


class HttpProbe(Model):
    """An HTTP GET of the started container at `http://127.0.0.1:<port><path>`."""

    port: int = Field(ge=1, le=65535)
    path: str = "/"
    expected_status: int = Field(default=200, ge=100, le=599)
    expected_body: str | None = Field(
        default=None, description="substring the body must contain; {commit} is the commit"
    )

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"must start with /, e.g. /{path}")
        return path


class ImageTest(Model):
    """How the built image is tried before anyone relies on it: a command run inside it and/or an
    HTTP probe of the started container, both within `timeout_s`."""

    command: list[str] | None = Field(
        default=None, min_length=1, description="argv run in the image; passes on exit 0"
    )
    http: HttpProbe | None = None
    env: dict[str, str] = Field(default={}, description="environment of the test containers")
    timeout_s: int = Field(default=60, gt=0, le=3600)

    @model_validator(mode="after")
    def _something_to_run(self) -> ImageTest:
        if self.command is None and self.http is None:
            raise ValueError("set command (run inside the image), http (a probe), or both")
        return self


def check_cron(cron: str | None) -> str | None:
    """A cron expression as Temporal Schedules take it (5 fields: minute, hour, day of month,
    month, day of week, UTC; or `@hourly`, `@daily`...), each field checked by croniter."""
    if cron is None:
        return None
    fields = cron.split()
    if (len(fields) != 5 and not cron.startswith("@")) or not croniter.is_valid(cron):
        raise ValueError(
            f"{cron!r} is not a cron expression: give 5 fields (minute hour day-of-month month "
            "day-of-week, UTC), e.g. '0 */6 * * *', or @hourly, @daily"
        )
    return cron


class CIConfig(Model):
    """How an app's release branch is integrated: each commit at once (no `schedule`), or every
    commit since the last integrated one as one batch on a cron."""

    schedule: str | None = Field(
        default=None,
        description="cron (5 fields, UTC) of the Temporal Schedule that integrates the commits "
        "on the release branch since the last integrated one as one change; pushes and merges "
        "then wait for it. `baton ci schedule` sets it up",
    )

    long_tests: Literal["merge", "pull_request"] | None = Field(
        default=None,
        description="when CI's long tests start: at the merge (CI runs them), or beside each PR "
        "pipeline, on the PR's head, in a `LongTests` workflow of their own (the PR's verdict "
        "does not wait for them; a newer head or a failed PR pipeline cancels them); CI of a "
        "merge commit with the tree that head had then waits for that run and uses its result, "
        "and runs them itself when there is none, or it did not pass. Default: pull_request "
        "when the app has `commands.long_test` and no `ci.schedule` (a batch's commit rarely "
        "has a PR head's tree), else merge (`AppConfig.long_tests_ahead`)",
    )

    _cron = field_validator("schedule")(check_cron)


class AppConfig(Model):
    name: Name
    repo: str
    branch: str | None = Field(
        default=None,
        description="the release branch: only pull requests into it start changes; "
        "default: the repository's default branch, as the forge reports it",
    )
    dockerfile: str = "Dockerfile"
    context: str = "."
    chart: str | None = None
    kustomize: str | None = Field(
        default=None,
        description="the directory of the app's kustomization in its repository; CI publishes "
        "it, with the kustomizations it uses, as an OCI artifact CD and Flux render from",
    )
    test_values: str | None = Field(
        default=None,
        description="what CI renders with: a values file (chart), or a directory holding a "
        "kustomization of kind Component (kustomize), standing in for an environment's inputs",
    )
    image: str = Field(
        description="repository path under the registry, e.g. team/app; for kustomize also the "
        "image name the kustomization's containers use, which CD pins by digest through images:"
    )
    port_value: str = "service.port"
    helm: HelmOptions = HelmOptions()
    commands: Commands = Commands()
    check_timeout_s: int = Field(default=600, gt=0)
    ci: CIConfig = CIConfig()
    on_unvalidated_merge: Literal["validate", "stop"] = Field(
        default="validate",
        description="a PR merged while its validation failed or had not finished: validate: run "
        "the PR checks on the merge commit first (CI only if they pass); stop: stop the change",
    )
    nondeterministic: Literal["reject", "accept"] = Field(
        default="reject",
        description="fields that differ between two renders of the same inputs (random "
        "passwords, timestamps): reject fails the render naming them; accept deploys them, "
        "keeping the value the environment runs",
    )
    verify: dict[str, VerifyConfig] = Field(
        default={},
        description="per environment name: how this app is verified there, in place of the "
        "environment's verify (apps of one environment answer at different endpoints)",
    )

    @field_validator("branch")
    @classmethod
    def _branch_name(cls, branch: str | None) -> str | None:
        if branch is not None and not branch.removeprefix("refs/heads/").strip():
            raise ValueError("give the release branch's name, e.g. main")
        return branch.removeprefix("refs/heads/") if branch else None

    build_secrets: list[BuildSecret] = []
    image_test: ImageTest | None = None

    @field_validator("image")
    @classmethod
    def _image_docker_accepts(cls, image: str) -> str:
        return check_repository(image)

    @model_validator(mode="after")
    def _one_template_kind(self) -> AppConfig:
        if (self.chart is None) == (self.kustomize is None):
            raise ValueError("set exactly one of chart (Helm chart path) or kustomize (path)")
        # Compared with the default, not by presence: an app that went through a workflow's
        # input comes back with every field set.
        if self.kustomize is not None and self.helm != HelmOptions():
            raise ValueError("helm options apply to chart apps only: remove helm")
        return self

    @property
    def long_tests_ahead(self) -> bool:
        """Whether each PR pipeline starts CI's long tests on its head (`ci.long_tests:
        pull_request`, the default for an app with long tests and no `ci.schedule`). A run
        whose input leaves `ci.long_tests` unset also asks
        `workflows.pipelines.LONG_TESTS_AHEAD_PATCH`: runs recorded before this default kept
        them in CI."""
        return self.ci.long_tests == "pull_request" or (
            self.ci.long_tests is None
            and bool(self.commands.long_test)
            and self.ci.schedule is None
        )

    @model_validator(mode="after")
    def _long_tests_to_start(self) -> AppConfig:
        if self.ci.long_tests == "pull_request" and not self.commands.long_test:
            raise ValueError(
                "ci.long_tests: pull_request starts the long tests ahead, but commands.long_test "
                "is empty: add the long test commands or remove ci.long_tests"
            )
        return self


GROUP_PREFIX = "group:"
"""An approver list entry `group:NAME` names everyone in group NAME (OIDC groups claim, or
`auth.users`)."""

Approver = Annotated[str, Field(min_length=1, description="a user, or group:NAME")]


def _people(approvers: list[str]) -> int | None:
    """How many distinct people `approvers` names at least; None when a group makes it unknown."""
    if any(a.startswith(GROUP_PREFIX) for a in approvers):
        return None
    return len(set(approvers))


class SecurityApprovals(Model):
    """Extra approvals a rollout needs when its rendered diff is security-sensitive (RBAC,
    admission webhooks, NetworkPolicy, Secrets, a workload newly breaking a Pod Security
    Standards control, images from another registry; see baton/sensitivity.py)."""

    required: int = Field(default=0, ge=0, description="extra distinct approvals; 0: none")
    approvers: list[Approver] = Field(
        default=[], description="who gives them; empty: any of the environment's approvers"
    )

    @model_validator(mode="after")
    def _enough_approvers(self) -> SecurityApprovals:
        people = _people(self.approvers)
        if self.approvers and people is not None and people < self.required:
            raise ValueError(
                f"requires {self.required} distinct security approvers but only "
                f"{len(set(self.approvers))} are listed: add approvers or lower required"
            )
        return self


DURATION = re.compile(r"^(?:(\d{1,10})(w|d|h|m|s))+$")
DURATION_PART = re.compile(r"(\d{1,10})(w|d|h|m|s)")
DURATION_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
LONGEST = timedelta(days=3653)
"""The longest duration a config may give (ten years): longer is a typo."""
DURATION_HINT = (
    "whole numbers of weeks, days, hours, minutes or seconds (w, d, h, m, s), alone or "
    "combined as Flux writes them (1h30m), above zero and up to ten years"
)


def parse_duration(text: str) -> timedelta | None:
    """`90s`, `30m`, `1h30m`, `12h`, `30d`, `2w` as a timedelta (units largest first, each once,
    as Go's and Flux's durations are written, plus `d` and `w`); None when `text` is not one, is
    zero, or is longer than `LONGEST`."""
    text = text.strip()
    if not DURATION.match(text):
        return None
    parts = DURATION_PART.findall(text)
    units = [unit for _, unit in parts]
    order = list(DURATION_UNITS)
    if len(set(units)) != len(units) or units != sorted(units, key=order.index):
        return None
    try:
        duration = sum(
            (timedelta(**{DURATION_UNITS[unit]: int(n)}) for n, unit in parts), timedelta()
        )
    except OverflowError:
        return None
    return duration if timedelta(0) < duration <= LONGEST else None


def _a_duration(value: str) -> str:
    if parse_duration(value) is None:
        raise ValueError(
            f"{value!r} is not a duration: give {DURATION_HINT}, e.g. 90s, 30m, 1h30m or 2w"
        )
    return value


Duration = Annotated[str, AfterValidator(_a_duration)]
"""A duration as config spells it (`parse_duration`), checked when the config loads."""


class ApprovalPolicy(Model):
    required: int = Field(default=0, ge=0)
    approvers: list[Approver] = Field(
        default=[], description="who may approve: users and group:NAME entries; empty: anyone"
    )
    allow_self_approval: bool = False
    merge: Literal["auto", "manual"] = "auto"
    security: SecurityApprovals = SecurityApprovals()
    expire_after: Duration | None = Field(
        default=None,
        description="e.g. 24h: approvals older than this when the PR is about to merge no "
        "longer count, and the approvers are asked again; unset: approvals do not expire",
    )

    @property
    def lifetime(self) -> timedelta | None:
        """How long an approval counts (`expire_after`), or None."""
        return parse_duration(self.expire_after) if self.expire_after else None

    @model_validator(mode="after")
    def _enough_approvers(self) -> ApprovalPolicy:
        people = _people(self.approvers)
        if self.approvers and people is not None and people < self.required:
            raise ValueError(
                f"requires {self.required} distinct approvers but only "
                f"{people} are allowed: add approvers or lower required"
            )
        everyone = _people([*self.approvers, *self.security.approvers])
        sensitive = self.required + self.security.required
        if self.approvers and everyone is not None and everyone < sensitive:
            raise ValueError(
                f"a security-sensitive diff needs {sensitive} distinct approvers but only "
                f"{everyone} are allowed: add approvers or security.approvers"
            )
        return self


class SyncConfig(Model):
    kind: Literal["local", "flux", "apply"] = Field(
        default="local",
        description="local: Baton's local cluster runtime; flux: Flux on Kubernetes applies the "
        "GitOps repository; apply: Kubernetes without Flux, Baton server-side applies each merge",
    )
    kustomization: str | None = Field(
        default=None,
        description="flux: the Kustomization's name, {app} and {env} filled in per app (one "
        "fixed name would make every app of the environment wait on the same Kustomization); "
        "unset: {app}-{env}",
    )
    namespace: str = Field(default="flux-system", description="flux: the Kustomization's namespace")
    timeout_s: int = Field(default=600, gt=0)
    rollout_health: bool = Field(
        default=True,
        description="flux, apply: synced only once the app's Deployments rolled out "
        "(kubectl rollout status rules); a progress deadline exceeded fails the sync",
    )
    kubeconfig: Path | None = Field(
        default=None,
        description="flux, apply: the kubeconfig file; unset: in-cluster credentials inside a "
        "pod, else $KUBECONFIG or ~/.kube/config",
    )
    context: str | None = Field(
        default=None,
        description="flux, apply: the kubeconfig context; unset: its current context",
    )

    @field_validator("kustomization")
    @classmethod
    def _known_placeholders(cls, template: str | None) -> str | None:
        return template and _placeholders(template, ("app", "env"))

    host_port_offset: int | None = Field(
        default=None,
        ge=0,
        le=60000,
        description="local: run this cluster's containers on a docker network of their own and "
        "publish each container port P on 127.0.0.1:P+offset (the app then listens on 0.0.0.0 "
        "in its container, as in a pod); unset: host networking, the app's ports are the host's",
    )

    @model_validator(mode="after")
    def _cluster_access_is_for_kubernetes(self) -> SyncConfig:
        if self.kind == "local" and (self.kubeconfig or self.context):
            raise ValueError("kubeconfig and context are only used with kind: flux or apply")
        if self.kind != "local" and self.host_port_offset is not None:
            raise ValueError(
                "host_port_offset is only used with kind: local (Kubernetes publishes ports "
                "through Services)"
            )
        return self


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class WeeklyWindow(Model):
    """Every week on `days`, from `start` to `end` local time (an `end` not after `start` ends
    the next day; no `end`: midnight)."""

    days: list[Weekday] = Field(min_length=1)
    start: time = time(0, 0)
    end: time | None = None


class FreezeWindow(Model):
    """A time when rollouts into the environment wait (a break-glass override lets one through):
    once, from `start` to `end`, or every week."""

    name: str = Field(min_length=1)
    start: datetime | None = None
    end: datetime | None = None
    weekly: WeeklyWindow | None = None
    timezone: str = Field(default="UTC", description="weekly windows: an IANA zone name")

    @model_validator(mode="after")
    def _one_kind(self) -> FreezeWindow:
        once = self.start is not None or self.end is not None
        if once == (self.weekly is not None):
            raise ValueError("set either start and end (once) or weekly, not both")
        if once:
            if self.start is None or self.end is None:
                raise ValueError("a one-time window needs both start and end")
            if self.start.tzinfo is None or self.end.tzinfo is None:
                raise ValueError("start and end need a UTC offset, e.g. 2026-12-24T00:00:00Z")
            if self.end <= self.start:
                raise ValueError("end must be after start")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}: use an IANA name") from None
        return self


class EnvironmentImages(Model):
    """Which images an environment may run."""

    allow_external: bool | None = Field(
        default=None,
        description="false: a render referencing an image from outside Baton's registry "
        "(registry.url) fails, naming the images.mirror entry to add; unset: false where "
        "production: true, true elsewhere",
    )


class ClusterTarget(Model):
    """One of the clusters an environment spans: its own sync and verification."""

    name: Name = Field(description="the cluster's name: {cluster} in gitops.path")
    sync: SyncConfig | None = Field(
        default=None, description="how this cluster syncs; unset: the environment's sync"
    )
    verify: VerifyConfig | None = Field(
        default=None, description="how to verify this cluster; unset: the environment's verify"
    )


class EnvironmentConfig(Model):
    name: Name
    cluster: str = Field(
        default="local", description="the environment's one cluster, when `clusters` is empty"
    )
    clusters: list[ClusterTarget] = Field(
        default=[],
        description="the clusters the environment spans: one GitOps PR writes each one's "
        "gitops.path ({cluster}), and the rollout syncs and verifies each; empty: `cluster`",
    )
    namespace: str
    production: bool = Field(
        default=False,
        description="a rollback's revert PR waits for the approval policy here, "
        "instead of being merged automatically",
    )
    approvals: ApprovalPolicy = ApprovalPolicy()
    operators: list[Approver] = Field(
        default=[],
        description="who may hold and unhold automatic promotion into it (users, group:NAME); "
        "empty: its approvers, or anyone authenticated where it names none",
    )
    lane: LanePolicy = Field(
        default="latest",
        description="one rollout at a time per app here; latest: a newer change supersedes older "
        "ones still waiting (queued, or not merged yet: their GitOps PR is closed); "
        "sequential: every change rolls out, in merge order",
    )
    sync: SyncConfig = SyncConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    verify: VerifyConfig | None = None
    freeze: list[FreezeWindow] = Field(
        default=[], description="rollouts wait while one of these windows is active"
    )
    images: EnvironmentImages = EnvironmentImages()

    @model_validator(mode="after")
    def _clusters_apart(self) -> EnvironmentConfig:
        names = [c.name for c in self.clusters]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"clusters: {', '.join(twice)} named twice: give each cluster once")
        if self.clusters and self.cluster != "local":  # (not fields_set: it must round-trip)
            raise ValueError("set either cluster (one cluster) or clusters (several), not both")
        # The local runtime serves each cluster's copy of the apps on host ports: the same
        # manifests in two local clusters need a different offset each (unset: none, 0).
        local: dict[int, list[str]] = {}
        for target in self.targets:
            if target.sync.kind == "local":
                local.setdefault(target.sync.host_port_offset or 0, []).append(target.cluster)
        clash = next((names for names in local.values() if len(names) > 1), None)
        if len(self.clusters) > 1 and clash:
            raise ValueError(
                f"clusters: {' and '.join(clash)} sync with kind local on the same host ports "
                "(sync.host_port_offset unset or equal): give each its own "
                "sync.host_port_offset, e.g. 100 and 200"
            )
        return self

    @property
    def targets(self) -> list[EnvironmentConfig]:
        """The environment as each of its clusters sees it (`cluster`, `sync` and `verify` of
        that cluster, no `clusters`): itself alone when it names no `clusters`."""
        return [
            self.model_copy(
                update={
                    "cluster": c.name,
                    "sync": c.sync or self.sync,
                    "verify": c.verify or self.verify,
                    "clusters": [],
                }
            )
            for c in self.clusters
        ] or [self]

    @property
    def allows_external_images(self) -> bool:
        """Whether renders here may reference images from outside Baton's registry."""
        allowed = self.images.allow_external
        return not self.production if allowed is None else allowed


class OidcConfig(Model):
    """Who may call the API with a bearer JWT: tokens this issuer signed for this audience."""

    issuer: str = Field(description="the `iss` tokens carry, e.g. https://id.example.com/realms/x")
    audience: str = Field(description="the `aud` tokens must name (the API's client id)")
    username_claim: str = Field(
        default="preferred_username", description="the claim that names the Baton user"
    )
    groups_claim: str = Field(default="groups", description="the claim listing the user's groups")
    jwks_url: str | None = Field(
        default=None,
        description="the issuer's JWKS; unset: jwks_uri from its "
        "/.well-known/openid-configuration (OpenID Connect Discovery 1.0)",
    )
    client_id: str | None = Field(
        default=None,
        description="the board's client at the issuer, a public client signing people in with "
        "the authorization code flow and PKCE (redirect URI <API URL>/board/sign-in/callback); "
        "unset: `audience`",
    )
    algorithms: list[Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]] = (
        Field(
            default=["RS256", "ES256"],
            min_length=1,
            description="signature algorithms accepted (asymmetric only: never HS* or none)",
        )
    )


class UserRecord(Model):
    """One of Baton's own user records: the groups of a user who signs in with a Baton token,
    and who they are on the forge."""

    groups: list[str] = []
    forge_users: list[str] = Field(
        default=[],
        description="the user's logins on the forge, when not their Baton name: a change opened "
        "by one of them, or with commits the forge links to one of them, is theirs (no "
        "self-approval)",
    )
    emails: list[str] = Field(
        default=[],
        description="the emails the user commits with (git's author email, any case): a change "
        "with a commit by one of them is theirs (no self-approval)",
    )


class AuthConfig(Model):
    """How people authenticate to the API: OIDC bearer JWTs and/or Baton API tokens."""

    oidc: OidcConfig | None = None
    users: dict[str, UserRecord] = Field(
        default={}, description="Baton's own user records, by user name (groups for tokens)"
    )


class MirrorEntry(Model):
    """A third-party image copied by digest into Baton's registry as `<name>:<tag>`."""

    source: str = Field(description="<registry>/<repository>:<tag>, e.g. docker.io/library/redis:7")
    name: str = Field(description="repository path under Baton's registry, e.g. mirror/redis")
    plain_http: bool = Field(default=False, description="reach the source registry over http")
    credentials: Credentials = Credentials()

    @field_validator("source")
    @classmethod
    def _source_is_a_tagged_reference(cls, source: str) -> str:
        reference = parse_reference(source)
        if reference.domain is None or reference.tag is None or reference.digest is not None:
            raise ValueError(
                f"{source!r}: give <registry>/<repository>:<tag> (e.g. docker.io/library/redis:7), "
                "a tag Baton watches for updates"
            )
        return source

    @field_validator("name")
    @classmethod
    def _name_docker_accepts(cls, name: str) -> str:
        return check_repository(name)


class ImagesConfig(Model):
    mirror: list[MirrorEntry] = []
    refresh: str | None = Field(
        default=None,
        description="cron (5 fields, UTC) of the Temporal Schedule that re-reads every source and "
        "opens PRs moving pins to new digests; `baton images schedule` sets it up",
    )

    _cron = field_validator("refresh")(check_cron)

    @model_validator(mode="after")
    def _distinct_names(self) -> ImagesConfig:
        names = [(m.name, parse_reference(m.source).tag) for m in self.mirror]
        dupes = sorted({f"{n}:{t}" for n, t in names if names.count((n, t)) > 1})
        if dupes:
            raise ValueError(f"two mirror entries write {', '.join(dupes)}: give each its own name")
        return self


def duration(text: str) -> timedelta:
    """A `Duration` field's value as a timedelta."""
    parsed = parse_duration(text)
    assert parsed is not None  # a Duration was validated
    return parsed


class ReconcileConfig(Model):
    interval: Duration = Field(
        default="1m",
        description="how often the reconciler reads each app's open PRs and release branch head "
        "and the GitOps PRs rollouts wait on, acting on deliveries that never arrived (the "
        "Temporal Schedule `reconcile`, also run when the API starts); e.g. 1m, 5m, 1h",
    )


class OutagesConfig(Model):
    wait: Duration = Field(
        default="6h",
        description="how long a pipeline step (a check, the image build, test and push, the "
        "artifact's publishing) retries, with backoff, while a dependency it needs (the "
        "registry, the container engine, the forge) does not answer, before the change fails; "
        "deploy steps retry until the dependency answers (abort the change to stop them); "
        "e.g. 30m, 6h, 1d",
    )


NotificationEvent = Literal["approval_needed", "deployed", "failed", "rolled_back"]
NOTIFICATION_EVENTS: tuple[NotificationEvent, ...] = (
    "approval_needed",
    "deployed",
    "failed",
    "rolled_back",
)


class NotificationConfig(Model):
    """Where a rollout's events are posted: a Slack or Microsoft Teams incoming webhook, or a
    generic webhook (JSON signed with HMAC-SHA256 of `secret_env`'s value).

    The URL is read from `url_env` on the worker when sending: webhook URLs embed their token.
    """

    kind: Literal["slack", "teams", "webhook"]
    url_env: str = Field(description="environment variable holding the webhook URL")
    events: list[NotificationEvent] = Field(
        default=list(NOTIFICATION_EVENTS), min_length=1, description="what is posted"
    )
    secret_env: str | None = Field(
        default=None, description="kind webhook: environment variable holding the signing secret"
    )

    @model_validator(mode="after")
    def _signed(self) -> NotificationConfig:
        if self.kind == "webhook" and not self.secret_env:
            raise ValueError("a generic webhook is signed: set secret_env")
        if self.kind != "webhook" and self.secret_env:
            raise ValueError(f"secret_env is for kind webhook; {self.kind} URLs carry their token")
        return self


class BatonConfig(Model):
    forge: ForgeConfig = ForgeConfig()
    registry: RegistryConfig = RegistryConfig()
    store: StoreConfig = StoreConfig()
    gitops: GitOpsConfig = GitOpsConfig()
    images: ImagesConfig = ImagesConfig()
    reconcile: ReconcileConfig = ReconcileConfig()
    outages: OutagesConfig = OutagesConfig()
    apps: list[AppConfig] = Field(min_length=1)
    environments: list[EnvironmentConfig] = []
    promotion: list[str | list[str]] = Field(
        default=[],
        description="stages in promotion order: an environment name, or a list of names rolled "
        "out at the same time (`[dev, [staging-a, staging-b], prod]`)",
    )
    notifications: list[NotificationConfig] = []
    auth: AuthConfig = AuthConfig()

    @model_validator(mode="after")
    def _consistent(self) -> BatonConfig:
        for kind, names in (
            ("app", [a.name for a in self.apps]),
            ("environment", [e.name for e in self.environments]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} name(s): {', '.join(dupes)}")
        known = {e.name for e in self.environments}
        wrong = promotion.problems(self.promotion, [e.name for e in self.environments])
        if wrong:
            raise ValueError("\n".join(wrong))  # one problem per line (`_problems`)
        for app in self.apps:
            unknown = sorted(set(app.verify) - known)
            if unknown:
                raise ValueError(
                    f"app {app.name}: verify names unknown environment(s) {', '.join(unknown)}: "
                    "use the names under environments"
                )
            if len(self.registry.url) + 1 + len(app.image) > NAME_MAX:
                raise ValueError(
                    f"app {app.name}: {self.registry.url}/{app.image} is longer than "
                    f"{NAME_MAX} characters, the most an image name may have"
                )
        return self

    @model_validator(mode="after")
    def _apps_apart(self) -> BatonConfig:
        """Apps sharing the GitOps repository each write (and read) paths of their own."""
        uses = {
            "path": self.apps,
            "values": [a for a in self.apps if a.chart],
            "overlay": [a for a in self.apps if a.kustomize],
        }
        for field, apps in uses.items():
            template = getattr(self.gitops, field)
            if len(apps) > 1 and "{app}" not in template:
                raise ValueError(
                    f"gitops.{field}: {template!r} is the same for apps "
                    f"{', '.join(a.name for a in apps)}: each would overwrite the others' files; "
                    "put {app} in it"
                )
        spanning = [env.name for env in self.environments if len(env.clusters) > 1]
        if spanning and "{cluster}" not in self.gitops.path:
            raise ValueError(
                f"gitops.path: {self.gitops.path!r} is the same for every cluster of "
                f"{', '.join(spanning)}: each cluster would read the others' manifests; put "
                "{cluster} in it (e.g. rendered/{env}/{cluster}/{app})"
            )
        for field in ("values", "overlay"):
            template = getattr(self.gitops, field)
            if spanning and "{cluster}" in template:
                raise ValueError(
                    f"gitops.{field}: {template!r} names {{cluster}}, but the clusters of "
                    f"{', '.join(spanning)} run one render of the environment: take {{cluster}} "
                    "out of it (it belongs in gitops.path)"
                )
        if self.gitops.layout == "folders":
            paths: dict[str, list[str]] = {}
            for env in self.environments:
                for target in env.targets:
                    path = self.gitops.path.format(
                        env=env.name, app="{app}", cluster=target.cluster
                    )
                    paths.setdefault(path, []).append(env.name)
            shared = next((envs for envs in paths.values() if len(envs) > 1), None)
            if shared:
                raise ValueError(
                    f"gitops.path: {self.gitops.path!r} is the same for environments "
                    f"{', '.join(shared)} on one branch: each would overwrite the others' "
                    "manifests; put {env} in it, or set gitops.layout: branches"
                )
        return self

    def app(self, name: str) -> AppConfig:
        for app in self.apps:
            if app.name == name:
                return app
        raise ConfigError([f"apps: no app named {name!r}"])

    def app_for_repo(self, repo: str) -> AppConfig | None:
        """The app whose repository is `repo`, compared as the forge compares names."""
        return next((a for a in self.apps if self.same_repo(a.repo, repo)), None)

    def is_gitops_repo(self, repo: str) -> bool:
        return self.same_repo(self.gitops.repo, repo)

    def same_repo(self, configured: str, named: str) -> bool:
        """Whether `named` (from a webhook) is the repository `configured` here.

        GitHub, Gitea/Forgejo and Azure DevOps match owner (project) and name case-insensitively
        (GitHub: "repository names are not case-sensitive"; Gitea looks repositories up by their
        lower-cased name; Azure DevOps names are case-insensitive). The local forge's are paths.
        """
        if self.forge.kind == "local":
            return configured == named
        return configured.casefold() == named.casefold()

    def environment(self, name: str) -> EnvironmentConfig:
        for env in self.environments:
            if env.name == name:
                return env
        raise ConfigError([f"environments: no environment named {name!r}"])

    def promotion_order(self, app: AppConfig | None = None) -> list[EnvironmentConfig]:
        """Environments in promotion order; without `promotion`, the order they are listed in.

        With `app`, each environment is as that app sees it: the app's own `verify` there, if any.
        """
        envs = [self.environment(n) for stage in self.promotion_stages() for n in stage]
        if app is None:
            return envs
        return [
            e.model_copy(update={"verify": app.verify[e.name]}) if e.name in app.verify else e
            for e in envs
        ]

    def promotion_stages(self) -> list[list[str]]:
        """`promotion` as stages of environment names (`baton.promotion`); without it, one
        stage per environment in the order they are listed."""
        if not self.promotion:
            return [[e.name] for e in self.environments]
        return promotion.stages_of(self.promotion)


class ConfigError(ConfigurationError):
    """The configuration is invalid; `problems` has one line per problem with its field path."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _field_path(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-") or part in ("constrained-str", "str"):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


_BOUNDS = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}


def _problems(error: ValidationError) -> list[str]:
    problems = []
    for err in error.errors():
        path = _field_path(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field: remove it or check its spelling"
        elif err["type"] == "string_pattern_mismatch":
            message = "must be lowercase letters, digits and '-' (a DNS label)"
        elif err["type"] in _BOUNDS:
            (bound,) = err["ctx"].values()
            message = f"must be {_BOUNDS[err['type']]} {bound}"
        elif err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "model_type":
            message = _mapping_expected(err["ctx"]["class_name"], err["input"])
        elif err["type"] == "list_type":
            message = _list_expected(err["input"])
        problems += [f"{path}: {line}" if path else line for line in message.split("\n")]
    return problems


def _mapping_expected(class_name: str, given: object) -> str:
    """What a field that takes a mapping needs, in the config's words (pydantic's says "instance
    of" a class the user never sees)."""
    models = {m.__name__: m for m in _subclasses(Model)}
    fields = list(models[class_name].model_fields) if class_name in models else []
    keys = f" (keys: {', '.join(fields)})" if fields else ""
    return f"must be a mapping{keys}; got {_yaml_flow(given)}"


def _list_expected(given: object) -> str:
    if isinstance(given, str | int | float | bool):
        return f"must be a list: write [{_yaml_flow(given)}] for a list of one"
    return f"must be a list; got {_yaml_flow(given)}"


def _subclasses(cls: type[Model]) -> Iterator[type[Model]]:
    sub: type[Model]
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _yaml_flow(value: object) -> str:
    """`value` as YAML flow text, shortened for one line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("\n...").strip()
    return text if len(text) <= 60 else text[:57] + "..."


class _UniqueKeyLoader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """YAML's safe loader, libyaml's parser where PyYAML has it (10x faster than the pure Python
    one: 2 ms against 18 ms for examples/baton.yaml), refusing a key given twice in one mapping
    (YAML 1.2 says keys are unique; PyYAML would silently keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_config(text: str, source: str = "baton.yaml") -> BatonConfig:
    """Parse and validate a config document; raises ConfigError listing every problem."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            [f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"], source
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(["the file must be a YAML mapping with apps, environments, ..."], source)
    try:
        return BatonConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_problems(exc), source) from None


def load_config(path: Path) -> BatonConfig:
    """Read and validate `path`."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror}"], str(path)) from None
    return parse_config(text, str(path))


def reader_warnings(config: BatonConfig) -> list[str]:
    """Where a process that only reads holds a secret that writes: one line each, for
    `baton config check` and `baton dev up` (valid, but worth knowing)."""
    warnings = []
    registry = config.registry
    pull = registry.pull_credentials
    if registry.credentials.names_secret() and (
        pull is None or pull.same_secret(registry.credentials)
    ):
        warnings.append(
            "registry.pull_credentials is unset or names the push secret: the API and the local "
            "cluster, which only read, hold the registry's push password; set it to a pull-only "
            "robot account or read-only token"
        )
    forge = config.forge
    read = forge.read_credentials
    local_sync = any(t.sync.kind == "local" for e in config.environments for t in e.targets)
    if (
        local_sync
        and forge.credentials.names_secret()
        and (read is None or read.same_secret(forge.credentials))
    ):
        warnings.append(
            "forge.read_credentials is unset or names the same token as forge.credentials: the "
            "local cluster, which only reads the GitOps repository, holds a token that writes; "
            "set it to a read-only token (a deploy token)"
        )
    store = config.store
    if (
        store.kind == "s3"
        and store.credentials
        and store.read_credentials in (None, store.credentials)
    ):
        warnings.append(
            "store.read_credentials is unset or the same as store.credentials: the API, which only "
            "reads step logs, holds the S3 store's access key that writes; set it to a key with "
            "s3:GetObject only"
        )
    return warnings


def topology_warnings(config: BatonConfig) -> list[str]:
    """What a valid configuration does that its author may not expect: an environment no
    promotion stage names (nothing deploys there), and cluster `verify` URLs that every app of
    the environment is verified at. One line each, with the field path."""
    warnings = []
    staged = {name for stage in config.promotion_stages() for name in stage}
    for i, env in enumerate(config.environments):
        if env.name not in staged:
            warnings.append(
                f"environments[{i}] ({env.name}) is in no stage of promotion: no change deploys "
                "there; add it to promotion or remove it"
            )
        verified = [c.name for c in env.clusters if c.verify is not None]
        if verified and len(config.apps) > 1:
            warnings.append(
                f"environments[{i}] ({env.name}): the verify of cluster(s) "
                f"{', '.join(verified)} is used for every app there "
                f"({', '.join(a.name for a in config.apps)}); give clusters a verify only where "
                "one app deploys"
            )
    return warnings


def config_warnings(config: BatonConfig) -> list[str]:
    """Every warning `baton config check` prints: `reader_warnings`, then `topology_warnings`."""
    return reader_warnings(config) + topology_warnings(config)
