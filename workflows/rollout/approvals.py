"""Approvals: one round of decisions on a GitOps PR under the environment's approval policy."""

from __future__ import annotations

from collections.abc import Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from baton import policy
    from baton.errors import DecisionRefused, NotAwaitingApproval
    from baton.models import Decision, ForgeReview, Gate, GitOpsPullRequest, RolloutInput
    from baton.temporal import Updates

from workflows.record import Record


class Approvals:
    """The decisions on one PR (the rollout's GitOps PR, or in production its revert PR).

    The workflow's update validators call the `check_*` methods, which raise with a message that
    names the rule, so a refused decision never reaches history; its handlers call `approve` and
    `reject`; `wait` holds the rollout until the policy is satisfied or someone rejects.
    """

    def __init__(self, input: RolloutInput, record: Record, *, rollback: bool = False) -> None:
        self.policy = input.environment.approvals
        self.environment = input.environment.name
        self.author = input.author
        self.record = record
        self.rollback = rollback
        self.pr: GitOpsPullRequest | None = None  # the PR decided on, once the round began
        self.given: list[Decision] = []
        self.rejection: Decision | None = None
        self.sensitive: list[str] = []  # why the rendered diff is security-sensitive

    @property
    def security_due(self) -> int:
        """Extra approvals the security-sensitive diff needs; 0 when it is not sensitive."""
        if self.rollback:  # rolling back must not wait for the security reviewers
            return 0
        return self.policy.security.required if self.sensitive else 0

    @property
    def required(self) -> int:
        """How many distinct approvals the PR needs in all."""
        return policy.required(self.policy, self.security_due)

    @property
    def satisfied(self) -> bool:
        """Whether enough distinct approvers (security ones included, when due) approved."""
        return policy.satisfied(self.policy, self.given, self.security_due)

    @property
    def rejected_by(self) -> str:
        """Who rejected the PR; only asked once someone has."""
        assert self.rejection is not None
        return self.rejection.user

    def gate(self) -> Gate | None:
        """The approval gate while approvals are missing: how many, by whom; None once enough."""
        if self.required == 0 or self.satisfied:
            return None
        approved = policy.approved_by(self.given)
        purpose = "to roll back" if self.rollback else "for"
        due = self.security_due
        security = f" (security-sensitive: {'; '.join(self.sensitive)})" if due else ""
        return Gate(
            kind="approval",
            environment=self.environment,
            description=f"{len(approved)}/{self.required} approvals {purpose} "
            f"{self.environment}{security}",
            waiting_on=policy.still_may_approve(self.policy, self.author, self.given, due),
            required=self.required,
            approved_by=approved,
        )

    # The update validators' checks: they raise, and change nothing.

    def check_approval(self, approval: Decision) -> None:
        """Refuse an approval the policy does not allow, or that comes when none is awaited."""
        self._check_awaited()
        policy.check_approval(
            self.policy, self.environment, self.author, self.given, approval.user, self.security_due
        )

    def check_rejection(self, rejection: Decision) -> None:
        """Refuse a rejection by someone who may not approve, or when no approval is awaited."""
        self._check_awaited()
        allowed = self.policy.approvers
        if allowed and rejection.user not in allowed:
            raise policy.PolicyViolation(
                f"{rejection.user} may not reject {self.environment}: "
                f"allowed approvers are {', '.join(allowed)}"
            )

    def _check_awaited(self) -> None:
        gate = self.record.gate
        if gate is None or gate.kind != "approval":
            raise NotAwaitingApproval(
                f"the {self.environment} rollout is not waiting for approval "
                f"(now: {self.record.current})"
            )

    # The decisions, checked already.

    def approve(self, approval: Decision) -> str:
        """Count an approval; says how many there are of how many needed."""
        self.given.append(approval.model_copy(update={"at": workflow.now()}))
        self._show_gate()
        count = len(policy.approved_by(self.given))
        return f"{approval.user} approved {self.environment} ({count}/{self.required})"

    def reject(self, rejection: Decision) -> str:
        """Record the rejection: the round ends with it."""
        self.rejection = rejection.model_copy(update={"at": workflow.now()})
        return f"{rejection.user} rejected {self.environment}"

    def review(self, review: ForgeReview) -> None:
        """Count a forge review of the PR like a decision made through Baton, or note why not.

        A review that replaces, dismisses or resets the reviewer's approval on the forge (GitHub
        dismissal, Gitea "request changes" after approving, an Azure DevOps vote reset) takes
        that approval away: it stops counting, and the rollout waits for another approver.
        """
        if review.dismissed or not review.approved:
            self._withdraw(review.user)
        if review.dismissed:
            return
        decision = Decision(user=review.user, source="forge", comment="review on the GitOps PR")
        try:
            if self.pr and review.commit != self.pr.head_sha:
                raise policy.PolicyViolation(f"it reviews {review.commit[:12]}, not the PR's head")
            if review.approved:
                self.check_approval(decision)
                self.approve(decision)
            else:
                self.check_rejection(decision)
                self.reject(decision)
        except DecisionRefused as violation:
            self.record.note(f"review by {review.user} not counted: {violation}")

    async def wait(
        self,
        name: str,
        pr: GitOpsPullRequest,
        superseded_by: Callable[[], str | None] = lambda: None,
    ) -> bool:
        """Wait durably until the policy is satisfied (True), or someone rejects the PR or a
        newer change supersedes the rollout (False); the stage `name` says which."""
        self.pr = pr
        if self.required == 0:
            return True
        stage = self.record.begin(name)
        self._show_gate()
        await workflow.wait_condition(
            lambda: self.rejection is not None or self.satisfied or superseded_by() is not None
        )
        self.record.clear_gate()
        newer = superseded_by()
        if newer is not None:
            self.record.end(stage, "superseded", f"superseded by {newer}")
            return False
        if self.rejection is not None:
            self.record.end(
                stage, "failed", f"rejected by {self.rejection.user}: {self.rejection.comment}"
            )
            return False
        self.record.end(
            stage, "succeeded", f"approved by {', '.join(policy.approved_by(self.given))}"
        )
        return True

    def _withdraw(self, user: str) -> None:
        """`user`'s approvals through forge reviews no longer count (theirs through Baton do)."""
        kept = [d for d in self.given if not (d.user == user and d.source == "forge")]
        if len(kept) == len(self.given):
            return
        self.given = kept
        self.record.note(f"{user}'s approval was dismissed or withdrawn on the forge: not counted")
        gate = self.record.gate
        if gate is not None and gate.kind == "approval":
            self._show_gate()

    def _show_gate(self) -> None:
        gate = self.gate()
        if gate is not None:
            self.record.set_gate(gate)


class ApprovalUpdates:
    """The approve and reject Updates of a workflow; `_deciding` names the round they go to."""

    def _deciding(self) -> Approvals:
        raise NotImplementedError

    @workflow.update(name=Updates.APPROVE)
    def approve(self, approval: Decision) -> str:
        """Add an approval; the validator has checked it against the environment's policy."""
        return self._deciding().approve(approval)

    @approve.validator
    def _check_approve(self, approval: Decision) -> None:
        self._deciding().check_approval(approval)

    @workflow.update(name=Updates.REJECT)
    def reject(self, rejection: Decision) -> str:
        """Reject the PR awaiting approvals: the rollout (or its rollback) stops there."""
        return self._deciding().reject(rejection)

    @reject.validator
    def _check_reject(self, rejection: Decision) -> None:
        self._deciding().check_rejection(rejection)
