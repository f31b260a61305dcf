"""`baton forge`: use the local forge by hand, as developers and reviewers use GitHub."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from baton.errors import BatonError
from baton.merge_methods import MergeMethod
from baton.settings import Settings
from cli.exits import exit_code

if TYPE_CHECKING:
    from baton.forges.base import PullRequest, ReviewState
    from baton.local.forge import LocalForge

P = ParamSpec("P")
R = TypeVar("R")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

forge_app = typer.Typer(
    help="The local forge: git repositories and pull requests that send GitHub webhooks.",
    no_args_is_help=True,
)
repo_app = typer.Typer(help="Repositories.", no_args_is_help=True)
pr_app = typer.Typer(help="Pull requests.", no_args_is_help=True)
forge_app.add_typer(repo_app, name="repo")
forge_app.add_typer(pr_app, name="pr")

Actor = Annotated[str, typer.Option("--as", help="the user acting")]
Repo = Annotated[str, typer.Argument(help="repository name, e.g. sample-app")]
Number = Annotated[int, typer.Argument(help="pull request number")]
Json = Annotated[bool, typer.Option("--json", help="print JSON")]


def _forge(user: str = "baton") -> LocalForge:
    from baton.local.forge import LocalForge

    settings = Settings()
    return LocalForge(
        settings.forge_dir,
        webhook_url=f"{settings.api_url}/webhooks/github",
        webhook_secret=settings.webhook_secret,
        user=user,
    )


def _user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Show a BatonError as one red line on stderr and exit with its code (`cli.exits`), never a
    traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except BatonError as exc:
            err_console.print(f"error: {exc}", style="red", markup=False, soft_wrap=True)
            raise typer.Exit(exit_code(exc)) from None

    return run


@contextmanager
def _acting(user: str = "baton") -> Iterator[LocalForge]:
    """The local forge acting as `user`; afterwards, a warning if webhooks were not delivered."""
    forge = _forge(user)
    yield forge
    if failed := forge.list_deliveries(failed_only=True):
        err_console.print(
            f"{len(failed)} webhook(s) not delivered to {forge.webhook_url} "
            "(is `baton dev up` running?): retry with `baton forge redeliver`",
            style="yellow",
            markup=False,
            soft_wrap=True,
        )


def _summary(pr: PullRequest) -> str:
    return (
        f"{pr.repo}#{pr.number} [{pr.state}] {pr.title} "
        f"({pr.head_branch} @ {pr.head_sha[:12]} -> {pr.base_branch})"
    )


@repo_app.command("create")
@_user_errors
def repo_create(
    name: Annotated[str, typer.Argument(help="NAME or OWNER/NAME")],
    from_dir: Annotated[
        Path | None,
        typer.Option(
            exists=True, file_okay=False, help="commit this directory's files as the first commit"
        ),
    ] = None,
    default_branch: Annotated[str, typer.Option(help="the default branch")] = "main",
) -> None:
    """Create a repository (idempotent)."""
    with _acting() as forge:
        created = forge.create_repo(name, default_branch, from_dir)
        console.print(
            f"{name} {'created' if created else 'exists'}: {forge.clone_url(name)}", markup=False
        )


@repo_app.command("protect")
@_user_errors
def repo_protect(
    name: Annotated[str, typer.Argument(help="NAME or OWNER/NAME")],
    require: Annotated[
        list[str] | None,
        typer.Option(help="a commit status context that must be green to merge (repeatable)"),
    ] = None,
    branch: Annotated[str, typer.Option(help="the protected branch")] = "main",
) -> None:
    """Protect a branch as GitHub does: pull requests into it merge only when each required
    check is green on their head (no --require: protection lifted)."""
    forge = _forge()
    forge.protect_branch(name, branch, require or [])
    checks = ", ".join(forge.required_checks(name, branch)) or "nothing (unprotected)"
    console.print(f"{name}:{branch} requires {checks}", markup=False)


@repo_app.command("list")
@_user_errors
def repo_list(as_json: Json = False) -> None:
    """List repositories with their clone URLs."""
    forge = _forge()
    if as_json:
        repos = [{"name": name, "clone_url": forge.clone_url(name)} for name in forge.list_repos()]
        print(json.dumps(repos, indent=2))
        return
    for name in forge.list_repos():
        console.print(f"{name}  {forge.clone_url(name)}", markup=False)


@pr_app.command("open")
@_user_errors
def pr_open(
    repo: Repo,
    head: Annotated[str, typer.Option(help="the branch with the changes")],
    title: Annotated[str, typer.Option()],
    as_: Actor,
    base: Annotated[str, typer.Option(help="the branch to merge into")] = "main",
    body: Annotated[str, typer.Option()] = "",
) -> None:
    """Open a pull request (or show the one already open for HEAD)."""
    with _acting(as_) as forge:
        console.print(
            _summary(forge.open_pull_request(repo, head, base, title, body, as_)), markup=False
        )


@pr_app.command("list")
@_user_errors
def pr_list(
    repo: Annotated[str | None, typer.Argument(help="only this repository")] = None,
    state: Annotated[Literal["open", "closed", "merged", "all"], typer.Option()] = "open",
    as_json: Json = False,
) -> None:
    """List pull requests."""
    prs = _forge().list_pull_requests(repo, None if state == "all" else state)
    if as_json:
        print(json.dumps([pr.model_dump(mode="json") for pr in prs], indent=2))
        return
    table = Table("PR", "state", "title", "author", "head", "base", box=None)
    for pr in prs:
        table.add_row(
            f"{pr.repo}#{pr.number}",
            pr.state,
            pr.title,
            pr.author,
            f"{pr.head_branch} @ {pr.head_sha[:12]}",
            pr.base_branch,
        )
    console.print(table)


@pr_app.command("show")
@_user_errors
def pr_show(
    repo: Repo,
    number: Number,
    as_json: Json = False,
) -> None:
    """Show a pull request with its reviews, comments and the statuses of its head."""
    forge = _forge()
    pr = forge.get_pull_request(repo, number)
    reviews = forge.list_reviews(repo, number)
    statuses = forge.list_commit_statuses(repo, pr.head_sha)
    comments = forge.list_comments(repo, number)
    overrides = forge.list_overrides(repo, number)
    if as_json:
        print(
            json.dumps(
                {
                    "pull_request": pr.model_dump(mode="json"),
                    "reviews": [r.model_dump(mode="json") for r in reviews],
                    "statuses": [s.model_dump(mode="json") for s in statuses],
                    "comments": [{"user": user, "body": body} for user, body in comments],
                    "overrides": [o.model_dump(mode="json") for o in overrides],
                },
                indent=2,
            )
        )
        return
    console.print(_summary(pr), markup=False)
    console.print(f"author {pr.author}; merge commit {pr.merge_commit_sha or '-'}", markup=False)
    for override in overrides:
        failing = ", ".join(f"{c} was {s}" for c, s in sorted(override.failing.items()))
        console.print(
            f"admin override by {override.user} ({failing}): {override.reason}", markup=False
        )
    for review in reviews:
        stale = "" if review.commit_id == pr.head_sha else " (stale)"
        console.print(f"review  {review.user}: {review.state}{stale}", markup=False)
    for status in statuses:
        console.print(
            f"status  {status.context}: {status.state} {status.description}", markup=False
        )
    for user, body in comments:
        console.print(f"comment {user}: {body}", markup=False)


@pr_app.command("review")
@_user_errors
def pr_review(
    repo: Repo,
    number: Number,
    as_: Actor,
    approve: Annotated[bool, typer.Option("--approve")] = False,
    request_changes: Annotated[bool, typer.Option("--request-changes")] = False,
    comment: Annotated[bool, typer.Option("--comment")] = False,
    body: Annotated[str, typer.Option()] = "",
) -> None:
    """Review the current head: exactly one of --approve, --request-changes, --comment."""
    flags: dict[ReviewState, bool] = {
        "approved": approve,
        "changes_requested": request_changes,
        "commented": comment,
    }
    chosen = [state for state, flag in flags.items() if flag]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --approve, --request-changes, --comment")
    with _acting(as_) as forge:
        review = forge.submit_review(repo, number, as_, chosen[0], body)
        console.print(
            f"{repo}#{number}: {as_} {review.state} {review.commit_id[:12]}", markup=False
        )


@pr_app.command("merge")
@_user_errors
def pr_merge(
    repo: Repo,
    number: Number,
    as_: Actor,
    method: Annotated[
        MergeMethod, typer.Option(help="merge commit, one squashed commit, rebase, fast-forward")
    ] = "merge",
    admin: Annotated[
        bool,
        typer.Option(
            "--admin", help="merge although required checks are not green (needs --reason)"
        ),
    ] = False,
    reason: Annotated[
        str | None, typer.Option(help="why the admin override; kept with the pull request")
    ] = None,
) -> None:
    """Merge the pull request at its current head; branch protection refuses it while a
    required check (e.g. baton/pr) is not green, unless an admin overrides with a reason."""
    if admin != bool(reason and reason.strip()):
        raise typer.BadParameter("an admin override needs both --admin and --reason TEXT")
    with _acting(as_) as forge:
        pr = forge.get_pull_request(repo, number)
        sha = forge.merge_pull_request(
            repo, number, pr.head_sha, method=method, admin_reason=reason if admin else None
        )
        console.print(f"{repo}#{number} merged into {pr.base_branch} as {sha[:12]}", markup=False)
        if admin and (overrides := forge.list_overrides(repo, number)):
            console.print(
                f"admin override recorded: {overrides[-1].user}: {overrides[-1].reason}",
                markup=False,
            )


@pr_app.command("close")
@_user_errors
def pr_close(repo: Repo, number: Number, as_: Actor) -> None:
    """Close the pull request without merging."""
    with _acting(as_) as forge:
        forge.close_pull_request(repo, number)
        console.print(_summary(forge.get_pull_request(repo, number)), markup=False)


@pr_app.command("reopen")
@_user_errors
def pr_reopen(repo: Repo, number: Number, as_: Actor) -> None:
    """Reopen a closed pull request."""
    with _acting(as_) as forge:
        console.print(_summary(forge.reopen_pull_request(repo, number)), markup=False)


@forge_app.command("redeliver")
@_user_errors
def redeliver() -> None:
    """Send the webhooks that could not be delivered again."""
    with _acting() as forge:
        pending = len(forge.list_deliveries(failed_only=True))
        console.print(f"redelivered {forge.redeliver_failed()} of {pending}")
