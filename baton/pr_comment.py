"""The one comment Baton keeps on a change's pull request: where the change is, per environment.

`render` writes it from what the change's workflows publish (`baton.changes.ChangeDetail`): the
change's state, each environment's outcome with its GitOps PR, the gates the change and its
rollouts under way wait at (a parallel stage runs several) and on whom, and links to the Temporal
UI and the change's page on the board. `marker` is the hidden HTML comment
the forge adapters find it by (`Forge.upsert_comment`), so it is edited in place, never posted
twice. Pure: no I/O.
"""

from __future__ import annotations

from urllib.parse import quote

from baton.changes import ChangeDetail, running_rollouts
from baton.models import Gate, GitOpsPullRequest, RolloutOutcome
from baton.temporal import rollout_environment

OUTCOMES: dict[RolloutOutcome, str] = {
    "deployed": "✅ deployed",
    "failed": "❌ failed",
    "rejected": "⛔ rejected",
    "superseded": "⏭ superseded",
    "aborted": "⏹ aborted",
}


def marker(change_id: str) -> str:
    """The hidden line that names the change's comment (markdown renders nothing of it)."""
    return f"<!-- baton:{change_id} -->"


def ui_link(ui_url: str, namespace: str, workflow_id: str) -> str:
    """A workflow's page in the Temporal UI."""
    return f"{ui_url}/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}"


def board_link(api_url: str, change_id: str) -> str:
    """A change's page on the board the API serves at `api_url`."""
    return f"{api_url.rstrip('/')}/board/changes/{change_id.removeprefix('change/')}"


def render(detail: ChangeDetail, ui_url: str, namespace: str, board_url: str | None = None) -> str:
    """The comment's markdown, ending with the change's `marker`; with `board_url` (the API's
    URL), a link to the change's page on the board."""
    change = detail.change
    link = ui_link(ui_url, namespace, change.id)
    state = f"**{change.state}**" + (f": {change.reason}" if change.reason else "")
    lines = [f"### Baton: [{change.id}]({link})", "", state, ""]
    for gate in _gates(detail):
        on = f" (waiting on {', '.join(gate.waiting_on)})" if gate.waiting_on else ""
        lines += [f"⏳ {gate.description}{on}", ""]
    environments = change.environments or [r.environment for r in change.rollouts]
    if environments:
        lines += ["| environment | outcome | GitOps PR |", "|---|---|---|"]
        results = {r.environment: r for r in change.rollouts}
        running = {r.environment: r for r in detail.running_rollouts}
        for env in environments:
            result = results.get(env)
            rollout = running.get(env)
            if result is not None:
                outcome = OUTCOMES.get(result.outcome, result.outcome)
                pr = result.gitops_pr
            elif rollout is not None:
                outcome, pr = f"⏳ {rollout.name}", rollout.gitops_pr
            else:
                outcome, pr = "· not yet", None
            lines.append(f"| {env} | {outcome} | {_pr_link(pr)} |")
        lines.append("")
    links = [f"[change]({link})"]
    ids = running_rollouts(change)
    for workflow_id in ids:  # named by environment when a parallel stage runs several
        name = f"rollout to {rollout_environment(workflow_id)}" if len(ids) > 1 else "rollout"
        links.append(f"[{name}]({ui_link(ui_url, namespace, workflow_id)})")
    lines += ["Temporal UI: " + " · ".join(links), ""]
    if board_url:
        lines += [f"Board: [{change.id}]({board_link(board_url, change.id)})", ""]
    lines.append(marker(change.id))
    return "\n".join(lines)


def _gates(detail: ChangeDetail) -> list[Gate]:
    """What the change waits for: its own gate (the merge, a hold, its lane), and each of its
    rollouts under way's."""
    gates = [detail.change.gate] if detail.change.gate is not None else []
    if running_rollouts(detail.change):
        gates += [r.gate for r in detail.running_rollouts if r.gate is not None]
    return gates


def _pr_link(pr: GitOpsPullRequest | None) -> str:
    return f"[#{pr.number}]({pr.url})" if pr else ""
