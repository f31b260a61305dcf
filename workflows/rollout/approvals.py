"""Approvals: one round of decisions on a GitOps PR under the environment's approval policy."""

from __future__ import annotations

from collections.abc import Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from baton import policy
    from baton.errors import DecisionRefused, NotAwaitingApproval
    from baton.models import Decision, ForgeReview, Gate, GitOpsPullRequest, RolloutInput
    from baton.temporal import Updates

from workflows.patches import patched
from workflows.record import Record

SENSITIVE_SHOWN = 3
"""Reasons a gate's one line names; the GitOps PR lists them all (a new unhardened workload breaks
a dozen Pod Security controls)."""


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
        self.authors = input.authors
        self.record = record
        self.rollback = rollback
        self.pr: GitOpsPullRequest | None = None  # the PR decided on, once the round began
        self.given: list[Decision] = []
        self.voided: list[Decision] = []  # approvals of content the PR no longer holds
        self.rejection: Decision | None = None
        self.sensitive: list[str] = []  # why the rendered diff is security-sensitive
        self.content_hash: str | None = None  # the rendered content the PR proposes

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
        shown = self.sensitive[:SENSITIVE_SHOWN]
        more = len(self.sensitive) - len(shown)
        reasons = "; ".join(shown) + (f"; and {more} more in the GitOps PR" if more > 0 else "")
        security = f" (security-sensitive: {reasons})" if due else ""
        return Gate(
            kind="approval",
            environment=self.environment,
            description=f"{len(approved)}/{self.required} approvals {purpose} "
            f"{self.environment}{security}",
            waiting_on=policy.still_may_approve(
                self.policy, self.author, self.given, due, self.authors
            ),
            required=self.required,
            approved_by=approved,
            content_hash=self.content_hash,
            head=self.pr.head_sha if self.pr else None,
        )

    # The update validators' checks: they raise, and change nothing.

    def check_approval(self, approval: Decision) -> None:
        """Refuse an approval the policy does not allow, that was made on other content than the
        PR holds, or that comes when none is awaited or the policy has all it needs."""
        self._check_awaited()
        self._check_enough(approval)
        self._check_current(approval, "approval")
        policy.check_approval(
            self.policy,
            self.environment,
            self.author,
            self.given,
            approval.user,
            self.security_due,
            approval.groups,
            approval.forge_users,
            self.authors,
        )

    def check_rejection(self, rejection: Decision) -> None:
        """Refuse a rejection by someone who may not approve, or when no approval is awaited."""
        self._check_awaited()
        allowed = self.policy.approvers
        if allowed and not policy.listed(allowed, rejection.user, rejection.groups):
            raise policy.PolicyViolation(
                f"{rejection.user} may not reject {self.environment}: "
                f"allowed approvers are {', '.join(allowed)}"
            )

    def _check_current(self, decision: Decision, kind: str) -> None:
        """Refuse a decision made on content (rendered hash, PR head) the PR no longer holds."""
        head = self.pr.head_sha if self.pr else None
        stale = [
            f"{what} {given[:width]}, the PR now holds {now[:width]}"
            for what, given, now, width in (
                # `sha256:` and 12 hex digits; a commit's 12 first.
                ("rendered content", decision.content_hash, self.content_hash, 19),
                ("GitOps PR head", decision.head, head, 12),
            )
            if given and now and given != now
        ]
        if stale:
            raise policy.PolicyViolation(
                f"the {kind} by {decision.user} was made on {'; '.join(stale)}: "
                "look at the change again (baton changes show) and decide on what it holds now"
            )

    def _check_enough(self, approval: Decision) -> None:
        """Refuse an approval beyond the required count: the gate is satisfied already (it
        closes when the rollout next runs, so a decision can reach it in between)."""
        if self.satisfied:
            raise NotAwaitingApproval(self._enough(approval))

    def _enough(self, approval: Decision) -> str:
        count = len(policy.approved_by(self.given))
        return (
            f"{self.environment} has its {count}/{self.required} approvals already: "
            f"the approval by {approval.user} is not needed"
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
        """Count an approval, bound to the content it was given on; says how many of how many.

        Updates validated together can pass the validator before the first is counted: one
        beyond the required count is then answered, not counted."""
        if self.satisfied and patched("approvals-capped"):
            return self._enough(approval)
        self.given.append(self._bound(approval))
        self._show_gate()
        count = len(policy.approved_by(self.given))
        return f"{approval.user} approved {self.environment} ({count}/{self.required})"

    def reject(self, rejection: Decision) -> str:
        """Record the rejection: the round ends with it."""
        self.rejection = self._bound(rejection)
        return f"{rejection.user} rejected {self.environment}"

    def _bound(self, decision: Decision) -> Decision:
        """`decision` stamped with when, and the content it was made on (as it stands now)."""
        return decision.model_copy(
            update={
                "at": workflow.now(),
                "content_hash": decision.content_hash or self.content_hash,
                "head": decision.head or (self.pr.head_sha if self.pr else None),
            }
        )

    def drop_expired(self) -> bool:
        """Void approvals older than the policy's `expire_after`; True when that leaves the
        policy unsatisfied, so the approvers must be asked again."""
        lifetime = self.policy.lifetime
        if lifetime is None:
            return False
        since = workflow.now() - lifetime
        expired = [d for d in self.given if d.at is not None and d.at < since]
        if not expired:
            return False
        self.voided += expired
        self.given = [d for d in self.given if d not in expired]
        self.record.note(
            f"approval(s) by {', '.join(d.user for d in expired)} expired "
            f"(older than {self.policy.expire_after})"
            + ("" if self.satisfied else ": asking again")
        )
        return not self.satisfied

    def content_moved(
        self, pr: GitOpsPullRequest, content_hash: str | None = None, sensitive: str | None = None
    ) -> None:
        """The PR's head moved (someone pushed to it, or Baton rendered it again on a newer base:
        then `content_hash` and `sensitive`, one reason a line, describe it): earlier approvals
        stop counting and the approvers are asked again, on what the PR holds now."""
        old = self.pr.head_sha[:12] if self.pr else "?"
        self.pr = pr
        if content_hash is not None:
            self.content_hash = content_hash
            self.sensitive = (sensitive or "").splitlines()
        self.voided += self.given
        self.given = []
        self.record.note(
            f"GitOps PR #{pr.number} moved from {old} to {pr.head_sha[:12]}: "
            "earlier approvals no longer count, asking again"
        )

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
        decision = Decision(
            user=review.user,
            source="forge",
            via="forge",
            subject=review.user,
            comment="review on the GitOps PR",
            head=review.commit,
        )
        try:
            if self.pr and review.commit != self.pr.head_sha:
                raise policy.PolicyViolation(f"it reviews {review.commit[:12]}, not the PR's head")
            decision.content_hash = self.content_hash
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
