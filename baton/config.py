"""`baton.yaml`: the declarative description of forge, registry, GitOps repository, apps and environments.

Secrets are never values in this file: fields ending in `_env` or `_file` name an environment variable
or a file that holds the secret.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from baton.errors import ConfigurationError
from baton.settings import read_secret

NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
Name = Annotated[str, Field(pattern=NAME)]


LanePolicy = Literal["latest", "sequential"]
"""`latest`: a newer change supersedes waiting older ones; `sequential`: every change rolls out."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Credentials(Model):
    """Where a secret lives: an environment variable or a file. Never the secret itself."""

    username: str | None = None
    token_env: str | None = None
    token_file: Path | None = None

    def token(self) -> str | None:
        """The secret, read at the moment it is needed (never stored in workflow state)."""
        if self.token_env and (value := os.environ.get(self.token_env)):
            return value.strip()
        if self.token_file and self.token_file.is_file():
            return self.token_file.read_text().strip()
        return None


class ForgeConfig(Model):
    kind: Literal["local", "github", "azure-devops", "gitea"] = "local"
    url: str | None = None
    credentials: Credentials = Credentials()
    webhook_secret_env: str = "BATON_WEBHOOK_SECRET"
    merge: Literal["merge", "fast-forward"] = "merge"

    @model_validator(mode="after")
    def _hosted_forges_need_url(self) -> ForgeConfig:
        if self.kind != "local" and not self.url:
            raise ValueError(f"forge.kind {self.kind!r} needs forge.url (the API base URL)")
        return self

    def webhook_secret(self) -> str | None:
        return read_secret(self.webhook_secret_env)


class RegistryConfig(Model):
    url: str = "127.0.0.1:5000"
    credentials: Credentials = Credentials()
    plain_http: bool = True

    @field_validator("url")
    @classmethod
    def _host_only(cls, url: str) -> str:
        if "://" in url:
            raise ValueError("give host[:port] without a scheme, e.g. 127.0.0.1:5000")
        return url.rstrip("/")


class GitOpsConfig(Model):
    repo: str = "gitops"
    base_branch: str = "main"
    path: str = Field(
        default="rendered/{env}/{app}",
        description="where an environment's rendered manifests live; {env}, {app}, {cluster}",
    )
    values: str = Field(
        default="environments/{env}/{app}/values.yaml",
        description="an environment's values file in the GitOps repository",
    )

    @field_validator("path", "values")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        unknown = set(re.findall(r"{(\w*)}", template)) - {"env", "app", "cluster"}
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {', '.join(sorted(unknown))}: use {{env}}, {{app}}, {{cluster}}"
            )
        return template


class Commands(Model):
    lint: list[str] = []
    test: list[str] = []
    long_test: list[str] = []


