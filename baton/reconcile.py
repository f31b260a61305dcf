"""The reconciler: webhooks are hints, the forge is the truth.

A delivery lost while the API or Temporal was down is never redelivered by GitHub. So, on a
Temporal Schedule (`reconcile.interval`) and when the API starts, Baton reads each app's open pull
requests and release branch head, and each GitOps PR a rollout waits on, compares them with what
the running changes and rollouts have seen (their `status` memo and search attributes), and acts
as the missed deliveries would have: through `Ingress`, with the same workflow ids, signals and
signal-with-start as the webhook path, so acting twice is harmless. It only acts where the forge
and Temporal disagree, so a quiet minute adds nothing to any history. Visibility, which lists the
runs, lags behind them (it is eventually consistent): a difference it shows is read again from
the run itself (`DescribeWorkflowExecution`) before the reconciler acts on it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypeVar

from temporalio.client import (
    Client,
    ScheduleIntervalSpec,
    ScheduleSpec,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
)
from temporalio.service import RPCError, RPCStatusCode

from baton.config import AppConfig, BatonConfig, duration
from baton.forge_events import PullRequestHook, PushHook, ReviewHook
from baton.forges.base import (
    BranchHead,
    Forge,
    ForgeRefusal,
    PullRequest,
    PullRequestNotFound,
)
from baton.ingress import Ingress
from baton.models import UNKNOWN_PUSHER, ChangeStatus, CommitAuthor, Gate, RolloutStatus
from baton.temporal import (
    MEMO_GATE,
    RECONCILE_SCHEDULE,
    SearchAttributes,
    Signals,
    WorkflowTypes,
    change_id,
    push_change_id,
    put_schedule,
)

M = TypeVar("M")

CI_CONTEXT = "baton/ci"
"""The commit status CI reports on the commits it integrates (workflows.pipelines)."""
BEFORE_MERGE = ("validating", "awaiting-merge")
"""Change states in which the change has not seen its PR merged yet."""


@dataclass
class Seen:
    """What a running change has seen of its PR: its state, head and merge commit."""

    id: str
    state: str
    pr_number: int | None
    head_sha: str
    merge_commit: str | None


class Reconciler:
    """Compares the forge with the running changes and rollouts and acts on the differences.

    `delivery_id` marks the signals it sends (`reconciler:<run>`), so a change's history says
    which path acted; `heads` holds each app's release branch head as the last reading saw it
    (kept by the caller between readings); each method returns one line per action taken.
    """

    def __init__(
        self,
        ingress: Ingress,
        forge: Forge,
        delivery_id: str = "reconciler",
        heads: dict[str, str] | None = None,
    ) -> None:
        self.ingress = ingress
        self.forge = forge
        self.delivery_id = delivery_id
        self.heads = {} if heads is None else heads

    @property
    def client(self) -> Client:
        return self.ingress.client

    async def run(self) -> list[str]:
        """Every app, then the GitOps PRs rollouts wait on. An app whose repository or release
        branch the forge does not have is skipped, saying so; a forge that does not answer fails
        the reading (the next one tries again)."""
        actions = []
        for app in self.ingress.config.apps:
            try:
                actions += await self.app(app)
            except ForgeRefusal as exc:  # its repository or branch is not there: the others are
                actions.append(f"{app.name}: not read: {exc}")
        return actions + await self.gitops()

    async def app(self, app: AppConfig) -> list[str]:
        """Open PRs that have no change or one behind the forge, changes whose PR merged or
        closed unseen, and a release branch head no change carries."""
        release = await asyncio.to_thread(self.forge.branch_head, app.repo, app.branch)
        prs = await asyncio.to_thread(self.forge.open_pull_requests, app.repo)
        running = await self._running_changes(app.name)
        actions = []
        for pr in prs:
            seen = running.get(change_id(app.name, pr.number))
            action = await self._missed(app, pr, release, seen)
            if action is not None and seen is not None:  # what the change holds now decides
                action = await self._missed(app, pr, release, await self._current(seen))
            if action is not None:
                actions.append(await self._deliver(pr, action, release))
        open_numbers = {pr.number for pr in prs}
        for seen in running.values():
            if seen.pr_number in open_numbers or seen.pr_number is None:
                continue
            if seen.state in BEFORE_MERGE:  # merged or closed while no delivery arrived
                pr = await asyncio.to_thread(self.forge.get_pull_request, app.repo, seen.pr_number)
                current = await self._current(seen) if pr.state != "open" else None
                if current is not None and current.state in BEFORE_MERGE:
                    actions.append(await self._deliver(pr, "closed", release))
        return actions + await self._release_head(app, release, list(running.values()))

    async def _missed(
        self, app: AppConfig, pr: PullRequest, release: BranchHead, seen: Seen | None
    ) -> str | None:
        """The pull-request action whose delivery the change of open `pr` lacks, if any."""
        if pr.base_branch != release.name:
            return "edited" if seen is not None else None  # retargeted away: the change stops
        if seen is not None:
            if seen.state in BEFORE_MERGE and seen.head_sha != pr.head_sha:
                return "synchronize"
            return None
        ended = await self._state(change_id(app.name, pr.number))
        if ended is None:
            return "opened"
        return "reopened" if ended == "closed" else None  # an abort or a failure stays ended

    async def _deliver(self, pr: PullRequest, action: str, release: BranchHead) -> str:
        hook = PullRequestHook.of(pr, action, default_branch=release.name)
        reply = await self.ingress.pull_request(hook, self.delivery_id)
        return f"{pr.repo}#{pr.number} {action}: {reply.message}"

    async def _release_head(
        self, app: AppConfig, release: BranchHead, running: list[Seen]
    ) -> list[str]:
        """The change of a release branch head that moved since the last reading, started when
        no change carries it: the PR that merged as it (its change signalled-with-start
        `merged`), else a pushed commit's, naming the authors of the commits since the last
        reading's head (`_pushed`).

        The first reading only notes the head (the history before it is the baseline, as for a
        new repository's first push); a head some change has, or that CI reported on (a change
        carried it, perhaps one Temporal no longer keeps), is left alone.
        """
        sha, before = release.sha, self.heads.get(app.name)
        self.heads[app.name] = sha
        if (
            before is None
            or before == sha
            or any(sha in (s.head_sha, s.merge_commit) for s in running)
        ):
            return []
        number = await asyncio.to_thread(self.forge.merged_pull_request, app.repo, sha)
        workflow_id = change_id(app.name, number) if number else push_change_id(app.name, sha)
        if await self._state(workflow_id) is not None:
            return []
        statuses = await asyncio.to_thread(self.forge.list_commit_statuses, app.repo, sha)
        if any(status.context == CI_CONTEXT for status in statuses):
            return []
        if number is not None:
            pr = await asyncio.to_thread(self.forge.get_pull_request, app.repo, number)
            return [await self._deliver(pr, "closed", release)]
        commits, unknown = await self._pushed(app.repo, before, sha)
        push = PushHook(
            repo=app.repo,
            default_branch=release.name,
            ref=f"refs/heads/{release.name}",
            before=before,
            after=sha,
            pusher=UNKNOWN_PUSHER,  # no forge API says who pushed
            commits=commits,
            title=f"{sha[:12]}, found on {release.name} by the reconciler",
        )
        reply = await self.ingress.push(push)
        return [f"{app.repo}@{sha[:12]} pushed: {reply.message}{unknown}"]

    async def _pushed(self, repo: str, before: str, sha: str) -> tuple[list[CommitAuthor], str]:
        """The commits a push from `before` to `sha` brought, with their authors, who may not
        approve its change where self-approval is forbidden; and what was not known, said.

        When the forge cannot compare the two (`before` was force-pushed away and pruned, or
        Gitea before 1.23 compares no commits), the head commit alone: naming its author is
        safer than naming no one. When even that is refused (the head moved away too), none.
        """
        try:
            return await asyncio.to_thread(self.forge.compare_commits, repo, before, sha), ""
        except ForgeRefusal as exc:
            unknown = f" (the commits since {before[:12]} unknown: {exc}"
        try:
            head = await asyncio.to_thread(self.forge.get_commit, repo, sha)
        except ForgeRefusal as exc:
            return [], f"{unknown}; no commit author named: {exc})"
        return [head], f"{unknown}; only the head commit's author named)"

    async def gitops(self) -> list[str]:
        """GitOps PRs that rollouts wait on: reviews they have not counted, and a merge by hand
        they have not seen."""
        query = f"WorkflowType = '{WorkflowTypes.ROLLOUT}' AND ExecutionStatus = 'Running'"
        repo = self.ingress.config.gitops.repo
        actions = []
        async for execution in self.client.list_workflows(query):
            listed = await _memo(execution, "status", RolloutStatus)
            if listed is None or listed.gitops_pr is None or listed.revision is not None:
                continue
            try:
                pr = await asyncio.to_thread(
                    self.forge.get_pull_request, repo, listed.gitops_pr.number
                )
            except PullRequestNotFound:  # not on this forge (a rollout of another config)
                continue
            current = await self._running(execution.id, execution.run_id)  # visibility lags
            if current is None:
                continue
            status = await _memo(current, "status", RolloutStatus)
            gate = await _memo(current, MEMO_GATE, Gate)
            if status is None or status.gitops_pr is None or status.revision is not None:
                continue
            if status.gitops_pr.number != listed.gitops_pr.number:  # a new PR: read next time
                continue
            if pr.state == "merged" and gate is not None and gate.kind == "merge":
                assert pr.merge_commit_sha is not None
                await self.ingress.signal(execution.id, Signals.GITOPS_MERGED, pr.merge_commit_sha)
                actions.append(f"{repo}#{pr.number} merged: signalled {execution.id}")
            elif pr.state == "open" and gate is not None and gate.kind == "approval":
                actions += await self._reviews(pr, status, gate)
        return actions

    async def _reviews(self, pr: PullRequest, status: RolloutStatus, gate: Gate) -> list[str]:
        """Reviews of the head the rollout has not counted, by people it still waits on (a
        review it cannot count would be sent again at every reading)."""
        counted = {d.user for d in status.approvals} | {
            u for d in status.approvals for u in d.forge_users
        }
        awaited = set(gate.waiting_on)
        reviews = await asyncio.to_thread(self.forge.list_reviews, pr.repo, pr.number)
        actions = []
        for review in reviews:
            if review.state == "commented" or review.commit_id != pr.head_sha:
                continue
            if review.user in counted or (awaited and review.user not in awaited):
                continue
            hook = ReviewHook.of(
                pr, reviewer=review.user, state=review.state, commit_id=review.commit_id
            )
            reply = await self.ingress.review(hook)
            actions.append(f"{pr.repo}#{pr.number} reviewed by {review.user}: {reply.message}")
        return actions

    async def _running_changes(self, app: str) -> dict[str, Seen]:
        query = (
            f"WorkflowType = '{WorkflowTypes.CHANGE}' AND ExecutionStatus = 'Running' "
            f"AND BatonApp = '{app}'"
        )
        running = {}
        async for execution in self.client.list_workflows(query):
            seen = await _seen(execution)
            if seen is not None:
                running[execution.id] = seen
        return running

    async def _current(self, seen: Seen) -> Seen | None:
        """What the change of `seen` holds now, None when it no longer runs: visibility, which
        listed it, lags behind its last workflow task, so an action is decided on this."""
        current = await self._running(seen.id)
        return None if current is None else await _seen(current)

    async def _running(
        self, workflow_id: str, run_id: str | None = None
    ) -> WorkflowExecution | None:
        """The run (`run_id`, else the latest) as the server holds it now, its memo as of its
        last workflow task; None when it ended or is gone. Visibility (`list_workflows`) is
        eventually consistent; `DescribeWorkflowExecution` reads the run's own state."""
        described = await self._describe(workflow_id, run_id)
        if described is None or described.status != WorkflowExecutionStatus.RUNNING:
            return None
        return described

    async def _state(self, workflow_id: str) -> str | None:
        """The state of the change `workflow_id` (its latest run), None when there is none."""
        described = await self._describe(workflow_id)
        if described is None:
            return None
        state = described.typed_search_attributes.get(SearchAttributes.STATE)
        if state is None and described.status == WorkflowExecutionStatus.RUNNING:
            return "validating"
        return state or "ended"

    async def _describe(
        self, workflow_id: str, run_id: str | None = None
    ) -> WorkflowExecutionDescription | None:
        """`DescribeWorkflowExecution` of the run (`run_id`, else the latest); None when there
        is none."""
        try:
            return await self.client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise


async def schedule(client: Client, config: BatonConfig) -> None:
    """Put the `reconcile` Schedule on `reconcile.interval` and run it once now (what the API
    does when it starts: deliveries may have been lost while it was down)."""
    spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=duration(config.reconcile.interval))])
    handle = await put_schedule(client, RECONCILE_SCHEDULE, WorkflowTypes.RECONCILE, spec)
    await handle.trigger()


async def _seen(execution: WorkflowExecution) -> Seen | None:
    status = await _memo(execution, "status", ChangeStatus)
    if status is None:
        return None
    return Seen(execution.id, status.state, status.pr_number, status.head_sha, status.merge_commit)


async def _memo(execution: WorkflowExecution, key: str, kind: type[M]) -> M | None:
    if key not in execution.raw_info.memo.fields:
        return None
    return await execution.memo_value(key, None, type_hint=kind)
