"""The board in a real browser (headless Chromium) against the embedded stack: people decide from
it, the author is refused with the policy's reason, and prod turns deployed without a reload.
Screenshots of each page go to test-output/board (see tests/fixtures/browser.py)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from cli.demo import AUTHOR
from tests.e2e.stack import E2EStack
from tests.fixtures.browser import chromium, output_dir, shoot

pytestmark = pytest.mark.docker

PIPELINE_MS = 400_000  # CI, then each rollout: as long as the stack's own waits
STEP_MS = 30_000


def sign_in(browser: Browser, stack: E2EStack, user: str, seen: list[str]) -> Page:
    """A browser of `user`'s own, signed in with an API token an administrator made for them;
    every URL it requests goes to `seen`."""
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    page.on("request", lambda request: seen.append(request.url))
    page.goto(f"{stack.settings.api_url}/board/decisions")
    expect(page.get_by_role("heading", name="Sign in to Baton's board")).to_be_visible()
    page.get_by_label("API token").fill(stack.token(user))
    page.get_by_role("button", name="Sign in").press("Enter")
    expect(page.locator("#signed-in-user")).to_have_text(user)
    return page


def test_people_decide_on_the_board_and_watch_prod_turn_deployed(baton_stack: E2EStack) -> None:
    stack, shots = baton_stack, output_dir("board")
    change, merge = stack.release("e2e-board")
    _, app, pr = change.split("/")
    seen: list[str] = []
    with chromium() as browser:
        carol = sign_in(browser, stack, "carol", seen)
        shoot(carol, shots, "01-decisions-empty")

        # staging waits on carol: she approves it from "My decisions", which then shows prod.
        staging = carol.locator(f"#waiting-{app}-staging")
        expect(staging).to_be_visible(timeout=PIPELINE_MS)
        shoot(carol, shots, "02-decisions-staging")
        staging.get_by_role("button", name="Approve staging").click()
        expect(carol.locator("#decision-outcome")).to_contain_text("carol", timeout=STEP_MS)

        prod = carol.locator(f"#waiting-{app}-prod")
        expect(prod).to_be_visible(timeout=PIPELINE_MS)
        manifests = prod.locator(".manifests")
        expect(manifests).to_contain_text(f"Deployment/{app}")
        expect(manifests.locator(".diff .add").first).to_be_visible()
        shoot(carol, shots, "03-decisions-prod-diff")

        # alice wrote the change: the board sends her approval, the policy refuses it, and she
        # reads why.
        alice = sign_in(browser, stack, AUTHOR, seen)
        alice.goto(f"{stack.settings.api_url}/board/changes/{app}/{pr}")
        alice.get_by_role("button", name="Approve prod").click()
        refusal = alice.locator("#decision-outcome")
        expect(refusal).to_contain_text("forbids self-approval", timeout=STEP_MS)
        expect(refusal).to_have_class("refused")
        shoot(alice, shots, "04-change-author-refused")

        prod.get_by_label("Comment").fill("looks right")
        prod.get_by_role("button", name="Approve prod").press("Enter")  # by keyboard
        expect(carol.locator("#decision-outcome")).to_contain_text("carol", timeout=STEP_MS)

        # The board: prod waits on one more approver. carol keeps the page open; dave approves
        # elsewhere; prod turns deployed on her screen without a reload.
        carol.goto(f"{stack.settings.api_url}/board")
        cell = carol.locator(f"#cell-{app}-prod")
        expect(cell).to_have_attribute("data-state", "waiting-approval", timeout=STEP_MS)
        expect(cell).to_contain_text("carol")
        shoot(carol, shots, "05-board-prod-waiting")
        carol.evaluate("window.boardNotReloaded = true")
        assert stack.baton("approve", change, "--env", "prod", user="dave").returncode == 0
        expect(cell).to_have_attribute("data-state", "deployed", timeout=PIPELINE_MS)
        expect(cell).to_contain_text(merge[:12])
        assert carol.evaluate("window.boardNotReloaded") is True
        shoot(carol, shots, "06-board-prod-deployed")

        carol.goto(f"{stack.settings.api_url}/board/changes/{app}/{pr}")
        expect(carol.locator("#change-state")).to_have_text("completed", timeout=STEP_MS)
        expect(carol.locator("#outcome-prod")).to_have_text("deployed")
        shoot(carol, shots, "07-change-completed")
        carol.goto(f"{stack.settings.api_url}/board/metrics")
        expect(carol.get_by_role("table")).to_contain_text("prod")
        shoot(carol, shots, "08-metrics")

    # Nothing the pages load comes from elsewhere: the board works with only loopback.
    assert seen and all(url.startswith(f"{stack.settings.api_url}/") for url in seen), {
        url for url in seen if not url.startswith(stack.settings.api_url)
    }
