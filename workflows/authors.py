"""Who authored a change, learnt once its pull request merged (its commits are final then)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.forge import AuthorsInput, change_authors
    from baton.models import ChangeInput

from workflows.patches import patched
from workflows.record import Record, failure
from workflows.retries import RETRY

COMMIT_AUTHORS = "commit-authors"
"""Patch: a merged change learns its commits' authors, who may not approve it where
self-approval is forbidden."""


async def learn_authors(input: ChangeInput, record: Record) -> list[str]:
    """The PR's author and its commits' authors as Baton users (`policy.authors_of`); only the
    PR's author for a pushed commit's change, for changes recorded before the patch, and (with a
    note saying why) when the forge refuses to list the commits."""
    if input.pr_number is None or not input.plan.commit_authors or not patched(COMMIT_AUTHORS):
        return [input.author]
    try:
        return await workflow.execute_activity(
            change_authors,
            AuthorsInput(repo=input.repo, pr_number=input.pr_number, author=input.author),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RETRY,
            summary=f"authors of #{input.pr_number}",
        )
    except ActivityError as err:
        record.note(f"the commits' authors are unknown, only {input.author} counts: {failure(err)}")
        return [input.author]
