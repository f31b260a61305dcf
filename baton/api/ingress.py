"""Turns normalized forge events into Temporal calls with deterministic workflow ids."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from baton.api.github import PullRequestHook
from baton.config import BatonConfig
from baton.models import ChangeInput, ChangePlan, PullRequestEvent
from baton.settings import Settings
from baton.temporal import TaskQueues
from workflows.change import ChangeWorkflow, change_id, initial_search_attributes


@dataclass
class Outcome:
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
    def __init__(self, client: Client, config: BatonConfig, settings: Settings) -> None:
        self.client = client
        self.config = config
        self.settings = settings

    def plan(self, app_name: str) -> ChangePlan:
        """The configuration a new change runs under, frozen into its input."""
        return ChangePlan(
            app=self.config.app(app_name),
            environments=self.config.promotion_order(),
            gitops=self.config.gitops,
            ui_url=self.settings.temporal_ui_url,
            namespace=self.client.namespace,
        )

    async def pull_request(self, hook: PullRequestHook, delivery_id: str) -> Outcome:
        app = self.config.app_for_repo(hook.repo)
        if app is None:
            return Outcome(202, f"ignored: repository {hook.repo!r} is not an app in the config")
        workflow_id = change_id(app.name, hook.number)
        if hook.action in ("opened", "reopened"):
            return await self._start(app.name, hook, workflow_id)
        if hook.action == "synchronize":
            event = PullRequestEvent(
                action="synchronize", head_sha=hook.head_sha, delivery_id=delivery_id
            )
        elif hook.action == "closed" and hook.merged:
            event = PullRequestEvent(
                action="merged", merge_commit_sha=hook.merge_commit_sha, delivery_id=delivery_id
            )
        elif hook.action == "closed":
            event = PullRequestEvent(action="closed", delivery_id=delivery_id)
        else:
            return Outcome(202, f"ignored: pull_request action {hook.action!r}")
        handle: WorkflowHandle = self.client.get_workflow_handle(workflow_id)
        try:
            await handle.signal(ChangeWorkflow.pull_request_event, event)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return Outcome(202, f"ignored: no running change {workflow_id}", workflow_id)
            raise
        return Outcome(202, f"signalled {workflow_id}: {event.action}", workflow_id)

    async def _start(self, app_name: str, hook: PullRequestHook, workflow_id: str) -> Outcome:
        change = ChangeInput(
            plan=self.plan(app_name),
            repo=hook.repo,
            pr_number=hook.number,
            title=hook.title,
            author=hook.author,
            head_branch=hook.head_branch,
            head_sha=hook.head_sha,
            base_branch=hook.base_branch,
        )
        try:
            await self.client.start_workflow(
                ChangeWorkflow.run,
                change,
                id=workflow_id,
                task_queue=TaskQueues.WORKFLOWS,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                # A redelivered "opened" must not restart a finished change; "reopened" may.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE
                if hook.action == "reopened"
                else WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=initial_search_attributes(change),
                static_summary=f"{app_name}#{hook.number}: {hook.title}"[:200],
            )
        except WorkflowAlreadyStartedError:
            return Outcome(202, f"exists: {workflow_id}", workflow_id)
        return Outcome(202, f"started {workflow_id}", workflow_id)
