"""An app rendered for one environment, exactly as CD commits it.

One code path for the rollout's render step and for `baton render`: the app's templates (the
published chart, or one packaged from a commit as CI packages it) rendered twice with the
environment's inputs and the image pinned by digest, the fields the two renders disagree on
found, and the manifests validated.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from baton import artifacts, bundles
from baton.bundles import KUSTOMIZATION_FILES
from baton.config import AppConfig, EnvironmentConfig, KubernetesConfig
from baton.diff import (
    FieldPath,
    TemplateDiff,
    describe_unstable,
    diff_trees,
    keep_deployed,
    unstable_fields,
)
from baton.errors import DeployConfigError, ExternalImage, NondeterministicRender
from baton.gitops import RENDERED_FROM, GitOpsRepo, RenderedFrom, beside
from baton.models import Artifact, OmittedObject, PinnedImage
from baton.references import mirror_entry_for, registry_of
from baton.registry import Registry
from baton.render import (
    HelmRenderer,
    KustomizeRenderer,
    Renderer,
    containers,
    validate_manifests,
)

PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
"""The image digest `baton render` pins when neither `--image` nor a deployed image gives one."""


def read_inputs(
    gitops: GitOpsRepo, app: AppConfig, env: EnvironmentConfig, values: str | None = None
) -> dict[str, str]:
    """The environment's inputs, path → content: a Helm app's values file in the GitOps
    repository (or `values` given in its place); a Kustomize app's overlay, every file of its
    directory (`values` in place of its kustomization.yaml)."""
    if app.kustomize is not None:
        return _read_overlay(gitops, app, env, values)
    path = gitops.values_path(app, env)
    content = values if values is not None else gitops.read(path)
    if content is None:
        raise DeployConfigError(
            f"{path} is missing in the GitOps repository {gitops.config.repo}: "
            f"add {env.name}'s values for {app.name} there"
        )
    return {path: content}


def deployed_image(repository: str, manifests_path: str, gitops: GitOpsRepo) -> PinnedImage:
    """The image of `repository` the environment runs: from its `rendered-from.json`, else the
    first `repository@sha256:...` its manifests name, else a placeholder digest."""
    record = RenderedFrom.parse(gitops.read(beside(manifests_path, RENDERED_FROM)))
    if record is not None and record.image.startswith(f"{repository}@"):
        return PinnedImage(repository=repository, digest=record.image.partition("@")[2])
    pinned = re.search(
        rf"{re.escape(repository)}@(sha256:[0-9a-f]{{64}})", gitops.read(manifests_path) or ""
    )
    return PinnedImage(
        repository=repository, digest=pinned.group(1) if pinned else PLACEHOLDER_DIGEST
    )


@dataclass(frozen=True)
class EnvironmentRender:
    manifests: str  # what CD commits: multi-document YAML
    unstable: dict[str, list[FieldPath]]  # object key → fields two renders disagreed on
    omitted: list[OmittedObject]  # what the templates render that an install leaves out, and why


def _read_overlay(
    gitops: GitOpsRepo, app: AppConfig, env: EnvironmentConfig, kustomization: str | None
) -> dict[str, str]:
    directory = gitops.overlay_path(app, env)
    files = gitops.read_tree(directory)
    if kustomization is not None:
        files = {
            **{k: v for k, v in files.items() if PurePosixPath(k).name not in KUSTOMIZATION_FILES},
            f"{directory}/kustomization.yaml": kustomization,
        }
    if not any(
        PurePosixPath(k) == PurePosixPath(directory, n) for k in files for n in KUSTOMIZATION_FILES
    ):
        raise DeployConfigError(
            f"{directory}/kustomization.yaml is missing in the GitOps repository "
            f"{gitops.config.repo}: add {env.name}'s overlay for {app.name} there "
            "(a kustomization of kind Component)"
        )
    return files


def renderer_for(
    app: AppConfig,
    templates: Path,
    *,
    env: EnvironmentConfig | None = None,
    registry: Registry | None = None,
    source: str | None = None,
    components: Sequence[Path] = (),
) -> Renderer:
    """The app's renderer for its templates: the chart directory, or the root of its Kustomize
    bundle (or repository) holding its kustomization, with `components` included.

    A chart renders for `env`'s Kubernetes (CI's defaults without one), builds its dependencies
    from `registry`, and is named `source` in messages (default: its directory).
    """
    if app.chart:
        return HelmRenderer(
            templates,
            image_values=app.helm.image_values,
            kubernetes=env.kubernetes if env else KubernetesConfig(),
            registry=registry,
            source=source,
        )
    assert app.kustomize is not None  # the config holds a chart or a kustomization
    return KustomizeRenderer(templates / app.kustomize, image_name=app.image, components=components)


def fetch_templates(artifact: Artifact, dest: Path, registry: Registry) -> Path:
    """The templates `artifact` published, pulled by digest into `dest`: its chart's directory,
    or its Kustomize bundle's root."""
    if artifact.kustomize_ref is not None:
        return bundles.fetch_bundle(artifact, dest, registry)
    return artifacts.fetch_chart(artifact, dest, registry)


