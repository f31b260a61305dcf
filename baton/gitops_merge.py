"""Merging a GitOps PR into a base branch that moved: Baton rebases its own branch, never the base.

Several apps, and every environment of each, share one GitOps repository, so another rollout's
merge (or a person's commit) can land on the base branch between a rollout's PR and its merge.
The forge then refuses the merge (a fast-forward or rebase merge that no longer applies, a
conflict, GitHub's 405 "Base branch was modified"), or would merge manifests rendered from inputs
that changed meanwhile. Either way Baton moves its branch onto the base branch's new head and
merges that, so each rollout lands once, whole, after the ones before it; nothing is ever pushed
to the base branch but what the forge merges.

When the base branch changed what the rollout's render read (the app's values or overlay in
that environment) or the files it writes, the branch is rendered again rather than replayed. The
same manifests keep their approvals (they were given on that content); other manifests are pushed
for review and the merge stops with `HeadChanged`, so the approvers are asked again on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from baton.forges.base import (
    Forge,
    ForgeError,
    HeadChanged,
    MergeMethodRefused,
    NotMergeable,
    PullRequest,
    RequiredChecksNotPassing,
)
from baton.gitops import GitOpsRepo

REBASES = 5
"""Rebases one merge may take: each answers one other merge that landed first."""
HEAD_WAIT_S = 30.0
"""How long a hosted forge may take to show the rebased head as the PR's head."""


class Rerender:
    """The rollout's render again, from the base branch as it is now."""

    def __init__(
        self,
        manifests: str,
        inputs: list[str],
        render: Callable[[], tuple[Mapping[str, str | None], str, list[str]]],
    ) -> None:
        self.manifests = manifests  # the path of the manifests the approvals were given on
        self.inputs = inputs  # what the render reads from the GitOps repository: files, dirs
        self.render = render  # → (files to write, content hash, security-sensitive reasons)


class BaseMovedMerge:
    """Merges one GitOps PR at its approved head, or at Baton's rebase of that head."""

    def __init__(
        self, gitops: GitOpsRepo, forge: Forge, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.gitops = gitops
        self.forge = forge
        self.repo = gitops.config.repo
        self.sleep = sleep

    def merge(self, number: int, approved: str, rerender: Rerender | None = None) -> str:
        """Merge PR `number` whose approvals were given at head `approved`; returns the commit the
        base branch then points at. `rerender` None (a revert): the change is only replayed.

        Idempotent: a retry finds the head an earlier attempt rebased and merges (or has merged)
        that. Raises the forge's refusal when rebasing cannot help, `HeadChanged` when someone
        else moved the PR's head or a new render needs approvals again.
        """
        pr = self.forge.get_pull_request(self.repo, number)
        head = approved
        if pr.head_sha != approved and self.gitops.same_change(pr.head_sha, approved):
            head = pr.head_sha  # moved onto a newer base by an earlier attempt
        moved = self.gitops.moved(head, rerender.inputs) if rerender and pr.state == "open" else []
        if moved and rerender is not None:
            head = self._render_again(pr, head, approved, rerender, moved)
        for attempt in range(REBASES + 1):
            try:
                return self.forge.merge_pull_request(self.repo, number, head)
            except (MergeMethodRefused, RequiredChecksNotPassing):
                raise
            except NotMergeable as refusal:
                pr = self.forge.get_pull_request(self.repo, number)
                if attempt == REBASES or pr.state != "open" or not self.gitops.behind(head):
                    raise
                head = self._rebase(pr, head, approved, rerender, refusal)
        raise AssertionError("unreachable")

    def _rebase(
        self,
        pr: PullRequest,
        head: str,
        approved: str,
        rerender: Rerender | None,
        refusal: NotMergeable,
    ) -> str:
        """Move the branch onto the base's head: the same files, or rendered again when the
        base changed them or what they were rendered from."""
        files = self.gitops.changes(head)
        inputs = rerender.inputs if rerender else []
        moved = self.gitops.moved(head, [*files, *inputs])
        if not moved:
            return self._moved(pr, self.gitops.rebase(pr.head_branch, head, files))
        if rerender is None:
            raise refusal  # a revert is not rendered: the forge's words stand
        return self._render_again(pr, head, approved, rerender, moved)

    def _render_again(
        self, pr: PullRequest, head: str, approved: str, rerender: Rerender, moved: list[str]
    ) -> str:
        """Render from the base's head and move the branch there; the same manifests keep their
        approvals, others raise `HeadChanged` for the approvers to see them."""
        before = self.gitops.changes(head)
        files, content_hash, sensitive = rerender.render()
        rebased = self._moved(pr, self.gitops.rebase(pr.head_branch, head, files))
        if files.get(rerender.manifests) == before.get(rerender.manifests):
            return rebased
        base = self.gitops.config.base_branch
        self.forge.comment(
            self.repo,
            pr.number,
            f"Rendered again on {base} {self.gitops.head()[:12]}: it changed "
            f"{', '.join(moved)} since this PR was opened. The manifests differ from what was "
            f"approved at {approved[:12]}, so the approvals are asked again.",
        )
        raise HeadChanged(
            self.repo, pr.number, approved, rebased, content_hash=content_hash, sensitive=sensitive
        )

    def _moved(self, pr: PullRequest, rebased: str) -> str:
        """`rebased`, once the forge shows it as the PR's head (a hosted forge may lag a push)."""
        waited = 0.0
        while self.forge.get_pull_request(self.repo, pr.number).head_sha != rebased:
            if waited >= HEAD_WAIT_S:
                raise ForgeError(
                    f"{self.repo}#{pr.number} does not show the rebased head {rebased[:12]} yet"
                )
            self.sleep(1.0)
            waited += 1.0
        return rebased
