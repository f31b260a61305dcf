"""A hold on the real stack: `baton hold dev --reason ...` makes the next change wait at dev with
that reason as its gate, before anything is rendered or proposed; `baton unhold dev` lets it go on
to deployed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cli.demo import AUTHOR
from tests.e2e.stack import E2EStack, running_stack, version

pytestmark = pytest.mark.docker


def dev_only(config: dict) -> None:
    dev = next(env for env in config["environments"] if env["name"] == "dev")
    dev["approvals"] = {"required": 0, "approvers": ["carol", "dave"]}
    config["environments"] = [dev]
    config["promotion"] = ["dev"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Iterator[E2EStack]:
    with running_stack(tmp_path_factory.mktemp("baton"), base_image, dev_only) as stack:
        yield stack


def test_a_held_environment_stops_the_next_change_there_until_it_is_unheld(
    stack: E2EStack,
) -> None:
    by_author = stack.baton("hold", "dev", "--reason", "mine", user=AUTHOR)
    assert by_author.returncode == 3  # refused (cli/exits.py)
    assert by_author.stderr.strip() == (
        f"error: {AUTHOR} may not hold dev: allowed are carol, dave "
        "(environments[dev].approvals.approvers)"
    )
    held = stack.baton("hold", "dev", "--reason", "incident 42", user="carol")
    assert held.returncode == 0, held.stderr
    assert held.stdout.strip() == "dev is on hold: incident 42 (by carol)"

    change, merge = stack.release("e2e-hold")

    waiting = stack.wait(
        change, lambda d: d.change.gate is not None and d.change.gate.kind == "hold", timeout=600
    )
    assert waiting.change.gate.description == (
        "dev is on hold by carol: incident 42 (`baton unhold dev` lifts it)"
    )
    assert [(s.environment, s.position) for s in waiting.change.promotion] == [("dev", "held")]
    shown = stack.baton("changes", "show", change).stdout
    assert "waiting: dev is on hold by carol: incident 42" in shown
    assert "promotion: dev ⏸" in shown
    assert not stack.forge().list_pull_requests("gitops")  # nothing rendered or proposed

    unheld = stack.baton("unhold", "dev", user="dave")
    assert unheld.returncode == 0, unheld.stderr
    done = stack.wait(change, lambda d: d.change.state in ("completed", "failed"), timeout=300)
    assert done.change.state == "completed", done.change.reason
    assert version(stack.config.environment("dev").verify.url)["commit"] == merge
    assert "nothing is on hold" in stack.baton("holds", user="carol").stdout