def render_for_environment(
    app: AppConfig,
    env: EnvironmentConfig,
    templates: Path,
    *,
    inputs: Mapping[str, str],
    image: PinnedImage,
    deployed: str | None,
    registry: Registry | None = None,
    source: str | None = None,
    registry_url: str | None = None,
) -> EnvironmentRender:
    """Render `templates` (see `renderer_for`) for `env` with its `inputs` (its values file, or
    its overlay's files: path → content) and `image`, twice; `deployed` is what the environment's manifests hold now.

    Raises `NondeterministicRender` naming each object and field that differs between the two
    renders, unless the app sets `nondeterministic: accept`: then those fields keep the value
    `deployed` holds, so they neither change nor count as a change on every rollout. Raises
    `DeployConfigError` for manifests that fail validation, `RenderFailed` from the tool.
    Raises `ExternalImage` when `env` allows only Baton's registry (`registry_url`, host[:port];
    default: the registry of `image`) and a container (init and ephemeral ones included)
    references an image from another.
    """
    with tempfile.TemporaryDirectory(prefix="baton-inputs-") as tmp:
        files, components = [], []
        if app.kustomize is not None:
            # The overlay's files at their paths: its kustomization loads them relatively.
            for path, content in inputs.items():
                file = Path(tmp) / path
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_text(content, encoding="utf-8")
            kustomizations = [p for p in inputs if Path(p).name in KUSTOMIZATION_FILES]
            overlay = Path(tmp) / min(kustomizations, key=lambda p: len(Path(p).parts))
            components.append(overlay.parent)
        else:
            for index, (path, content) in enumerate(inputs.items()):
                file = Path(tmp) / f"{index}-{Path(path).name}"
                file.write_text(content, encoding="utf-8")
                files.append(file)
        renderer = renderer_for(
            app, templates, env=env, registry=registry, source=source, components=components
        )
        if isinstance(renderer, HelmRenderer):
            # Dependencies first: the two renders below then find nothing to build, so they
            # can run side by side (each is mostly the tool's own process).
            renderer.build_dependencies()
        documents: list[Any] | None = None  # the first render's, parsed
        with ThreadPoolExecutor(max_workers=2) as renders:
            if isinstance(renderer, HelmRenderer):
                # helm's output twice; the second is read only if it differs from the first.
                second_output = renders.submit(
                    renderer.helm_output, app.name, env.namespace, values_files=files, image=image
                )
                output = renderer.helm_output(
                    app.name, env.namespace, values_files=files, image=image
                )
                render = renderer.finish(output, image)
                first, omitted, documents = render.manifests, render.omitted, render.documents
                other = second_output.result()
                second = first if other == output else renderer.finish(other, image).manifests
            else:
                second_render = renders.submit(
                    renderer.render, app.name, env.namespace, values_files=files, image=image
                )
                first = renderer.render(app.name, env.namespace, values_files=files, image=image)
                omitted = []
                second = second_render.result()
    unstable = unstable_fields(first, second) if first != second else {}
    if unstable and app.nondeterministic == "reject":
        raise NondeterministicRender(
            f"{app.name} does not render the same twice for {env.name}: "
            f"{'; '.join(describe_unstable(unstable))} differ between two renders of the same "
            "inputs (random values or timestamps in the templates): set them in the "
            f"environment's values, or set nondeterministic: accept on app {app.name} to deploy "
            f"them keeping the values {env.name} runs"
        )
    if unstable:
        manifests, documents = keep_deployed(first, deployed, unstable), None
    else:
        manifests = first
    problems = validate_manifests(manifests, env.kubernetes.version, documents)
    if problems:
        raise DeployConfigError(
            f"rendered manifests for {env.name} are invalid: {'; '.join(problems[:5])}"
        )
    if not env.allows_external_images:
        registry_url = registry_url or registry_of(image.repository)
        _refuse_external_images(manifests, env, registry_url, documents)
    return EnvironmentRender(manifests=manifests, unstable=unstable, omitted=omitted)


def _refuse_external_images(
    manifests: str,
    env: EnvironmentConfig,
    registry_url: str,
    documents: Sequence[Any] | None = None,
) -> None:
    """Raise `ExternalImage` naming every container whose image is not from `registry_url`
    (`documents`: the manifests parsed, when they are)."""
    external = [
        (k, n, i) for k, n, i in containers(manifests, documents) if registry_of(i) != registry_url
    ]
    if not external:
        return
    named = "; ".join(f"{key} container {name} runs {image}" for key, name, image in external)
    entries = ", ".join(dict.fromkeys(mirror_entry_for(image) for _, _, image in external))
    raise ExternalImage(
        f"{env.name} runs only images from {registry_url} (images.allow_external: false): "
        f"{named}: add {entries} to images.mirror, run `baton images mirror` and reference "
        f"{registry_url}/mirror/..., or set images.allow_external: true on {env.name}"
    )


def diff_templates(
    previous: RenderedFrom | None,
    old_templates: Path | None,
    current: RenderedFrom,
    new_templates: Path,
) -> TemplateDiff:
    """The template diff from what the environment runs (`previous`, its templates unpacked at
    `old_templates`; None: nothing yet) to `current`, the environment's inputs included."""
    inputs = {
        path: ((previous.inputs.get(path) if previous else None), current.inputs.get(path))
        for path in sorted({*(previous.inputs if previous else {}), *current.inputs})
    }
    return diff_trees(
        old_templates,
        new_templates,
        before=previous.templates.describe() if previous else "nothing deployed",
        after=current.templates.describe(),
        extra=inputs,
    )
