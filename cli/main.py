"""The `baton` command line.

Each command imports what it needs when it runs: at start-up only typer, rich, the API client
and the exit codes load, so `baton approve` or `baton --help` does not first import Temporal's
client, the models, the renderers and the embedded stack (`make bench`: bench/cli.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console

from baton.errors import BadRequest, BatonError
from baton.settings import Settings
from cli.ci import ci_app
from cli.client import BatonApi, store_token
from cli.exits import Exit, exit_code
from cli.forge import forge_app
from cli.images import images_app
from cli.init import init as init_command
from cli.store import store_app

if TYPE_CHECKING:
    from temporalio.client import Client

    from baton import changes, tokens
    from baton.metrics import Durations
    from baton.models import ChangeStatus, Decision, Gate, RolloutStatus, Stage
    from cli.demo import DemoSummary
    from cli.watch import Until, WatchEvent

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

app = typer.Typer(
    help="Baton carries every application change along the whole GitOps path.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Validate configuration.", no_args_is_help=True)
dev_app = typer.Typer(help="Run the embedded stack on this machine.", no_args_is_help=True)
changes_app = typer.Typer(help="Inspect changes.", no_args_is_help=True)
token_app = typer.Typer(
    help="Baton API tokens (administrators: writes the token store under BATON_HOME).",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")
app.add_typer(dev_app, name="dev")
app.add_typer(changes_app, name="changes")
app.add_typer(token_app, name="token")
app.add_typer(forge_app, name="forge", help="The embedded local forge: repositories and PRs.")
app.add_typer(images_app, name="images", no_args_is_help=True)
app.add_typer(store_app, name="store")
app.command("init")(init_command)
app.add_typer(ci_app, name="ci", no_args_is_help=True)

ChangeId = Annotated[
    str, typer.Argument(help="change id, e.g. change/sample-app/1 or sample-app/1")
]
Env = Annotated[str, typer.Option("--env", help="the environment the decision is for")]
Comment = Annotated[str, typer.Option(help="why")]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
T = TypeVar("T")


def _client_call(operation: Callable[[Client], Awaitable[T]]) -> T:
    """Run `operation(client)` against Temporal; user-facing errors surface as one line."""
    from baton.temporal import connect

    async def run() -> T:
        return await operation(await connect())

    return asyncio.run(run())


@changes_app.command("ls")
def changes_ls(as_json: Json = False) -> None:
    """Changes, newest first: id, state, environment and commit (no worker needed)."""
    from baton import changes

    summaries = _client_call(changes.list_changes)
    if as_json:
        print(json.dumps([s.model_dump(mode="json") for s in summaries], indent=2))
        return
    if not summaries:
        console.print("no changes yet: open a PR on a configured app (or run `baton demo`)")
    for s in summaries:
        commit = (s.commit or "")[:12]
        console.print(f"{s.id:<32} {s.label:<14} {s.environment or '-':<10} {commit}")


@changes_app.command("show")
def changes_show(change: ChangeId, as_json: Json = False) -> None:
    """A change's timeline, its current gate, and who it waits for (no worker needed)."""
    from baton import changes

    detail = _client_call(lambda client: changes.show(client, change))
    if as_json:
        print(detail.model_dump_json(indent=2))
        return
    render_change(detail)


@changes_app.command("watch")
def changes_watch(change: ChangeId, as_json: Json = False) -> None:
    """Follow a change live until it ends: its stage and step with elapsed time, its gate and on
    whom it waits, each environment's outcome. Exit 0 when it completes, 1 when it fails, is
    rejected, aborted, closed, superseded or batched. With --json, one event per line."""
    end = _client_call(lambda client: _watch(client, change, as_json))
    if end != "completed":
        raise typer.Exit(Exit.NOT_THROUGH)


