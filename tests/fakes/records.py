"""Records the delivery pipeline produces (an artifact, an environment's render), made up: for
tests that need one but not the work that makes it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from baton.models import Artifact, ChangeStatus, Rendered, RolloutInput


def fake_artifact(
    app: str, commit: str, *, registry: str = "r", created_at: datetime | None = None
) -> Artifact:
    """`app`'s artifact for `commit` in `registry`, with made-up digests; nothing is pushed."""
    image = f"{registry}/{app}"
    image_digest = "sha256:" + "0" * 64
    return Artifact(
        app=app,
        commit=commit,
        image=image,
        image_digest=image_digest,
        image_ref=f"{image}@{image_digest}",
        chart_ref=f"oci://{registry}/charts/{app}",
        chart_version=f"0.1.0-g{commit[:12]}",
        chart_digest="sha256:" + "1" * 64,
        created_at=created_at or datetime.now(UTC),
    )


def fake_rendered(rollout: RolloutInput, sensitive: list[str] | None = None) -> Rendered:
    """What rendering `rollout` returns when its Deployment changed; nothing is stored."""
    env, app = rollout.environment.name, rollout.app.name
    return Rendered(
        path=f"rendered/{env}/{app}/manifests.yaml",
        content_ref="x",
        content_hash="y",
        diff_markdown=f"changed: Deployment/{env}/{app}",
        changed_objects=1,
        sensitive=sensitive or [],
    )


def fake_change(app: str, pr: int, **fields: Any) -> ChangeStatus:
    """Change `app`#`pr` by alice as its `status` memo shows it, promoting unless `fields` say
    otherwise."""
    status: dict[str, Any] = {
        "id": f"change/{app}/{pr}",
        "app": app,
        "repo": app,
        "pr_number": pr,
        "author": "alice",
        "head_sha": "f" * 40,
        "state": "promoting",
    }
    return ChangeStatus.model_validate(status | fields)
