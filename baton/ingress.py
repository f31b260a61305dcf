"""Turns normalized forge events into Temporal calls with deterministic workflow ids: the one
mapping shared by the webhook path (the API) and the reconciler (`baton.reconcile`)."""

from __future__ import annotations

import contextlib
import re
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from baton import policy
from baton.cluster.base import kustomization_name
from baton.config import BatonConfig, load_config
from baton.forge_events import PullRequestHook, PushHook, ReviewHook
from baton.models import ChangeInput, ChangePlan, ForgeReview, PullRequestEvent, SyncEvent
from baton.settings import Settings
from baton.start_journal import PendingStart, StartJournal, StartRefused
from baton.temporal import (
    Signals,
    TaskQueues,
    WorkflowTypes,
    change_id,
    initial_search_attributes,
    push_change_id,
)

ROLLOUT_TRAILER = re.compile(r"^Baton-Rollout: (rollout/\S+)\s*$", re.MULTILINE)


def rollout_of(body: str) -> str | None:
    """The rollout a GitOps PR belongs to, from the trailer Baton writes into its body."""
    match = ROLLOUT_TRAILER.search(body)
    return match.group(1) if match else None


def _release_unknown(app: str, repo: str) -> Reply:
    return Reply(
        202,
        f"ignored: the delivery does not name {repo}'s default branch: "
        f"set apps[].branch of {app} to its release branch",
    )


@dataclass
class FluxEvent:
    """A Flux event reduced to what routing needs."""

    name: str
    namespace: str
    sync: SyncEvent


@dataclass
class Reply:
    """What the API answers: HTTP status and a short reason."""

    status: int
    message: str
    workflow_id: str | None = None


class Deliveries:
    """Recently seen delivery ids: a redelivered webhook is answered without acting twice.

    Workflows are also safe against redeliveries (deterministic ids, idempotent signals); this only
    saves the round trip and makes the answer say "duplicate".
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()

    def seen(self, delivery_id: str) -> bool:
        if delivery_id in self._seen:
            return True
        self._seen[delivery_id] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return False

    def forget(self, delivery_id: str) -> None:
        """Undo `seen` when acting failed, so the forge's retry is not mistaken for a duplicate."""
        self._seen.pop(delivery_id, None)


