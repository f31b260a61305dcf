"""Decision policy: who may approve a rollout, and when enough distinct people have.

Approver lists name users and groups (`group:release-managers`); a decider's groups come with
the decision, as the API authenticated them (OIDC groups claim, or `auth.users`).

A change's authors are who opened its pull request and who wrote its commits (`authors_of`),
mapped to Baton users by `auth.users` (`forge_users`, `emails`); where self-approval is
forbidden, none of them may approve it.
"""

from __future__ import annotations

from collections.abc import Sequence

from baton.config import GROUP_PREFIX, ApprovalPolicy, EnvironmentConfig, UserRecord
from baton.errors import DecisionRefused
from baton.models import CommitAuthor, Decision


class PolicyViolation(DecisionRefused):
    """An approval the environment's policy does not allow; the message names the rule."""


def check_approval(
    policy: ApprovalPolicy,
    environment: str,
    author: str,
    approvals: list[Decision],
    user: str,
    security_due: int = 0,
    groups: Sequence[str] = (),
    forge_users: Sequence[str] = (),
    authors: Sequence[str] = (),
) -> None:
    """Raise PolicyViolation unless `user` (in `groups`, known on the forge as `forge_users`)
    may add an approval now.

    `security_due` is the number of extra approvals a security-sensitive diff needs (from the
    security approvers, when the policy names them); `authors` are the change's other authors
    (`authors_of`).
    """
    check_decider(
        policy, environment, author, user, "approve", security_due, groups, forge_users, authors
    )
    if user in approved_by(approvals):
        raise PolicyViolation(
            f"{user} has already approved {environment}: {required(policy, security_due)} distinct "
            "approvers are required, a second approval by the same person does not count"
        )
    security = policy.security.approvers
    missing = _security_missing(policy, approvals, security_due)
    left = required(policy, security_due) - len(approved_by(approvals))
    if security and missing and missing >= left and not listed(security, user, groups):
        raise PolicyViolation(
            f"the rendered diff for {environment} is security-sensitive: the remaining "
            f"approval(s) must come from {', '.join(security)}"
        )


def check_decider(
    policy: ApprovalPolicy,
    environment: str,
    author: str,
    user: str,
    action: str = "approve",
    security_due: int = 0,
    groups: Sequence[str] = (),
    forge_users: Sequence[str] = (),
    authors: Sequence[str] = (),
) -> None:
    """Raise PolicyViolation unless `user` may decide for `environment` (approve, override a
    freeze): named, an allowed approver, and not an author where self-approval is forbidden
    (the author is the forge user who opened the PR, `authors` the change's commit authors too:
    `user`, or one of `forge_users`, the forge logins Baton's user records map to `user`)."""
    if not user.strip():
        raise PolicyViolation(
            f"nobody is named to {action}: decide through Baton's API with your credential"
        )
    allowed = _allowed(policy, security_due)
    if not policy.allow_self_approval:
        others = [a for a in allowed if a not in (author, *authors)]
        ask = f"ask one of {', '.join(others) or 'the other reviewers'}"
        if user == author or author in forge_users:
            alias = f" ({author} on the forge)" if user != author else ""
            raise PolicyViolation(
                f"{user} is the change's author{alias} and {environment}'s policy forbids "
                f"self-approval: {ask}"
            )
        if found := next((a for a in authors if a == user or a in forge_users), None):
            alias = f" ({found} on the forge)" if user != found else ""
            raise PolicyViolation(
                f"{user} is an author of the change's commits{alias} and {environment}'s "
                f"policy forbids self-approval: {ask}"
            )
    if allowed and not listed(allowed, user, groups):
        raise PolicyViolation(
            f"{user} may not {action} {environment}: allowed approvers are {', '.join(allowed)}"
        )


def listed(entries: Sequence[str], user: str, groups: Sequence[str] = ()) -> bool:
    """Whether an approver list names `user`, or a `group:NAME` that `user` is in."""
    return user in entries or any(f"{GROUP_PREFIX}{group}" in entries for group in groups)


def check_operator(
    environment: EnvironmentConfig, user: str, action: str, groups: Sequence[str] = ()
) -> None:
    """Raise PolicyViolation unless `user` (in `groups`) may `action` `environment`: its
    `operators`, else its approvers, else (neither named) anyone authenticated."""
    allowed = environment.operators or environment.approvals.approvers
    if allowed and not listed(allowed, user, groups):
        field = "operators" if environment.operators else "approvals.approvers"
        raise PolicyViolation(
            f"{user} may not {action} {environment.name}: allowed are {', '.join(allowed)} "
            f"(environments[{environment.name}].{field})"
        )


def approved_by(approvals: list[Decision]) -> list[str]:
    """Distinct approvers, in the order they approved."""
    return list(dict.fromkeys(a.user for a in approvals))


def satisfied(policy: ApprovalPolicy, approvals: list[Decision], security_due: int = 0) -> bool:
    return len(approved_by(approvals)) >= required(policy, security_due) and not _security_missing(
        policy, approvals, security_due
    )


def still_may_approve(
    policy: ApprovalPolicy,
    author: str,
    approvals: list[Decision],
    security_due: int = 0,
    authors: Sequence[str] = (),
) -> list[str]:
    """Who could still add an approval (empty list when anyone allowed may); the change's
    `author` and `authors` are left out where self-approval is forbidden."""
    done = set(approved_by(approvals))
    missing = _security_missing(policy, approvals, security_due)
    left = required(policy, security_due) - len(done)
    security = policy.security.approvers
    candidates = (
        security if security and missing and missing >= left else _allowed(policy, security_due)
    )
    return [
        user
        for user in candidates
        if user not in done and (user not in (author, *authors) or policy.allow_self_approval)
    ]


def authors_of(
    pr_author: str, commits: Sequence[CommitAuthor], users: dict[str, UserRecord]
) -> list[str]:
    """Who authored a change: the pull request's author and each commit's author, as Baton users
    where `auth.users` maps their forge login (`forge_users`) or email (`emails`, any case),
    and as the forge logins themselves (forge reviews name logins); the email of a commit the
    forge links to no account stays as it is when no record maps it. In order of appearance,
    each once."""
    by_login = {login: name for name, record in users.items() for login in record.forge_users}
    by_email = {email.lower(): name for name, record in users.items() for email in record.emails}
    found: list[str] = []
    for login, email in [(pr_author, ""), *((c.login or "", c.email) for c in commits)]:
        if login:
            found += [by_login.get(login, login), login]
        if email and (email.lower() in by_email or not login):
            found.append(by_email.get(email.lower(), email))
    return list(dict.fromkeys(a for a in found if a))


def required(policy: ApprovalPolicy, security_due: int = 0) -> int:
    """How many distinct approvals the rollout needs in all."""
    return policy.required + security_due


def _allowed(policy: ApprovalPolicy, security_due: int) -> list[str]:
    """Who may approve (empty: anyone); security approvers join when their approval is due."""
    if not policy.approvers:
        return []
    extra = policy.security.approvers if security_due else []
    return list(dict.fromkeys([*policy.approvers, *extra]))


def _security_missing(policy: ApprovalPolicy, approvals: list[Decision], security_due: int) -> int:
    """How many of the due security approvals are still missing (by the security approvers)."""
    if not security_due or not policy.security.approvers:
        return 0
    first = {a.user: a for a in reversed(approvals)}  # each approver's decision
    given = [
        user
        for user in approved_by(approvals)
        if listed(policy.security.approvers, user, first[user].groups)
    ]
    return max(security_due - len(given), 0)
