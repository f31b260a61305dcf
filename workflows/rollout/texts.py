"""What a rollout writes on the forge: the bodies of its GitOps PR and of the revert PR."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from baton.config import ApprovalPolicy
    from baton.models import OmittedObject, Rendered, RolloutInput

from workflows.record import ui_link


def deploy_body(input: RolloutInput, rollout_id: str, rendered: Rendered) -> str:
    """The GitOps PR's body: what it deploys, why it is sensitive, the fields that differ between
    renders, the template diff from what the environment runs, and the rendered diff."""
    return pr_body(
        input,
        rollout_id,
        f"Deploys **{input.app.name}** `{input.artifact.commit[:12]}` to "
        f"**{input.environment.name}** (image `{input.artifact.image_ref}`)"
        + clusters_line(input, rendered),
        *security_section(input.environment.approvals, rendered.sensitive),
        *unstable_section(input.environment.name, rendered.unstable),
        *(
            ["### Template changes", "", rendered.template_diff_markdown, ""]
            if rendered.template_diff_markdown
            else []
        ),
        "### Rendered manifests",
        "",
        rendered.diff_markdown,
        *omitted_section(rendered.omitted),
    )


def clusters_line(input: RolloutInput, rendered: Rendered) -> str:
    """ "." for a one-cluster environment; else which clusters get the manifests, and where."""
    clusters = [c.name for c in input.environment.clusters]
    if not clusters:
        return "."
    paths = ", ".join(f"`{p}`" for p in (rendered.path, *rendered.also_paths))
    return f", in clusters {', '.join(clusters)}: the same manifests at {paths}."


def revert_body(
    input: RolloutInput, rollout_id: str, revision: str, pr_number: int, cause: str
) -> str:
    """The revert PR's body: what it rolls back, to what, and why."""
    return pr_body(
        input,
        rollout_id,
        f"Rolls **{input.app.name}** `{input.artifact.commit[:12]}` back in "
        f"**{input.environment.name}**: the manifests return to what they were before "
        f"`{revision[:12]}` (GitOps PR #{pr_number}): to a placeholder "
        "without objects if this was its first deploy there.",
        f"Why: {cause}",
    )


def pr_body(input: RolloutInput, rollout_id: str, *paragraphs: str) -> str:
    """A GitOps PR body: what it does, links to the change and rollout, the routing trailer.

    The `Baton-Rollout` trailer tells the API which rollout a review or merge of the PR is for.
    """
    change = input.change_id
    links = (
        f"Change: [{change}]({ui_link(input.ui_url, input.namespace, change)}) · "
        f"Rollout: [{rollout_id}]({ui_link(input.ui_url, input.namespace, rollout_id)})"
    )
    return "\n".join(
        [paragraphs[0], "", links, "", *paragraphs[1:], "", f"Baton-Rollout: {rollout_id}"]
    )


def security_section(policy: ApprovalPolicy, sensitive: list[str]) -> list[str]:
    """The PR body's warning about a security-sensitive diff, and what it needs."""
    if not sensitive:
        return []
    security = policy.security
    needs = (
        f"It needs {security.required} extra approval(s)"
        + (f" from {', '.join(security.approvers)}" if security.approvers else "")
        + "."
        if security.required
        else ""
    )
    reasons = [f"- {reason}" for reason in sensitive]
    return ["### ⚠ Security-sensitive", "", *reasons, "", needs, ""]


def unstable_section(environment: str, unstable: list[str]) -> list[str]:
    """The PR body's note on objects that render differently from the same inputs."""
    if not unstable:
        return []
    return [
        "### Fields that differ between two renders of the same inputs",
        "",
        (
            "Random values or timestamps in the templates. They keep the value "
            f"{environment} runs, so they change nothing here and count as no change:"
        ),
        "",
        *[f"- {line}" for line in unstable],
        "",
    ]


def omitted_section(omitted: list[OmittedObject]) -> list[str]:
    """The PR body's list of objects the chart renders that the manifests leave out, and why."""
    if not omitted:
        return []
    lines = [f"- `{o.key}`: {o.reason}" for o in omitted]
    return ["", "#### Left out of the manifests", "", *lines]
