"""Errors a user or operator can meet: one hierarchy, each class saying whether a retry can help.

Each message is one line naming the problem and the fix. A class's name is the Temporal error
type an activity reports it under, and `retryable` decides whether Temporal retries it; workflows
list the non-retryable types with `non_retryable(...)`, never by hand. Categories say where the
problem is; a family of errors lives beside the adapter that raises it (module in brackets).
✗ marks a class a retry cannot help, ✓ one it may.

    BatonError ✗
    ├── ConfigurationError ✗            what Baton was set up or given to work with is wrong
    │   ├── ConfigError                 [config] the configuration file
    │   ├── TokenFileError              [tokens] the API's token file (BATON_TOKENS_FILE)
    │   ├── DeployConfigError           the GitOps repository or rendered manifests
    │   │   ├── NondeterministicRender  two renders of the same inputs differ, not accepted
    │   │   └── ExternalImage           [environment_render] an image from outside Baton's
    │   │                               registry where the environment allows none
    │   ├── ClusterConfigError          a cluster's kubeconfig, permissions or sync objects
    │   ├── CheckConfigError            a pipeline step the app is not set up for
    │   ├── RenderFailed, ManifestError [render] a chart or kustomization, rendered manifests
    │   ├── BundleInvalid               [bundles] a kustomization that cannot be published alone
    │   └── ImageBuildFailed,           [images] a Dockerfile that does not build, or needs
    │       BuildKitRequired                more BuildKit than the build worker has
    ├── RequestError ✗                  a request that cannot be carried out as made
    │   ├── BadRequest                  a missing or invalid value
    │   ├── WebhookRejected             [api.github] a webhook delivery (answered with its status)
    │   ├── Unauthenticated             missing, unknown, expired or revoked credentials (401)
    │   ├── TooManyAttempts             [api.auth] failed authentications from one client (429)
    │   └── NotFound                    what the request names does not exist
    │       ├── ChangeNotFound, EnvironmentNotFound   [changes]
    │       └── MirrorSourceNotFound    an images.mirror source tag its registry does not have
    ├── DecisionRefused ✗               a decision the policy or the rollout's state does not allow
    │   ├── PolicyViolation             [policy] an approval, rejection or override the rules forbid
    │   ├── NotAwaitingApproval
    │   ├── NotFrozen
    │   └── Refused                     [changes] the workflow's refusal, as the CLI shows it
    ├── ForgeError ✓                    [forges.base] a forge, or git on a repository it hosts
    │   ├── ForgeRefusal ✗              the Forge protocol's refusals: HeadChanged, NotMergeable
    │   │                               (MergeMethodRefused, RequiredChecksNotPassing),
    │   │                               PullRequestNotFound, PullRequestClosed, NoCommitsBetween,
    │   │                               RepositoryNotFound, BranchNotFound
    │   ├── ForgeRequestFailed ✗        [forges.http] TokenRejected, PermissionDenied,
    │   │   │                           ResourceNotFound, RequestRejected
    │   │   └── RateLimited ✓, ForgeUnavailable ✓
    │   ├── InvalidRepositoryName ✗, DuplicatePullRequest ✗, GitFailed ✓   [local.forge]
    │   ├── GitOpsError ✓               [gitops] pushing a rollout's branch
    │   └── CheckoutError ✓             [workspace] fetching or checking out a commit
    ├── ClusterError ✓                  a cluster and its sync
    │   ├── SyncFailed ✗                the cluster reports the sync of the revision failed
    │   ├── NotSynced ✓                 not there yet: asked again with backoff
    │   ├── StatusUnreadable ✓          [cluster.local]
    │   ├── ReconcileFailed ✓           [local.cluster]
    │   └── KubernetesError ✓           [cluster.kubernetes] ClusterUnreachable ✓, Conflict ✓,
    │                                   KubeconfigError ✗, ClusterUnauthorized ✗,
    │                                   ClusterForbidden ✗, ObjectNotFound ✗, Invalid ✗,
    │                                   ApplyFailed ✗, RolloutFailed ✗,
    │                                   InventoryUnreadable ✗ [cluster.applied]
    ├── InfrastructureError ✓           a service, tool or store Baton relies on
    │   ├── ToolNotFound
    │   ├── TemporalUnavailable         [temporal]
    │   ├── WorkerUnavailable           [changes]
    │   ├── EngineUnavailable, ImagePushFailed, ImageTestPortBusy   [images]
    │   ├── MirrorFailed                [mirror] copying a third-party image
    │   ├── RegistryError               [registry] RegistryUnreachable ✓, RegistryAuthError ✗
    │   ├── ArtifactError               [artifacts]
    │   ├── LogNotFound                 [logs] another worker may hold it
    │   └── StackError                  [local.stack]
    ├── DemoFailed                      [cli.demo] the demo's change did not get through
    └── WaitTimedOut                    [cli.watch] `baton changes wait` gave up after --timeout
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar


class BatonError(Exception):
    """Base class for errors that are shown to the user as one line, never a traceback."""

    retryable: ClassVar[bool] = False
    """Whether trying the same call again may succeed; False stops Temporal's retries at once."""
    next_retry_delay: timedelta | None = None
    """How long the next attempt should wait, when the other side said so (a rate limit)."""

    def details(self) -> dict[str, str]:
        """Facts a workflow may act on, carried as the Temporal error's details (no secrets)."""
        return {}


