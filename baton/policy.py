"""Approval policy: who may approve a rollout, and when enough distinct people have."""

from __future__ import annotations

from baton.config import ApprovalPolicy
from baton.errors import BatonError
from baton.models import Approval


class PolicyViolation(BatonError):
    """An approval the environment's policy does not allow; the message names the rule."""


def check_approval(
    policy: ApprovalPolicy, environment: str, author: str, approvals: list[Approval], user: str
) -> None:
    """Raise PolicyViolation unless `user` may add an approval now."""
    if not user.strip():
        raise PolicyViolation("an approval needs the approver's name (--as USER)")
    if user == author and not policy.allow_self_approval:
        raise PolicyViolation(
            f"{user} is the change's author and {environment}'s policy forbids self-approval: "
            f"ask one of {', '.join(policy.approvers) or 'the other reviewers'}"
        )
    if policy.approvers and user not in policy.approvers:
        raise PolicyViolation(
            f"{user} may not approve {environment}: allowed approvers are "
            f"{', '.join(policy.approvers)}"
        )
    if user in approved_by(approvals):
        raise PolicyViolation(
            f"{user} has already approved {environment}: {policy.required} distinct approvers "
            "are required, a second approval by the same person does not count"
        )


def approved_by(approvals: list[Approval]) -> list[str]:
    """Distinct approvers, in the order they approved."""
    return list(dict.fromkeys(a.user for a in approvals))


def satisfied(policy: ApprovalPolicy, approvals: list[Approval]) -> bool:
    return len(approved_by(approvals)) >= policy.required


def still_may_approve(policy: ApprovalPolicy, author: str, approvals: list[Approval]) -> list[str]:
    """Who could still add an approval (empty list when anyone allowed may)."""
    done = set(approved_by(approvals))
    return [
        user
        for user in policy.approvers
        if user not in done and (user != author or policy.allow_self_approval)
    ]