class Ingress:
    def __init__(
        self,
        client: Client,
        config: BatonConfig,
        settings: Settings,
        via: str = "webhook",
        source: Path | None = None,
        journal: StartJournal | None = None,
    ) -> None:
        """`via`: the path that acts (`webhook`, or `reconciler` for the forge's own reading),
        named in the summary of the workflows it starts. `source`: the file `config` was read
        from, read again by `reload`. `journal`: where the starts of new changes are journaled,
        to be made in the background (the API's), instead of being made before answering."""
        self.client = client
        self.journal = journal
        self.config = config
        self.settings = settings
        self.via = via
        self.source = source
        # Repository id -> configured name, from deliveries: a renamed repository's deliveries
        # still reach its app while this process runs (the config should get the new name).
        self.repo_ids: dict[str, str] = {}

    def reload(self) -> None:
        """Read the configuration file again (when there is one): what an operator fixed there
        (a wrong `verify.url`, a missing values file) applies from now on, to retries first.

        Raises `ConfigError` naming the file's problems when it is invalid now; the
        configuration in use then stays."""
        if self.source is not None:
            self.config = load_config(self.source)

    def plan(self, app_name: str) -> ChangePlan:
        """The configuration a new change runs under, frozen into its input."""
        return ChangePlan.of(
            self.config,
            app_name,
            ui_url=self.settings.temporal_ui_url,
            namespace=self.client.namespace,
        )

    async def pull_request(self, hook: PullRequestHook, delivery_id: str) -> Reply:
        """Start, resume or signal the change of a PR into its app's release branch.

        A PR into any other branch starts nothing, and one retargeted away from the release
        branch stops its change (`retargeted`); one retargeted into it, or reopened, gets a
        running change whether or not the old one is still closing (signal-with-start).
        """
        repo = self._configured_repo(hook.repo, hook.repo_id)
        if repo is not None and self.config.is_gitops_repo(repo):
            return await self._gitops_pull_request(hook)
        app = self.config.app_for_repo(repo) if repo is not None else None
        if app is None:
            return Reply(202, f"ignored: repository {hook.repo!r} is not an app in the config")
        workflow_id = change_id(app.name, hook.number)
        release = app.branch or hook.default_branch
        if release is None:
            return _release_unknown(app.name, hook.repo)
        if hook.base_branch != release:
            return await self._off_release(hook, workflow_id, release, delivery_id)
        if hook.action == "opened":
            return await self._start(app.name, hook, workflow_id)
        if hook.action == "reopened" or (hook.action == "edited" and hook.base_changed):
            return await self._resume(app.name, hook, workflow_id, delivery_id)
        if hook.action in ("synchronize", "updated"):
            event = PullRequestEvent(
                action="synchronize", head_sha=hook.head_sha, delivery_id=delivery_id
            )
            reply = await self.signal(workflow_id, Signals.PULL_REQUEST_EVENT, event)
            if reply.workflow_id is None and hook.action == "updated":
                # Azure DevOps says only "updated": reactivated or retargeted into the branch.
                return await self._resume(app.name, hook, workflow_id, delivery_id)
            return reply
        if hook.action == "closed" and hook.merged:
            event = PullRequestEvent(
                action="merged", merge_commit_sha=hook.merge_commit_sha, delivery_id=delivery_id
            )
            return await self._merged(app.name, hook, workflow_id, event)
        if hook.action == "closed":
            event = PullRequestEvent(
                action="closed", updated_at=hook.updated_at, delivery_id=delivery_id
            )
        else:
            return Reply(202, f"ignored: pull_request action {hook.action!r}")
        return await self.signal(workflow_id, Signals.PULL_REQUEST_EVENT, event)

    async def push(self, hook: PushHook) -> Reply:
        """A push to an app's release branch starts the change of its new head commit, which
        integrates and promotes it unless the forge says a pull request merged as that commit
        (then that PR's change carries it). One change per commit: a redelivery joins it.
        Pushes to other branches, tags, the release branch's creation (a new repository's first
        push) or deletion, and test deliveries start nothing; nor does a push to a release
        branch integrated on a schedule (`apps[].ci.schedule`): its next batch carries it."""
        repo = self._configured_repo(hook.repo, hook.repo_id)
        app = self.config.app_for_repo(repo) if repo is not None else None
        if repo is None or app is None or self.config.is_gitops_repo(repo):
            return Reply(202, f"ignored: repository {hook.repo!r} is not an app in the config")
        release = app.branch or hook.default_branch
        if release is None:
            return _release_unknown(app.name, hook.repo)
        if hook.ref != f"refs/heads/{release}":
            return Reply(202, f"ignored: {hook.ref} is not the release branch {release!r}")
        if hook.deleted:
            return Reply(202, f"ignored: {hook.ref} was deleted")
        if hook.created:  # a new repository's first push: its history is the baseline
            return Reply(202, f"ignored: {hook.ref} was created: its later commits get changes")
        if hook.before == hook.after:  # Gitea's "Test Delivery": the branch's head, not moved
            return Reply(202, f"ignored: {hook.ref} did not move (a test delivery)")
        if app.ci.schedule is not None:
            return Reply(
                202,
                f"batched: {release} of {app.name} is integrated on the CI schedule "
                f"'{app.ci.schedule}' (UTC), {hook.after[:12]} with the next batch",
            )
        change = ChangeInput(
            plan=self.plan(app.name),
            repo=hook.repo,
            trigger="push",
            title=hook.title,
            author=hook.pusher,
            commit_authors=policy.authors_of("", hook.commits, self.config.auth.users),
            head_branch=release,
            head_sha=hook.after,
            base_branch=release,
        )
        summary = f"{app.name}@{hook.after[:12]}: {hook.title}"
        return await self._start_change(change, push_change_id(app.name, hook.after), summary)

    async def _off_release(
        self, hook: PullRequestHook, workflow_id: str, release: str, delivery_id: str
    ) -> Reply:
        """A PR whose base is not the release branch: its change, if one runs, stops. Any event
        says so, in case the one that retargeted the PR was lost."""
        why = f"#{hook.number} is into {hook.base_branch!r}, not the release branch {release!r}"
        if hook.action == "opened":
            return Reply(202, f"ignored: {why}")
        event = PullRequestEvent(
            action="retargeted",
            base_branch=hook.base_branch,
            updated_at=hook.updated_at,
            delivery_id=delivery_id,
        )
        reply = await self.signal(workflow_id, Signals.PULL_REQUEST_EVENT, event)
        return reply if reply.workflow_id else Reply(202, f"ignored: {why}")

    def _configured_repo(self, name: str, repo_id: str | None) -> str | None:
        """The configured repository (an app's or the GitOps one) a delivery is about, by the
        forge's name rules, else by the repository id a delivery under the old name showed."""
        configured = [self.config.gitops.repo, *(a.repo for a in self.config.apps)]
        repo = next((r for r in configured if self.config.same_repo(r, name)), None)
        if repo_id is None:
            return repo
        if repo is not None:
            self.repo_ids[repo_id] = repo
            return repo
        return self.repo_ids.get(repo_id)

    async def renamed(self, old: str, new: str, repo_id: str | None) -> Reply:
        """A repository was renamed (or transferred): its deliveries keep reaching its app."""
        repo = self._configured_repo(old, repo_id)
        if repo is None:
            return Reply(202, f"ignored: repository {old!r} is not in the config")
        if repo_id is not None:
            self.repo_ids[repo_id] = repo
        return Reply(202, f"noted: {repo} is now {new}; update the config to the new name")

    async def _gitops_pull_request(self, hook: PullRequestHook) -> Reply:
        """A GitOps PR merged by a human releases the rollout that opened it."""
        rollout = rollout_of(hook.body)
        if rollout is None:
            return Reply(202, f"ignored: GitOps PR #{hook.number} was not opened by Baton")
        if hook.action != "closed" or not hook.merged or not hook.merge_commit_sha:
            return Reply(202, f"ignored: GitOps PR action {hook.action!r}", rollout)
        return await self.signal(rollout, Signals.GITOPS_MERGED, hook.merge_commit_sha)

    async def review(self, hook: ReviewHook) -> Reply:
        """A review of a GitOps PR counts as an approval (or rejection) under the same policy."""
        repo = self._configured_repo(hook.repo, None)
        if repo is None or not self.config.is_gitops_repo(repo):
            return Reply(202, "ignored: reviews of application PRs are the forge's business")
        rollout = rollout_of(hook.body)
        if rollout is None:
            return Reply(202, f"ignored: GitOps PR #{hook.number} was not opened by Baton")
        if hook.state not in ("approved", "changes_requested", "dismissed"):
            return Reply(202, f"ignored: review state {hook.state!r}", rollout)
        review = ForgeReview(
            user=hook.reviewer,
            approved=hook.state == "approved",
            commit=hook.commit_id,
            dismissed=hook.state == "dismissed",
        )
        return await self.signal(rollout, Signals.FORGE_REVIEW, review)

    async def sync(self, event: FluxEvent) -> Reply:
        """A Flux event: signal every running rollout of that app and environment."""
        target = self._kustomizations().get((event.namespace, event.name))
        if target is None:
            return Reply(
                202, f"ignored: Kustomization {event.namespace}/{event.name} is not configured"
            )
        app, env = target
        query = (
            f"WorkflowType = '{WorkflowTypes.ROLLOUT}' AND ExecutionStatus = 'Running' "
            f"AND BatonApp = '{app}' AND BatonEnvironment = '{env}'"
        )
        signalled = []
        async for execution in self.client.list_workflows(query):
            outcome = await self.signal(execution.id, Signals.SYNC_EVENT, event.sync)
            if outcome.status < 300 and outcome.workflow_id:
                signalled.append(execution.id)
        return Reply(202, f"signalled {len(signalled)} rollout(s) of {app} in {env}")

    def _kustomizations(self) -> dict[tuple[str, str], tuple[str, str]]:
        return {
            (seen.sync.namespace, kustomization_name(seen, app.name)): (app.name, env.name)
            for env in self.config.environments
            for seen in env.targets  # each of its clusters, with its own sync
            for app in self.config.apps
        }

    async def signal(self, workflow_id: str, signal: str, arg: object) -> Reply:
        """Signal `workflow_id`; one that is not running is 'ignored'."""
        await self._settled(workflow_id)
        try:
            await self.client.get_workflow_handle(workflow_id).signal(signal, arg)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return Reply(202, f"ignored: {workflow_id} is not running")
            raise
        return Reply(202, f"signalled {workflow_id}", workflow_id)

    def _change(self, app_name: str, hook: PullRequestHook) -> ChangeInput:
        return ChangeInput(
            plan=self.plan(app_name),
            repo=hook.repo,
            pr_number=hook.number,
            title=hook.title,
            author=hook.author,
            head_branch=hook.head_branch,
            head_sha=hook.head_sha,
            base_branch=hook.base_branch,
        )

    async def _start(
        self, app_name: str, hook: PullRequestHook, workflow_id: str, **how: Any
    ) -> Reply:
        """Start the change of a newly opened PR; a redelivered "opened" joins it, and does not
        restart a change that has finished. `how`: other start options (signal-with-start)."""
        summary = f"{app_name}#{hook.number}: {hook.title}"
        return await self._start_change(self._change(app_name, hook), workflow_id, summary, **how)

    async def _start_change(
        self, change: ChangeInput, workflow_id: str, summary: str, **how: Any
    ) -> Reply:
        """Start `change` as `workflow_id`; an existing one (running or finished) is joined.

        With a journal, a plain start is journaled and made in the background (`start_journaled`);
        one with a signal (signal-with-start) waits for a journaled start of the id first."""
        summary = f"{summary[:180]} (via {self.via})"
        if self.journal is not None and not how:
            entry = PendingStart(workflow_id, change.model_dump_json(), summary, change)
            await self.journal.add(entry)
            return Reply(202, f"accepted: starting {workflow_id}", workflow_id)
        await self._settled(workflow_id)
        try:
            await self._start_workflow(change, workflow_id, summary, **how)
        except WorkflowAlreadyStartedError:
            return Reply(202, f"exists: {workflow_id}", workflow_id)
        return Reply(202, f"started {workflow_id}", workflow_id)

    def read_journaled(self, entry: PendingStart) -> PendingStart:
        """`entry`, journaled by an earlier run, with its change read (`value`); raises
        StartRefused when this Baton cannot read it (an earlier one's incompatible input)."""
        try:
            change = ChangeInput.model_validate_json(entry.input_json)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the input"
            raise StartRefused(
                f"its journaled input is not a change this Baton can read ({where}: "
                f"{first['msg']}; {exc.error_count()} error(s) in all)"
            ) from None
        return replace(entry, value=change)

    async def start_journaled(self, entry: PendingStart) -> None:
        """Make a journaled start (the journal's task): done when the workflow runs or ran."""
        change = entry.value
        if not isinstance(change, ChangeInput):  # journaled by an earlier run
            change = self.read_journaled(entry).value
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self._start_workflow(change, entry.workflow_id, entry.summary)

    async def _settled(self, workflow_id: str) -> None:
        """Wait for a journaled start of `workflow_id`, so a signal follows its start."""
        if self.journal is not None:
            await self.journal.settled(workflow_id)

    async def _start_workflow(
        self, change: ChangeInput, workflow_id: str, summary: str, **how: Any
    ) -> None:
        options: dict[str, Any] = {
            "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
            "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
        }
        await self.client.start_workflow(
            WorkflowTypes.CHANGE,
            change,
            id=workflow_id,
            task_queue=TaskQueues.WORKFLOWS,
            search_attributes=initial_search_attributes(change),
            static_summary=summary,
            **(options | how),
        )

    async def _merged(
        self, app_name: str, hook: PullRequestHook, workflow_id: str, event: PullRequestEvent
    ) -> Reply:
        """Merged: signal-with-start `merged`. A running change takes the signal; a PR whose
        change never started (its "opened" delivery was lost) gets one that starts merged and
        validates the merge commit (`on_unvalidated_merge`); a finished change is not started
        again (the reuse policy rejects it)."""
        reply = await self._signal_with_start(
            app_name, hook, workflow_id, event, WorkflowIDReusePolicy.REJECT_DUPLICATE
        )
        if reply.message.startswith("exists"):
            return Reply(202, f"ignored: {workflow_id} is not running", workflow_id)
        return Reply(202, f"signalled {workflow_id}", workflow_id)

    async def _signal_with_start(
        self,
        app_name: str,
        hook: PullRequestHook,
        workflow_id: str,
        event: PullRequestEvent,
        reuse: WorkflowIDReusePolicy,
    ) -> Reply:
        return await self._start(
            app_name,
            hook,
            workflow_id,
            id_conflict_policy=WorkflowIDConflictPolicy.UNSPECIFIED,
            id_reuse_policy=reuse,
            start_signal=Signals.PULL_REQUEST_EVENT,
            start_signal_args=[event],
        )

    async def _resume(
        self, app_name: str, hook: PullRequestHook, workflow_id: str, delivery_id: str
    ) -> Reply:
        """Reopened (or retargeted into the release branch): signal-with-start `reopened`.

        Temporal delivers the signal to the run if one is still running, closing or not (it then
        validates again instead of ending: a run cannot complete past a signal it has not
        handled), and otherwise starts a new run after the finished one.
        """
        event = PullRequestEvent(
            action="reopened",
            head_sha=hook.head_sha,
            updated_at=hook.updated_at,
            delivery_id=delivery_id,
        )
        reuse = WorkflowIDReusePolicy.ALLOW_DUPLICATE
        await self._signal_with_start(app_name, hook, workflow_id, event, reuse)
        return Reply(202, f"reopened {workflow_id}", workflow_id)