def non_retryable(*classes: type[BatonError]) -> list[str]:
    """The Temporal error types of `classes` and their subclasses that a retry cannot help.

    For `RetryPolicy(non_retryable_error_types=...)`. Subclasses count once their module is
    imported, so name classes whose subclasses are defined beside them.
    """
    names: set[str] = set()
    pending = list(classes)
    while pending:
        cls = pending.pop()
        if not cls.retryable:
            names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return sorted(names)


class ConfigurationError(BatonError):
    """What Baton was set up or given to work with is wrong: a person must fix what the message
    names (a config field, a chart, a file in the GitOps repository, a grant)."""


class RequestError(BatonError):
    """A request (a CLI command, an API call, a webhook delivery) that cannot be carried out as made."""


class NotFound(RequestError):
    """What the request names (a change, an environment of it) does not exist."""


class MirrorSourceNotFound(NotFound):
    """An `images.mirror` source names a tag its registry does not have: no retry brings it."""


class DecisionRefused(BatonError):
    """A decision (approve, reject, override, abort) the policy or the rollout's state refuses."""


class ClusterError(BatonError):
    """A cluster could not be read or changed, or its sync did not go as expected."""

    retryable = True


class InfrastructureError(BatonError):
    """A service, tool or store Baton relies on is missing or not answering; it may come back,
    or another worker may have it."""

    retryable = True


class DeployConfigError(ConfigurationError):
    """The GitOps repository or the rendered manifests do not allow the rollout."""


class NondeterministicRender(DeployConfigError):
    """Two renders of the same inputs differ, and the app does not accept that
    (`apps[].nondeterministic: reject`, the default)."""


class ExternalImage(DeployConfigError):
    """A render for an environment that allows only Baton's registry
    (`environments[].images.allow_external: false`) references an image from another registry:
    mirror it (`images.mirror`) and reference the mirrored copy."""


class ClusterConfigError(ConfigurationError):
    """A cluster cannot be used as configured: kubeconfig, credentials, RBAC or missing objects."""


class CheckConfigError(ConfigurationError):
    """A pipeline step cannot run for the app as it is set up (its kind, its pushed image)."""


class BadRequest(RequestError):
    """A request with a missing or invalid value; the message names it and what to give."""


class Unauthenticated(RequestError):
    """A request without a credential, or with one that is unknown, expired, revoked or not
    signed by the configured issuer; the message says which and how to get a good one."""


class NotAwaitingApproval(DecisionRefused):
    """An approval or rejection for a rollout that is not waiting for one."""


class NotFrozen(DecisionRefused):
    """A freeze override for a rollout that no freeze holds."""


class SyncFailed(ClusterError):
    """The cluster reports that applying the merged revision failed."""

    retryable = False


class NotSynced(ClusterError):
    """The cluster has not applied the merged revision yet: asked again with backoff."""


class ToolNotFound(InfrastructureError):
    """A command-line tool Baton needs is neither in the tools directory nor on PATH."""

    def __init__(self, name: str, searched: str, install: str = "make tools") -> None:
        super().__init__(
            f"{name} not found (looked in {searched} and on PATH): run `{install}` "
            f"or put {name} on PATH"
        )
        self.name = name
