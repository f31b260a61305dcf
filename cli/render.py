"""`baton render`: the manifests CD would commit for an app in an environment, printed locally.

The templates come from the app repository at a commit, or from a local checkout, packaged as
CI packages them; everything after that is the rollout's own render
(`baton.environment_render`), so the output is byte for byte what the rollout commits.
"""

from __future__ import annotations

import re
import tarfile
import tempfile
from pathlib import Path

from git import GitCommandError, InvalidGitRepositoryError, NoSuchPathError, Repo

from baton.artifacts import commit_version, package_chart
from baton.bundles import package_bundle, unpack_bundle
from baton.config import AppConfig, BatonConfig
from baton.environment_render import (
    deployed_image,
    read_inputs,
    render_for_environment,
)
from baton.errors import BadRequest
from baton.forges import create_forge
from baton.gitops import GitOpsRepo
from baton.models import PinnedImage
from baton.registry import Registry
from baton.settings import Settings
from baton.workspace import Workspace

_IMAGE = re.compile(r"^(?P<repository>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")
_COMMIT = re.compile(r"^[0-9a-f]{4,40}$")


def render(
    config: BatonConfig,
    settings: Settings,
    app_name: str,
    env_name: str,
    *,
    commit: str | None = None,
    source: Path | None = None,
    image: str | None = None,
    values: Path | None = None,
) -> str:
    """The manifests the rollout of `app_name` into `env_name` would commit (multi-document YAML).

    Exactly one of `commit` (the app repository at that commit, full or abbreviated sha) and
    `source` (a local checkout of it) gives the templates. `image` is `repository@sha256:<hex>`;
    without it, the image the environment runs (else a placeholder digest). `values` replaces
    the environment's values file. Raises BatonError subclasses, each a one-line message.
    """
    app, env = config.app(app_name), config.environment(env_name)
    if (commit is None) == (source is None):
        raise BadRequest(
            "give the templates with exactly one of --commit SHA (the app repository at a "
            "commit) or --source DIR (a local checkout of it)"
        )
    forge = create_forge(config.forge, settings)
    registry = Registry.configured(config.registry)
    workspace = Workspace(settings.home / "work")
    gitops = GitOpsRepo(config.gitops, forge, workspace).of(env.name)
    path = gitops.manifests_path(app, env)
    inputs = read_inputs(gitops, app, env, _read(values) if values else None)
    pinned = _image(image) if image else deployed_image(_repository(config, app), path, gitops)
    with tempfile.TemporaryDirectory(prefix="baton-render-") as tmp:
        root, sha = (
            _checkout(workspace, forge.clone_url(app.repo), app, commit)
            if commit is not None
            else _local(source or Path("."))
        )
        templates = _templates(app, root, sha, Path(tmp), registry)
        rendered = render_for_environment(
            app,
            env,
            templates,
            inputs=inputs,
            image=pinned,
            deployed=gitops.read(path),
            registry=registry,
            registry_url=config.registry.url,
        )
    return rendered.manifests


def _templates(
    app: AppConfig, root: Path, commit: str | None, scratch: Path, registry: Registry
) -> Path:
    """The app's templates as CD renders them: a chart packaged as CI publishes it for `commit`
    (version and appVersion set), unpacked; a Kustomize bundle as CI publishes it, unpacked."""
    if app.kustomize:
        _within(root, app.kustomize)
        return unpack_bundle(package_bundle(root, app.kustomize), scratch / "bundle")
    assert app.chart is not None
    chart = _within(root, app.chart)
    if commit is None:  # not a git checkout: no commit to version the chart by
        return chart
    package = package_chart(
        chart, commit_version(chart, commit), commit[:12], scratch / "package", registry=registry
    )
    with tarfile.open(package) as archive:
        archive.extractall(scratch / "chart", filter="data")
    (unpacked,) = (scratch / "chart").iterdir()
    return unpacked


def _within(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.is_dir():
        raise BadRequest(f"{path} is not a directory: is {root} a checkout of the app repository?")
    return path


def _checkout(
    workspace: Workspace, clone_url: str, app: AppConfig, commit: str
) -> tuple[Path, str]:
    if not _COMMIT.match(commit):
        raise BadRequest(f"--commit {commit!r} is not a commit sha (hex, at least 4 digits)")
    mirror = workspace.mirror(app.repo, clone_url)
    try:
        sha = mirror.git.rev_parse("--verify", "--quiet", f"{commit}^{{commit}}")
    except GitCommandError:  # unknown or ambiguous
        raise BadRequest(f"no commit {commit} in the app repository {app.repo}") from None
    return workspace.checkout(app.repo, clone_url, sha), sha


def _local(source: Path) -> tuple[Path, str | None]:
    """A local directory and the commit its git checkout is at (None: not a git checkout)."""
    if not source.is_dir():
        raise BadRequest(f"--source {source} is not a directory")
    try:
        return source, Repo(source, search_parent_directories=True).head.commit.hexsha
    except (InvalidGitRepositoryError, NoSuchPathError, ValueError):
        return source, None


def _image(reference: str) -> PinnedImage:
    match = _IMAGE.match(reference)
    if match is None:
        raise BadRequest(
            f"--image {reference!r} is not pinned by digest: give REPOSITORY@sha256:<64 hex>"
        )
    return PinnedImage(repository=match["repository"], digest=match["digest"])


def _repository(config: BatonConfig, app: AppConfig) -> str:
    return f"{config.registry.url}/{app.image}"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"--values {path}: cannot read it ({exc})") from None