async def _watch(client: Client, change: str, as_json: bool) -> str:
    """Print the change's events as they come; returns how it ended."""
    from cli.watch import follow, now_line

    end = "unknown"
    with _live_line(quiet=as_json) as live:
        async for events, detail in follow(client, change):
            for event in events:
                _print_event(event, as_json)
                end = event.state if event.event == "end" and event.state else end
            live(now_line(detail))
    return end


@contextmanager
def _live_line(*, quiet: bool) -> Iterator[Callable[[str], None]]:
    """A line rewritten in place under the output, on a terminal only; none when `quiet` (--json)."""
    if quiet:
        yield lambda line: None
        return
    with console.status("reading the change…") as status:
        yield status.update


def _print_event(event: WatchEvent, as_json: bool) -> None:
    if as_json:
        print(event.model_dump_json(exclude_none=True), flush=True)
        return
    style = {"end": "bold", "gate": "yellow", "environment": "bold"}.get(event.event, "")
    console.print(f"{event.at:%H:%M:%S} {event.text}", style=style, markup=False, highlight=False)


@changes_app.command("wait")
def changes_wait(
    change: ChangeId,
    until: Annotated[
        str, typer.Option("--until", help="deployed:ENV (e.g. deployed:prod) or completed")
    ],
    timeout: Annotated[
        str, typer.Option("--timeout", help="give up after this long: 90s, 30m, 2h")
    ] = "30m",
    as_json: Json = False,
) -> None:
    """Wait, silently, until a change is deployed to ENV (or completed). Exit 0 when it is, 1 when
    the change ends without it, 6 after --timeout."""
    from cli.watch import Until

    goal = Until.parse(until)
    seconds = _seconds(timeout)
    status = _client_call(lambda client: _wait(client, change, goal, seconds))
    reached = goal.reached(status)
    if as_json:
        result = {"change": status.id, "until": str(goal), "reached": reached}
        print(json.dumps({**result, "state": status.state, "reason": status.reason}))
    elif reached:
        console.print(f"{status.id}: {goal}", highlight=False)
    if not reached:
        err_console.print(
            f"{status.id} ended {status.state} ({status.reason}) without {goal}",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(Exit.NOT_THROUGH)


async def _wait(client: Client, change: str, goal: Until, seconds: float) -> ChangeStatus:
    """The change's status once `goal` is reached or the change ended; WaitTimedOut after
    `seconds`, EnvironmentNotFound when the change has no such environment."""
    from baton import changes
    from cli.watch import WaitTimedOut, follow

    status: ChangeStatus | None = None
    try:
        async with asyncio.timeout(seconds):
            async for _, detail in follow(client, change):
                status = detail.change
                goal.check(status)
                if goal.reached(status):
                    break
    except TimeoutError:
        now = f" (now: {status.state} {status.reason or ''}".rstrip() + ")" if status else ""
        raise WaitTimedOut(
            f"{changes.normalize_id(change)} is not {goal} after {_human(seconds)}{now}"
        ) from None
    assert status is not None  # follow yields at least once or raises
    return status


def _seconds(text: str) -> float:
    """`90s`, `30m`, `2h` or plain seconds, as seconds; BadRequest otherwise."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise BadRequest(f"--timeout {text!r}: give a duration like 90s, 30m or 2h") from None
    if seconds <= 0:
        raise BadRequest(f"--timeout {text!r}: give a duration like 90s, 30m or 2h")
    return seconds


def render_change(detail: changes.ChangeDetail) -> None:
    from baton.promotion import describe

    status = detail.change
    what = f"#{status.pr_number}" if status.pr_number is not None else f"@{status.head_sha[:12]}"
    console.print(f"[bold]{status.id}[/] {status.app}{what} by {status.author}")
    console.print(
        f"state: [bold]{status.state}[/]" + (f" ({status.reason})" if status.reason else "")
    )
    if detail.workflow not in ("running", "completed"):
        console.print(f"[red]its workflow was {detail.workflow}[/]: it will not move on")
    if status.merge_commit:
        console.print(f"merge commit: {status.merge_commit}")
    if status.batch:
        console.print(f"batch: {status.batch.describe()}", markup=False, highlight=False)
        for commit in status.batch.commits:
            line = f"  {commit.sha[:12]} {commit.title} ({commit.author})"
            console.print(line, markup=False, highlight=False)
    if status.artifact:
        console.print(f"artifact: {status.artifact.image_ref}")
    if status.promotion:
        console.print(f"promotion: {describe(status.promotion)}", markup=False, highlight=False)
        for step in status.promotion:
            if step.detail:
                line = f"  {step.environment}: {step.position}: {step.detail}"
                console.print(line, markup=False, highlight=False)
    for stage in status.timeline:
        _print_stage(stage, indent="  ")
    for stage in detail.steps:
        _print_stage(stage, indent="    ")
    for line in detail.waiting:
        console.print(f"  [yellow]{line}[/]", highlight=False)
    for rollout in detail.running_rollouts:
        _print_rollout(rollout)
        if rollout.gate is not None:
            _print_gate(status.id, rollout.gate)
    if status.gate is not None:
        _print_gate(status.id, status.gate)


def _print_rollout(rollout: RolloutStatus) -> None:
    """A rollout under way: its environment, its steps and the decisions taken on it."""
    console.print(f"rollout to [bold]{rollout.environment}[/]:")
    for stage in rollout.timeline:
        _print_stage(stage, indent="    ")
    lines = [_decision_line("approved", d) for d in rollout.approvals]
    lines += [
        f"{_decision_line('approved', d)} (no longer counts: the PR's content changed)"
        for d in rollout.voided
    ]
    if rollout.freeze_override:
        lines.append(_decision_line("freeze overridden", rollout.freeze_override))
    for line in lines:
        console.print(f"    {line}", markup=False, highlight=False)


def _print_gate(change: str, gate: Gate) -> None:
    """What the change or one of its rollouts waits for, on whom, and how to let it through."""
    console.print(f"[yellow]waiting:[/] {gate.description}")
    if gate.kind == "approval":
        console.print(
            f"  approvals: {len(gate.approved_by)}/{gate.required}"
            f" (approved by: {', '.join(gate.approved_by) or 'nobody yet'})"
        )
        console.print(f"  may still approve: {', '.join(gate.waiting_on) or 'anyone allowed'}")
        if gate.content_hash:
            console.print(f"  content: {gate.content_hash} (GitOps PR head {gate.head})")
        console.print(f"  approve with: baton approve {change} --env {gate.environment}")
    elif gate.waiting_on:
        console.print(f"  on: {', '.join(gate.waiting_on)}")
    if gate.kind == "freeze":
        console.print(
            f"  break glass with: baton override-freeze {change} --env {gate.environment} "
            "--reason WHY"
        )


def _decision_line(verb: str, decision: Decision) -> str:
    """Who decided, through what, when, on which content, and why."""
    who = decision.user + (f" [{', '.join(decision.groups)}]" if decision.groups else "")
    via = {
        "token": f"Baton token {decision.subject}",
        "oidc": f"OIDC {decision.issuer} sub={decision.subject}",
        "forge": "forge review",
        "temporal": "Temporal (administrator)",
    }[decision.via]
    when = f" at {decision.at:%Y-%m-%d %H:%M:%S}" if decision.at else ""
    on = f" on {decision.content_hash[:19]}" if decision.content_hash else ""
    why = f": {decision.comment}" if decision.comment else ""
    return f"{verb} by {who} via {via}{when}{on}{why}"


def _print_stage(stage: Stage, indent: str) -> None:
    mark = {"succeeded": "[green]✔[/]", "failed": "[red]✘[/]", "running": "[yellow]…[/]"}
    took = ""
    if stage.ended_at:
        took = f" {(stage.ended_at - stage.started_at).total_seconds():.1f}s"
    logs = f" (logs: {stage.links['logs']})" if "logs" in stage.links else ""
    console.print(
        f"{indent}{mark.get(stage.outcome, '·')} {stage.name}{took} {stage.detail}{logs}",
        highlight=False,
    )


ContentHash = Annotated[
    str | None,
    typer.Option(
        "--content-hash",
        help="the rendered content hash you looked at (changes show); default: what the "
        "rollout holds now",
    ),
]


@app.command("approve")
def approve(
    change: ChangeId, env: Env, comment: Comment = "", content_hash: ContentHash = None
) -> None:
    """Approve a change's rollout into an environment, as the holder of your token (checked
    against the environment's policy, bound to the content you approve)."""
    _decide(change, env, "approve", comment, content_hash)


@app.command("reject")
def reject(
    change: ChangeId, env: Env, comment: Comment = "", content_hash: ContentHash = None
) -> None:
    """Reject a change's rollout into an environment: its promotion stops."""
    _decide(change, env, "reject", comment, content_hash)


def _decide(change: str, env: str, action: str, comment: str, content_hash: str | None) -> None:
    api = BatonApi()
    content = api.content(change, env)
    if content_hash is not None:
        content.content_hash = content_hash
    if content.content_hash:
        console.print(
            f"{action} on content {content.content_hash[:19]}"
            + (f", GitOps PR head {content.head[:12]}" if content.head else ""),
            highlight=False,
        )
    body = {"comment": comment, **content.model_dump(exclude_none=True)}
    console.print(api.decide(change, env, action, body), highlight=False)


@app.command("metrics")
def metrics(
    env: Annotated[
        str | None, typer.Option("--env", help="the environment; default: the last to promote to")
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, help="the period, ending now")] = 30,
    app_name: Annotated[str | None, typer.Option("--app", help="one app only")] = None,
    as_json: Json = False,
) -> None:
    """Delivery metrics (DORA) from the changes Baton carried: frequency, lead time, failure
    rate and time to restore."""
    from baton import metrics as dora
    from baton.config import load_config

    config = load_config(Settings().config_file())
    names = [e.name for e in config.promotion_order()]
    environment = env or (names[-1] if names else None)
    if environment is None or environment not in [e.name for e in config.environments]:
        raise BadRequest(
            f"no environment {environment!r} in the configuration: choose one of "
            f"{', '.join(e.name for e in config.environments) or '(none configured)'}"
        )
    apps = [a.name for a in config.apps]
    if app_name is not None and app_name not in apps:
        raise BadRequest(
            f"no app {app_name!r} in the configuration: choose one of {', '.join(apps)}"
        )
    until = datetime.now(UTC)
    since = until - timedelta(days=days)
    rollouts = _client_call(lambda c: dora.collect(c, environment, since, app_name))
    result = dora.compute(rollouts, environment, since, until)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    rate = result.change_failure_rate
    console.print(
        f"[bold]{environment}[/], last {days} day(s)" + (f", {app_name}" if app_name else "")
    )
    console.print(f"deployments: {result.deployments} ({result.deployments_per_day}/day)")
    console.print(f"lead time, merge → {environment}: {_durations(result.lead_time_from_merge)}")
    console.print(f"lead time, PR → {environment}: {_durations(result.lead_time_from_pr)}")
    console.print(
        "change failure rate: "
        + (f"{rate:.0%} ({result.failed} failed)" if rate is not None else "no rollouts")
    )
    console.print(f"time to restore: {_durations(result.time_to_restore)}")


