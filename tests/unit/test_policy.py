"""Decision policy rules, as the rollout's update validators apply them."""

from __future__ import annotations

import pytest

from baton.config import ApprovalPolicy, SecurityApprovals, UserRecord
from baton.models import CommitAuthor, Decision
from baton.policy import (
    PolicyViolation,
    authors_of,
    check_approval,
    satisfied,
    still_may_approve,
)

PROD = ApprovalPolicy(required=2, approvers=["carol", "dave", "alice"], allow_self_approval=False)


def test_prod_rejects_self_approval() -> None:
    with pytest.raises(
        PolicyViolation, match="alice is the change's author .* forbids self-approval"
    ):
        check_approval(PROD, "prod", "alice", [], "alice")


def test_unknown_approver_is_refused_with_the_allowed_list() -> None:
    with pytest.raises(
        PolicyViolation,
        match="mallory may not approve prod: allowed approvers are carol, dave, alice",
    ):
        check_approval(PROD, "prod", "alice", [], "mallory")


def test_second_approval_by_same_person_does_not_count() -> None:
    approvals = [Decision(user="carol")]
    with pytest.raises(PolicyViolation, match="carol has already approved prod"):
        check_approval(PROD, "prod", "alice", approvals, "carol")
    assert not satisfied(PROD, approvals + [Decision(user="carol")])
    assert satisfied(PROD, approvals + [Decision(user="dave")])


def test_self_approval_allowed_when_policy_says_so() -> None:
    dev = ApprovalPolicy(required=1, allow_self_approval=True)
    check_approval(dev, "dev", "alice", [], "alice")


def test_who_may_still_approve_excludes_author_and_those_done() -> None:
    assert still_may_approve(PROD, "alice", [Decision(user="carol")]) == ["dave"]


SECURED = ApprovalPolicy(
    required=1,
    approvers=["carol", "dave"],
    security=SecurityApprovals(required=1, approvers=["erin"]),
)


def test_security_approvals_are_due_only_for_a_sensitive_diff() -> None:
    with pytest.raises(PolicyViolation, match="erin may not approve prod"):
        check_approval(SECURED, "prod", "alice", [], "erin")
    check_approval(SECURED, "prod", "alice", [], "erin", security_due=1)
    assert satisfied(SECURED, [Decision(user="carol")])
    assert not satisfied(SECURED, [Decision(user="carol")], security_due=1)
    assert satisfied(SECURED, [Decision(user="carol"), Decision(user="erin")], security_due=1)


def test_the_last_approval_of_a_sensitive_diff_must_be_a_security_one() -> None:
    carol = [Decision(user="carol")]
    assert still_may_approve(SECURED, "alice", carol, security_due=1) == ["erin"]
    with pytest.raises(PolicyViolation, match="remaining approval.s. must come from erin"):
        check_approval(SECURED, "prod", "alice", carol, "dave", security_due=1)


def test_the_author_under_another_name_on_the_forge_may_not_approve() -> None:
    with pytest.raises(
        PolicyViolation,
        match=r"^al is the change's author \(alice on the forge\) and prod's policy forbids",
    ):
        check_approval(PROD, "prod", "alice", [], "al", forge_users=["alice"])


def test_group_members_approve_and_count_as_security_approvers() -> None:
    policy = ApprovalPolicy(
        required=1,
        approvers=["group:devs"],
        security=SecurityApprovals(required=1, approvers=["group:security"]),
    )
    with pytest.raises(PolicyViolation, match="allowed approvers are group:devs, group:security"):
        check_approval(policy, "prod", "alice", [], "carol", security_due=1)
    check_approval(policy, "prod", "alice", [], "carol", security_due=1, groups=["devs"])
    given = [Decision(user="carol", groups=["devs"])]
    assert not satisfied(policy, given, security_due=1)
    with pytest.raises(PolicyViolation, match="must come from group:security"):
        check_approval(policy, "prod", "alice", given, "dave", security_due=1, groups=["devs"])
    assert satisfied(policy, [*given, Decision(user="erin", groups=["security"])], 1)


# A PR opened by alice whose commits GitHub shows: one by dave's verified email (GitHub links
# it to his login `dave-gh`), one by a laptop email only `auth.users` knows, one by nobody known.
COMMITS = [
    CommitAuthor(sha="1" * 40, name="Dave", email="dave@corp.example", login="dave-gh"),
    CommitAuthor(sha="2" * 40, name="Carol", email="Carol@Laptop.local"),
    CommitAuthor(sha="3" * 40, name="Eve", email="eve@elsewhere.example"),
]
USERS = {
    "dave": UserRecord(forge_users=["dave-gh"]),
    "carol": UserRecord(emails=["carol@laptop.local"]),
}


def test_commit_authors_are_mapped_to_baton_users_by_login_and_email() -> None:
    assert authors_of("alice", COMMITS, USERS) == [
        "alice",
        "dave",
        "dave-gh",
        "carol",
        "eve@elsewhere.example",
    ]


def test_a_commit_author_may_not_approve_where_self_approval_is_forbidden() -> None:
    authors = authors_of("alice", COMMITS, USERS)
    with pytest.raises(
        PolicyViolation,
        match=r"^carol is an author of the change's commits and prod's policy forbids "
        r"self-approval: ask one of the other reviewers$",
    ):
        check_approval(PROD, "prod", "alice", [], "carol", authors=authors)


def test_a_commit_author_reviewing_on_the_forge_is_known_by_login() -> None:
    authors = authors_of("alice", COMMITS, USERS)
    with pytest.raises(PolicyViolation, match=r"^dave-gh is an author of the change's commits"):
        check_approval(PROD, "prod", "alice", [], "dave-gh", authors=authors)
    with pytest.raises(PolicyViolation, match=r"\(dave-gh on the forge\)"):
        check_approval(PROD, "prod", "alice", [], "d", forge_users=["dave-gh"], authors=authors)


def test_commit_authors_may_approve_where_self_approval_is_allowed() -> None:
    dev = ApprovalPolicy(required=1, allow_self_approval=True)
    check_approval(dev, "dev", "alice", [], "carol", authors=authors_of("alice", COMMITS, USERS))


def test_who_may_still_approve_leaves_out_commit_authors() -> None:
    authors = authors_of("alice", COMMITS, USERS)
    assert still_may_approve(PROD, "alice", [], authors=authors) == []
    assert still_may_approve(PROD, "alice", [], authors=["dave"]) == ["carol"]
