"""The one comment Baton keeps on a change's pull request: where the change is, per environment.

`render` writes it from what the change's workflows publish (`baton.changes.ChangeDetail`): the
change's state, each environment's outcome with its GitOps PR, the gate the change or its
rollout waits at and on whom, and links to the Temporal UI. `marker` is the hidden HTML comment
the forge adapters find it by (`Forge.upsert_comment`), so it is edited in place, never posted
twice. Pure: no I/O.
"""

from __future__ import annotations

from urllib.parse import quote

from baton.changes import ChangeDetail
from baton.models import Gate, GitOpsPullRequest, RolloutOutcome

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


def render(detail: ChangeDetail, ui_url: str, namespace: str) -> str:
    """The comment's markdown, ending with the change's `marker`."""
    change = detail.change
    link = ui_link(ui_url, namespace, change.id)
    state = f"**{change.state}**" + (f": {change.reason}" if change.reason else "")
    lines = [f"### Baton: [{change.id}]({link})", "", state, ""]
    gate = _gate(detail)
    if gate is not None:
        on = f" (waiting on {', '.join(gate.waiting_on)})" if gate.waiting_on else ""
        lines += [f"⏳ {gate.description}{on}", ""]
    environments = change.environments or [r.environment for r in change.rollouts]
    if environments:
        lines += ["| environment | outcome | GitOps PR |", "|---|---|---|"]
        results = {r.environment: r for r in change.rollouts}
        for env in environments:
            result = results.get(env)
            rollout = (
                detail.rollout if detail.rollout and detail.rollout.environment == env else None
            )
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
    if change.current_rollout:
        links.append(f"[rollout]({ui_link(ui_url, namespace, change.current_rollout)})")
    lines += ["Temporal UI: " + " · ".join(links), "", marker(change.id)]
    return "\n".join(lines)


def _gate(detail: ChangeDetail) -> Gate | None:
    """What the change waits for: its own gate (the merge), else its running rollout's."""
    if detail.change.gate is not None:
        return detail.change.gate
    if detail.rollout is not None and detail.change.current_rollout:
        return detail.rollout.gate
    return None


def _pr_link(pr: GitOpsPullRequest | None) -> str:
    return f"[#{pr.number}]({pr.url})" if pr else ""