def _durations(durations: Durations) -> str:
    if not durations.count:
        return "-"
    return (
        f"median {_human(durations.median_s)}, p90 {_human(durations.p90_s)} (n={durations.count})"
    )


def _human(seconds: float | None) -> str:
    seconds = seconds or 0
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@app.command("override-freeze")
def override_freeze(
    change: ChangeId,
    env: Env,
    reason: Annotated[str, typer.Option("--reason", help="why this cannot wait (recorded)")],
) -> None:
    """Break glass: let a change's rollout into a frozen environment go ahead now."""
    console.print(BatonApi().decide(change, env, "override-freeze", {"comment": reason}))


@app.command("abort")
def abort(
    change: ChangeId,
    reason: Annotated[str, typer.Option("--reason", help="why the change is stopped")],
) -> None:
    """Stop a change wherever it is; an open GitOps PR is closed."""
    console.print(BatonApi().abort(change, reason))


@app.command("promote")
def promote(
    app_name: Annotated[str, typer.Argument(help="the app, e.g. sample-app")],
    commit: Annotated[str, typer.Option("--commit", help="the commit whose artifact CI built")],
    to: Annotated[str, typer.Option("--to", help="the environment to deploy it into")],
) -> None:
    """Deploy an artifact CI built before into an environment, through its gates (a deliberate
    rollback or a hotfix path), as a change of its own; holds do not stop it."""
    console.print(BatonApi().promote(app_name, commit, to), markup=False)