class AppConfig(Model):
    name: Name
    repo: str
    dockerfile: str = "Dockerfile"
    context: str = "."
    chart: str | None = None
    kustomize: str | None = None
    test_values: str | None = None
    image: str
    port_value: str = "service.port"
    commands: Commands = Commands()
    check_timeout_s: int = Field(default=600, gt=0)

    @model_validator(mode="after")
    def _one_template_kind(self) -> AppConfig:
        if (self.chart is None) == (self.kustomize is None):
            raise ValueError("set exactly one of chart (Helm chart path) or kustomize (path)")
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
    NetworkPolicy, Secrets, securityContext, images from another registry)."""

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


DURATION = re.compile(r"^([1-9]\d*)(m|h|d|w)$")
DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta | None:
    """`30m`, `12h`, `30d`, `2w` as a timedelta; None when `text` is not one."""
    match = DURATION.match(text.strip())
    if not match:
        return None
    return timedelta(**{DURATION_UNITS[match.group(2)]: int(match.group(1))})


class ApprovalPolicy(Model):
    required: int = Field(default=0, ge=0)
    approvers: list[Approver] = Field(
        default=[], description="who may approve: users and group:NAME entries; empty: anyone"
    )
    allow_self_approval: bool = False
    merge: Literal["auto", "manual"] = "auto"
    security: SecurityApprovals = SecurityApprovals()
    expire_after: str | None = Field(
        default=None,
        description="e.g. 24h: approvals older than this when the PR is about to merge no "
        "longer count, and the approvers are asked again; unset: approvals do not expire",
    )

    @field_validator("expire_after")
    @classmethod
    def _a_duration(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) is None:
            raise ValueError(f"{value!r} is not a duration: give e.g. 30m, 12h, 1d or 2w")
        return value

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
        default=None, description="flux: the Kustomization's name; unset: <app>-<environment>"
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

    @model_validator(mode="after")
    def _cluster_access_is_for_kubernetes(self) -> SyncConfig:
        if self.kind == "local" and (self.kubeconfig or self.context):
            raise ValueError("kubeconfig and context are only used with kind: flux or apply")
        return self


class VerifyConfig(Model):
    url: str
    expected_status: int = Field(default=200, ge=100, le=599)
    expected_body: str | None = Field(
        default=None, description="substring the body must contain; {commit} is the change's commit"
    )
    timeout_s: int = Field(default=120, gt=0)


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


class EnvironmentConfig(Model):
    name: Name
    cluster: str = "local"
    namespace: str
    production: bool = Field(
        default=False,
        description="a rollback's revert PR waits for the approval policy here, "
        "instead of being merged automatically",
    )
    approvals: ApprovalPolicy = ApprovalPolicy()
    lane: LanePolicy = Field(
        default="latest",
        description="one rollout at a time per app here; latest: a newer change supersedes older "
        "ones still waiting (queued, or not merged yet: their GitOps PR is closed); "
        "sequential: every change rolls out, in merge order",
    )
    sync: SyncConfig = SyncConfig()
    verify: VerifyConfig | None = None
    freeze: list[FreezeWindow] = Field(
        default=[], description="rollouts wait while one of these windows is active"
    )


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
        "by one of them is theirs (no self-approval)",
    )


class AuthConfig(Model):
    """How people authenticate to the API: OIDC bearer JWTs and/or Baton API tokens."""

    oidc: OidcConfig | None = None
    users: dict[str, UserRecord] = Field(
        default={}, description="Baton's own user records, by user name (groups for tokens)"
    )


class BatonConfig(Model):
    forge: ForgeConfig = ForgeConfig()
    registry: RegistryConfig = RegistryConfig()
    gitops: GitOpsConfig = GitOpsConfig()
    apps: list[AppConfig] = Field(min_length=1)
    environments: list[EnvironmentConfig] = []
    promotion: list[str] = Field(default=[], description="environment names in promotion order")
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
        unknown = [n for n in self.promotion if n not in known]
        if unknown:
            raise ValueError(
                f"promotion names unknown environment(s) {', '.join(unknown)}: "
                f"define them under environments"
            )
        if len(set(self.promotion)) != len(self.promotion):
            raise ValueError("promotion lists an environment twice")
        return self

    def app(self, name: str) -> AppConfig:
        for app in self.apps:
            if app.name == name:
                return app
        raise ConfigError([f"apps: no app named {name!r}"])

    def app_for_repo(self, repo: str) -> AppConfig | None:
        return next((a for a in self.apps if a.repo == repo), None)

    def environment(self, name: str) -> EnvironmentConfig:
        for env in self.environments:
            if env.name == name:
                return env
        raise ConfigError([f"environments: no environment named {name!r}"])

    def promotion_order(self) -> list[EnvironmentConfig]:
        """Environments in promotion order; without `promotion`, the order they are listed in."""
        names = self.promotion or [e.name for e in self.environments]
        return [self.environment(n) for n in names]


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
        problems.append(f"{path}: {message}" if path else message)
    return problems


def parse_config(text: str, source: str = "baton.yaml") -> BatonConfig:
    """Parse and validate a config document; raises ConfigError listing every problem."""
    try:
        raw = yaml.safe_load(text)
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
