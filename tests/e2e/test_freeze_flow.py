"""A freeze window on the real stack: the rollout waits at a freeze gate until someone allowed
breaks the glass with `baton override-freeze`; the override is kept in the change's record."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cli.demo import AUTHOR
from tests.e2e.stack import E2EStack, only_dev, running_stack, version

pytestmark = pytest.mark.docker

EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def frozen_dev_only(config: dict) -> None:
    dev = only_dev(config)
    dev["approvals"] = {"required": 0, "approvers": ["carol", "dave"]}
    dev["freeze"] = [{"name": "always", "weekly": {"days": EVERY_DAY}}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Iterator[E2EStack]:
    with running_stack(tmp_path_factory.mktemp("baton"), base_image, frozen_dev_only) as stack:
        yield stack


def test_frozen_rollout_waits_until_an_allowed_approver_breaks_the_glass(stack: E2EStack) -> None:
    change, merge = stack.release("e2e-freeze")

    frozen = stack.wait(
        change,
        lambda d: (
            d.rollout is not None and d.rollout.gate is not None and d.rollout.gate.kind == "freeze"
        ),
        timeout=600,
    )
    assert frozen.rollout.gate.description.startswith("dev is frozen (always) until ")
    shown = stack.baton("changes", "show", change)
    assert f"break glass with: baton override-freeze {change} --env dev" in shown.stdout
    assert not stack.forge().list_pull_requests("gitops")  # nothing rendered or proposed yet

    by_author = stack.baton(
        "override-freeze", change, "--env", "dev", "--reason", "my own change", user=AUTHOR
    )
    assert by_author.returncode != 0
    expected = (
        f"error: {AUTHOR} is the change's author and dev's policy forbids self-approval: "
        "ask one of carol, dave"
    )
    assert by_author.stderr.strip().splitlines() == [expected]
    broke = stack.baton(
        "override-freeze",
        change,
        "--env",
        "dev",
        "--reason",
        "CVE fix, cannot wait",
        user="carol",
    )
    assert broke.returncode == 0, broke.stderr

    done = stack.wait(change, lambda d: d.change.state in ("completed", "failed"), timeout=300)
    assert done.change.state == "completed", done.change.reason
    (rollout,) = done.change.rollouts
    assert (rollout.freeze_override.user, rollout.freeze_override.comment) == (
        "carol",
        "CVE fix, cannot wait",
    )
    assert version(stack.config.environment("dev").verify.url)["commit"] == merge