@app.command("retry")
def retry(
    change: ChangeId,
    env: Annotated[str, typer.Option("--env", help="the environment whose rollout failed")],
) -> None:
    """Roll an ended change out again where its rollout failed (once the cause is fixed), under
    the current configuration (the API reads its config file again first), then on along the
    promotion graph."""
    console.print(BatonApi().retry(change, env), markup=False)


AppOption = Annotated[str | None, typer.Option("--app", help="one app only; default: every app")]


@app.command("hold")
def hold(
    environment: Annotated[str, typer.Argument(help="the environment, e.g. prod")],
    reason: Annotated[str, typer.Option("--reason", help="why: what waiting changes show")],
    app_name: AppOption = None,
) -> None:
    """Stop automatic promotion into an environment: changes that reach it wait there, with the
    reason as their gate, until `baton unhold`."""
    held = BatonApi().hold(environment, app_name, reason)
    console.print(f"{held.scope} is on hold: {held.reason} (by {held.by})", markup=False)


@app.command("unhold")
def unhold(
    environment: Annotated[str, typer.Argument(help="the environment, e.g. prod")],
    app_name: AppOption = None,
) -> None:
    """Restart automatic promotion into an environment; changes it stopped go on."""
    lifted = BatonApi().unhold(environment, app_name)
    console.print(f"{lifted.scope} is no longer on hold ({lifted.reason})", markup=False)


