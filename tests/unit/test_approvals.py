"""Approvals without Temporal: the required count, the gate's text and the validators' checks."""

from __future__ import annotations

import pytest

from baton.config import SecurityApprovals
from baton.errors import NotAwaitingApproval
from baton.models import Decision, Gate, RolloutInput
from baton.policy import PolicyViolation
from tests.fixtures.rollouts import prod, rollout_of
from workflows.record import Record
from workflows.rollout.approvals import Approvals


def rollout(required: int = 2, security: SecurityApprovals | None = None) -> RolloutInput:
    return rollout_of(prod(required, security))


def awaiting(input: RolloutInput, *, rollback: bool = False) -> Approvals:
    """A round whose rollout waits at the approval gate, as the validators see it."""
    approvals = Approvals(input, Record("rollout"), rollback=rollback)
    approvals.record.gate = Gate(kind="approval", description="waiting")
    return approvals


def test_the_gate_counts_the_approvals_and_names_who_may_still_approve() -> None:
    approvals = awaiting(rollout(required=2))
    approvals.given = [Decision(user="carol")]

    gate = approvals.gate()

    assert gate is not None
    assert gate.description == "1/2 approvals for prod"
    assert (gate.approved_by, gate.waiting_on, gate.required) == (["carol"], ["dave"], 2)


def test_there_is_no_gate_once_the_policy_is_satisfied() -> None:
    approvals = awaiting(rollout(required=1))
    approvals.given = [Decision(user="dave")]
    assert approvals.satisfied and approvals.gate() is None


def test_a_sensitive_diff_needs_the_extra_security_approvals() -> None:
    approvals = awaiting(rollout(required=1, security=SecurityApprovals(required=1)))
    approvals.sensitive = ["Role/prod/reader added"]

    gate = approvals.gate()

    assert approvals.required == 2
    assert gate is not None
    assert gate.description == "0/2 approvals for prod (security-sensitive: Role/prod/reader added)"


def test_the_gate_names_the_first_reasons_and_counts_the_rest() -> None:
    approvals = awaiting(rollout(required=1, security=SecurityApprovals(required=1)))
    approvals.sensitive = [f"Deployment/prod/web: control {n}" for n in range(1, 6)]

    gate = approvals.gate()

    assert gate is not None
    assert gate.description == (
        "0/2 approvals for prod (security-sensitive: Deployment/prod/web: control 1; "
        "Deployment/prod/web: control 2; Deployment/prod/web: control 3; and 2 more in the "
        "GitOps PR)"
    )


def test_a_revert_does_not_wait_for_the_security_reviewers() -> None:
    approvals = awaiting(rollout(required=1, security=SecurityApprovals(required=1)), rollback=True)
    approvals.sensitive = ["Role/prod/reader added"]

    gate = approvals.gate()

    assert approvals.required == 1
    assert gate is not None and gate.description == "0/1 approvals to roll back prod"


def test_decisions_are_refused_while_the_rollout_does_not_wait_for_approval() -> None:
    approvals = Approvals(rollout(), Record("rollout"))
    with pytest.raises(NotAwaitingApproval) as refused:
        approvals.check_approval(Decision(user="carol"))
    assert str(refused.value) == "the prod rollout is not waiting for approval (now: starting)"
    with pytest.raises(NotAwaitingApproval):
        approvals.check_rejection(Decision(user="carol"))


def test_the_author_may_not_approve_their_own_change() -> None:
    with pytest.raises(PolicyViolation, match="alice is the change's author"):
        awaiting(rollout()).check_approval(Decision(user="alice"))


def test_only_allowed_approvers_may_reject() -> None:
    approvals = awaiting(rollout())
    with pytest.raises(PolicyViolation, match="mallory may not reject prod"):
        approvals.check_rejection(Decision(user="mallory"))
    approvals.check_rejection(Decision(user="dave"))


def test_an_approval_beyond_the_required_count_is_refused() -> None:
    approvals = awaiting(rollout(required=2))
    approvals.given = [Decision(user="carol"), Decision(user="dave")]
    with pytest.raises(NotAwaitingApproval) as refused:
        approvals.check_approval(Decision(user="erin"))
    assert str(refused.value) == (
        "prod has its 2/2 approvals already: the approval by erin is not needed"
    )