@app.command("holds")
def holds(as_json: Json = False) -> None:
    """The holds on every environment: where, for which app, why, by whom and since when."""
    found = BatonApi().holds()
    if as_json:
        from pydantic import TypeAdapter

        from baton.holds import Hold

        print(TypeAdapter(list[Hold]).dump_json(found, indent=2).decode())
        return
    if not found:
        console.print("nothing is on hold")
    for h in found:
        since = f" since {h.at:%Y-%m-%d %H:%M}" if h.at else ""
        line = f"{h.environment:<10} {h.app or 'every app':<14} {h.reason} (by {h.by}{since})"
        console.print(line, markup=False)


@app.command("login")
def login(
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="read the token from standard input")
    ] = False,
) -> None:
    """Keep your Baton API token (or OIDC token) for later commands, readable by you only."""
    token = sys.stdin.readline() if token_stdin else typer.prompt("token", hide_input=True)
    caller = BatonApi(token=token.strip()).me()
    path = store_token(token)
    console.print(f"logged in as {caller['user']} (via {caller['via']}); token kept in {path}")


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option("--user", help="whom the token is for")],
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="valid for, e.g. 12h, 30d; default: until revoked"),
    ] = None,
    description: Annotated[str, typer.Option(help="what it is for")] = "",
    for_file: Annotated[
        bool,
        typer.Option(
            "--for-file",
            help="store nothing: print the token's line for the API's token file "
            "(BATON_TOKENS_FILE) instead; with -q, the token then the line",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print the token only")] = False,
) -> None:
    """Create an API token for a person or a bot; it is shown this once and kept hashed."""
    from baton import tokens

    lifetime = tokens.parse_duration(expires) if expires else None
    if for_file and description:
        raise BadRequest(
            "a token file keeps no description: drop --description and put it on a `#` comment "
            "line above the token's line"
        )
    line = None
    if for_file:
        created, line = tokens.create_for_file(user, lifetime)
    else:
        created = _tokens().create(user, lifetime, description)
    if quiet:
        print(created.token)
        if line:
            print(line)
        return
    record = created.record
    forever = "until its line is removed" if line else "until revoked"
    until = f"until {record.expires_at:%Y-%m-%d %H:%M} UTC" if record.expires_at else forever
    console.print(f"token {record.id} for {record.user}, valid {until}:", highlight=False)
    print(created.token)
    console.print("it is shown only now: hand it to its holder (BATON_TOKEN or `baton login`)")
    if line:
        console.print(
            "it is not stored: add this line (no secret in it) to the API's token file, "
            "the `tokens` key of its Secret on Kubernetes; removing it revokes the token:",
            highlight=False,
        )
        print(line)


@token_app.command("ls")
def token_ls(as_json: Json = False) -> None:
    """Every token: id, user, state, created and expiry (never the secret); those of the API's
    token file (BATON_TOKENS_FILE) too, marked `file`."""
    listed = [(r, "db") for r in _tokens().list()]
    if file := _token_file():
        listed += [(r, "file") for r in file.list()]
    if as_json:
        print(
            json.dumps(
                [{**r.model_dump(mode="json"), "source": source} for r, source in listed], indent=2
            )
        )
        return
    now = datetime.now(UTC)
    for r, source in listed:
        created = f"{r.created_at:%Y-%m-%d %H:%M}" if r.created_at else "-"
        expires = f"{r.expires_at:%Y-%m-%d %H:%M}" if r.expires_at else "-"
        console.print(
            f"{r.id}  {r.user:<16} {r.state(now):<8} {source:<4}  {created:<16}  {expires:<16}"
            f"  {r.description}".rstrip(),
            highlight=False,
        )


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="the token's id (token ls)")],
) -> None:
    """Revoke a token: it stops working at once."""
    if (file := _token_file()) and file.find(token_id):
        raise BadRequest(
            f"token {token_id} is in the token file {file.path}: remove its line there (on "
            "Kubernetes, from the `tokens` key of the API's Secret); the API stops accepting it "
            "when it reads the file again"
        )
    record = _tokens().revoke(token_id)
    console.print(f"revoked token {record.id} of {record.user}")


def _tokens() -> tokens.TokenStore:
    """The token store of this Baton (under BATON_HOME): an administrator's path."""
    from baton import tokens

    return tokens.TokenStore(Settings().tokens_file)


def _token_file() -> tokens.TokenFile | None:
    """The API's token file (BATON_TOKENS_FILE) when this shell names one."""
    from baton import tokens

    path = Settings().token_file
    return tokens.TokenFile(path) if path else None


@changes_app.command("rerun")
def changes_rerun(
    change: ChangeId,
    as_: Annotated[str, typer.Option("--as", help="who asks")] = "baton",
) -> None:
    """Validate a change's head again, once what kept its checks from running is fixed (its PR
    shows the commit status `error`)."""
    from baton import changes

    console.print(_client_call(lambda c: changes.rerun(c, change, as_)))


@app.command("render")
def render(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="the app, as configured")],
    env: Annotated[str, typer.Option("--env", help="the environment to render for")],
    commit: Annotated[
        str | None, typer.Option("--commit", help="the app repository at this commit (sha)")
    ] = None,
    source: Annotated[
        Path | None, typer.Option("--source", help="a local checkout of the app repository")
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            "--image",
            help="REPOSITORY@sha256:... to pin; default: the image the environment runs, "
            "else a placeholder digest",
        ),
    ] = None,
    values: Annotated[
        Path | None,
        typer.Option(
            "--values",
            help="a values file in place of the environment's (Kustomize: a kustomization.yaml "
            "in place of its overlay's)",
        ),
    ] = None,
) -> None:
    """Print the manifests CD would commit for APP in an environment (the rollout's own render)."""
    from baton.config import load_config
    from cli import render as render_command

    settings = Settings()
    config = load_config(settings.config_file())
    sys.stdout.write(
        render_command.render(
            config,
            settings,
            app_name,
            env,
            commit=commit,
            source=source,
            image=image,
            values=values,
        )
    )


@config_app.command("check")
def config_check(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="the baton.yaml to validate (default: $BATON_CONFIG, else the defaults)"
        ),
    ] = None,
    config_option: Annotated[
        Path | None,
        typer.Option("--config", help="the same FILE as an option, as `baton images` takes it"),
    ] = None,
    as_json: Json = False,
) -> None:
    """Exit 0 when FILE is valid (with a `warning:` line on stderr for each reader holding a
    secret that writes, each environment nothing deploys to, each cluster verify shared by
    several apps); otherwise print one line per problem and exit 2."""
    from baton.config import ConfigError, config_warnings, load_config

    if file and config_option and file != config_option:
        raise BadRequest(f"two files given ({file} and --config {config_option}): give one")
    file = file or config_option or Settings().config_file()
    try:
        config = load_config(file)
    except ConfigError as exc:
        if as_json:
            print(json.dumps({"file": str(file), "valid": False, "problems": exc.problems}))
        for problem in exc.problems:
            err_console.print(f"{file}: {problem}", markup=False, highlight=False)
        raise typer.Exit(Exit.USAGE) from None
    warnings = config_warnings(config)
    for warning in warnings:
        err_console.print(f"{file}: warning: {warning}", markup=False, highlight=False)
    if as_json:
        apps, environments = [a.name for a in config.apps], [e.name for e in config.environments]
        print(
            json.dumps(
                {
                    "file": str(file),
                    "valid": True,
                    "apps": apps,
                    "environments": environments,
                    "warnings": warnings,
                }
            )
        )
        return
    console.print(
        f"{file}: ok ({len(config.apps)} app(s), {len(config.environments)} environment(s))"
    )


def _print_urls(settings: Settings) -> None:
    console.print(f"Temporal     127.0.0.1:{settings.temporal_port}")
    console.print(f"Temporal UI  {settings.temporal_ui_url}")
    console.print(f"Baton API    {settings.api_url}")
    console.print(f"Data         {settings.home}")


@dev_app.command("up")
def dev_up(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="start in the background")] = False,
) -> None:
    """Start Temporal, Baton's worker and API on 127.0.0.1; Ctrl-C stops them."""
    from baton.config import reader_warnings
    from baton.local.stack import Stack

    stack = Stack()
    for warning in reader_warnings(stack.config):
        err_console.print(f"warning: {warning}", markup=False, highlight=False)
    started = stack.up()
    console.print(f"started: {', '.join(started) or 'nothing (already running)'}")
    _print_urls(stack.settings)
    if detach:
        console.print("stop with `baton dev down`")
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    console.print("Ctrl-C stops everything")
    try:
        while all(pid is not None for pid in stack.status().values()):
            time.sleep(1)
        dead = [name for name, pid in stack.status().items() if pid is None]
        err_console.print(f"{', '.join(dead)} exited: see {stack.log_dir}")
    except KeyboardInterrupt:
        pass
    finally:
        stack.down()
        console.print("stopped")


@dev_app.command("status")
def dev_status(as_json: Json = False) -> None:
    """Show which services of the embedded stack run, and whether its configuration is broken;
    exit 1 when any service is down or the configuration is broken."""
    from baton.local.stack import Stack

    stack = Stack()
    status = stack.status()
    problem = stack.config_problem()
    down = any(pid is None for pid in status.values())
    if as_json:
        services = {name: {"running": pid is not None, "pid": pid} for name, pid in status.items()}
        config = {"file": str(stack.settings.config_file())}
        print(
            json.dumps(
                {
                    "services": services,
                    "temporal_port": stack.settings.temporal_port,
                    "config": {**config, "problem": str(problem) if problem else None},
                }
            )
        )
        raise typer.Exit(1 if down or problem else 0)
    for name, pid in status.items():
        console.print(f"{name:<10} {f'running (pid {pid})' if pid else 'stopped'}")
    if problem is not None:
        err_console.print(
            f"the configuration is broken: {problem}; fix it, then restart the stack "
            "(baton dev down; baton dev up)",
            highlight=False,
        )
    if down or problem:
        raise typer.Exit(1)
    _print_urls(stack.settings)


@dev_app.command("down")
def dev_down() -> None:
    """Stop the embedded stack started with `baton dev up --detach`, and remove the app
    containers its local cluster started."""
    from baton.images import EngineUnavailable
    from baton.local.cluster import remove_app_containers
    from baton.local.stack import Stack

    stack = Stack()
    stopped = stack.down()
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    try:
        removed = remove_app_containers(stack.settings.home)
    except EngineUnavailable as exc:
        console.print(f"app containers: none removed: {exc}", markup=False, highlight=False)
        return
    line = f"removed app containers: {', '.join(removed) or 'none were there'}"
    console.print(line, markup=False, highlight=False)


@app.command("demo")
def demo(
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="play the configured reviewers")
    ] = False,
    app_name: Annotated[
        str | None,
        typer.Option("--app", help="the app to change (default: the first in the config)"),
    ] = None,
    as_json: Json = False,
) -> None:
    """Carry one change of a sample app through PR, CI, dev, staging and prod."""
    from baton.config import load_config
    from baton.errors import ConfigurationError
    from baton.forges import create_forge
    from baton.local.forge import LocalForge
    from baton.local.stack import Stack
    from cli.demo import Demo, seed_repositories

    settings = Settings()
    say = (lambda line: None) if as_json else (lambda line: console.print(line, highlight=False))
    config = load_config(settings.config_file())
    if app_name is not None:
        config.app(app_name)  # an unknown app fails here, before anything starts
    stack = Stack(settings)
    started = stack.up()
    if started:
        say(f"started the embedded stack: {', '.join(started)} (stop it with `baton dev down`)")
    forge = create_forge(config.forge, settings)
    if not isinstance(forge, LocalForge):
        raise ConfigurationError("baton demo runs on the local forge: set forge.kind: local")
    seed_repositories(forge, config)

    async def run(client: Client) -> DemoSummary:
        with _live_line(quiet=as_json) as live:
            runner = Demo(
                client,
                config,
                settings,
                forge,
                auto_approve=auto_approve,
                say=say,
                live=live,
                app=app_name,
            )
            return await runner.run()

    summary = _client_call(run)
    if as_json:
        print(summary.model_dump_json(indent=2))
    else:
        say(
            f"change {summary.change_id}: {summary.state}"
            + (f" ({summary.reason})" if summary.reason else "")
        )
        for report in summary.environments:
            say(f"  {report.environment:<8} {report.url}  →  {report.version}")
        say(f"Temporal UI: {summary.temporal_ui}")
    if summary.state != "completed":
        raise typer.Exit(1)


def run() -> int:
    """Run the command line and return its exit code (`cli.exits`); errors become one line on
    stderr, never a traceback."""
    try:
        app()
    except BatonError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        return exit_code(exc)
    except SystemExit as done:  # typer ends every command this way
        if isinstance(done.code, str):
            err_console.print(done.code, markup=False, highlight=False)
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    return 0


def main() -> None:
    """Entry point (`baton`): `run`, then leave at once.

    The Temporal client's Rust threads can crash the interpreter's teardown of a short-lived
    process (SIGSEGV or SIGABRT after the command's work is done: temporalio/sdk-python#300), so
    a command that has finished exits without one.
    """
    code = run()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
