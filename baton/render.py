"""Rendering an app's templates into Kubernetes manifests, and validating them.

`HelmRenderer` and `KustomizeRenderer` implement the `Renderer` protocol; the app's config picks
one. Both pin the image by digest, so the rendered manifests name exactly the image CI built.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, VersionNotSupportedError

from baton.errors import ConfigurationError
from baton.models import PinnedImage
from baton.tools import find_tool, run_tool

log = logging.getLogger(__name__)

RENDER_TIMEOUT_S = 120


class RenderFailed(ConfigurationError):
    """helm or kustomize could not render the templates; `output` holds the tool's own words."""

    def __init__(self, what: str, output: str) -> None:
        last = next((line for line in reversed(output.splitlines()) if line.strip()), "no output")
        super().__init__(f"{what} failed: {last.strip()}")
        self.output = output


class ManifestError(ConfigurationError):
    """Rendered manifests that cannot be read as Kubernetes objects."""


class Renderer(Protocol):
    def render(
        self,
        release: str,
        namespace: str,
        *,
        values_files: Sequence[Path] = (),
        overrides: Mapping[str, str] | None = None,
        image: PinnedImage | None = None,
    ) -> str:
        """The manifests (multi-document YAML) for one release of the app in `namespace`."""
        ...


class HelmRenderer:
    """`helm template` of a chart directory; overrides are passed as `--set-string`."""

    def __init__(
        self,
        chart_dir: Path,
        *,
        image_keys: tuple[str, str] = ("image.repository", "image.digest"),
        kube_version: str | None = None,
    ) -> None:
        self.chart_dir = Path(chart_dir)
        self.image_keys = image_keys
        self.kube_version = kube_version

    def render(
        self,
        release: str,
        namespace: str,
        *,
        values_files: Sequence[Path] = (),
        overrides: Mapping[str, str] | None = None,
        image: PinnedImage | None = None,
    ) -> str:
        command = [find_tool("helm"), "template", release, str(self.chart_dir)]
        if namespace:
            command += ["--namespace", namespace]
        if self.kube_version:
            command += ["--kube-version", self.kube_version]
        for values in values_files:
            command += ["--values", str(values)]
        settings = dict(overrides or {})
        if image is not None:
            repository_key, digest_key = self.image_keys
            settings |= {repository_key: image.repository, digest_key: image.digest}
        for key, value in settings.items():
            command += ["--set-string", f"{key}={_helm_escape(value)}"]
        return _run_tool(f"helm template of {self.chart_dir}", command)


class KustomizeRenderer:
    """`kubectl kustomize` of a directory through a generated overlay.

    The overlay sets the namespace, pins the image (`images:` with a digest), includes
    `components` (directories whose kustomization is `kind: Component`: an environment's inputs
    from the GitOps repository, or CI's test inputs) and applies patch files given as
    `values_files` (strategic-merge, or JSON6902 with a target). Components and patches play the
    part Helm values files play for a chart. `image_name` is the image as the kustomization's
    containers name it; it defaults to the pinned repository.
    """

    def __init__(
        self,
        kustomize_dir: Path,
        *,
        image_name: str | None = None,
        components: Sequence[Path] = (),
    ) -> None:
        self.kustomize_dir = Path(kustomize_dir)
        self.image_name = image_name
        self.components = [Path(c) for c in components]

    def render(
        self,
        release: str,
        namespace: str,
        *,
        values_files: Sequence[Path] = (),
        overrides: Mapping[str, str] | None = None,
        image: PinnedImage | None = None,
    ) -> str:
        what = f"kustomize build of {self.kustomize_dir}"
        if overrides:
            raise RenderFailed(
                what,
                f"value overrides {sorted(overrides)} cannot apply to a Kustomize app: "
                "put the change in a patch file of the environment",
            )
        with tempfile.TemporaryDirectory(prefix="baton-kustomize-") as overlay:
            # kustomize refuses absolute resource paths, so point at the base relatively.
            kustomization: dict[str, Any] = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [_relative(self.kustomize_dir, overlay)],
            }
            if self.components:
                kustomization["components"] = [_relative(c, overlay) for c in self.components]
            if namespace:
                kustomization["namespace"] = namespace
            if image is not None:
                kustomization["images"] = [
                    {
                        "name": self.image_name or image.repository,
                        "newName": image.repository,
                        "digest": image.digest,
                    }
                ]
            patches = []
            for i, patch in enumerate(values_files):
                # Patch files must sit inside the overlay's root to be loadable.
                name = f"patch-{i}-{Path(patch).name}"
                shutil.copyfile(patch, Path(overlay) / name)
                patches.append({"path": name})
            if patches:
                kustomization["patches"] = patches
            (Path(overlay) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
            command = [find_tool("kubectl"), "kustomize", overlay]
            manifests = _run_tool(what, command)
        if image is not None and image.ref not in _container_images(manifests):
            raise RenderFailed(
                what,
                f"no container runs {image.ref}: no container image is named "
                f"{self.image_name or image.repository!r}; set the app's image to the name the "
                "kustomization's containers use",
            )
        return manifests


def _relative(directory: Path, overlay: str) -> str:
    return os.path.relpath(Path(directory).resolve(), overlay)


def _container_images(manifests: str) -> set[str]:
    """The images of every container and init container in the manifests' pod templates."""
    images: set[str] = set()
    for obj in yaml.safe_load_all(manifests):
        spec = (obj or {}).get("spec") or {}
        pod = ((spec.get("jobTemplate") or {}).get("spec") or spec).get("template") or {}
        pod_spec = pod.get("spec") or {}
        for container in [*pod_spec.get("containers", []), *pod_spec.get("initContainers", [])]:
            images.add(str(container.get("image")))
    return images


def validate_manifests(yaml_text: str, kube_version: str = "1.30") -> list[str]:
    """Problems found in rendered manifests, checked offline against the Kubernetes schemas.

    Objects of a kind with no bundled schema (CRDs such as Flux's) are skipped with a log note.
    """
    problems: list[str] = []
    seen: set[str] = set()
    try:
        documents = [doc for doc in yaml.safe_load_all(yaml_text) if doc is not None]
    except yaml.YAMLError as exc:
        return [f"invalid YAML: {' '.join(str(exc).split())}"]
    for index, obj in enumerate(documents, start=1):
        if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
            problems.append(f"document {index}: not a Kubernetes object (no apiVersion/kind)")
            continue
        key = object_key(obj)
        if key in seen:
            problems.append(f"{key}: defined more than once")
        seen.add(key)
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path) or "(root)"
            problems.append(f"{key}: {where}: {exc.message}")
        except SchemaNotFoundError:
            log.info(
                "no schema for %s %s in Kubernetes %s; %s not validated",
                obj["apiVersion"],
                obj["kind"],
                kube_version,
                key,
            )
        except VersionNotSupportedError:
            raise ManifestError(
                f"Kubernetes {kube_version} is newer than the schemas bundled with "
                f"kubernetes-validate {kubernetes_validate.__version__}: "
                "pick an older kube_version or upgrade kubernetes-validate"
            ) from None
    return problems


def object_key(obj: Mapping[str, Any]) -> str:
    """`Kind/namespace/name`, or `Kind/name` when the object names no namespace."""
    meta = obj.get("metadata") or {}
    parts = [obj.get("kind", "?"), meta.get("namespace"), meta.get("name", "?")]
    return "/".join(str(p) for p in parts if p)


def split_objects(yaml_text: str) -> dict[str, dict[str, Any]]:
    """The objects of a multi-document YAML text, keyed by `object_key`."""
    objects: dict[str, dict[str, Any]] = {}
    try:
        documents = list(yaml.safe_load_all(yaml_text))
    except yaml.YAMLError as exc:
        raise ManifestError(f"rendered manifests are not valid YAML: {exc}") from None
    for obj in documents:
        if obj is None:
            continue
        if not isinstance(obj, dict) or "kind" not in obj:
            raise ManifestError(f"rendered manifests hold a non-object document: {obj!r:.80}")
        key = object_key(obj)
        if key in objects:
            raise ManifestError(f"rendered manifests define {key} more than once")
        objects[key] = obj
    return objects


def holds_objects(yaml_text: str | None) -> bool:
    """Whether manifests define any object; no file, or comments only (a placeholder), do not."""
    try:
        return bool(split_objects(yaml_text or ""))
    except ManifestError:
        return True  # something is there, even if it cannot be read


def _helm_escape(value: str) -> str:
    # --set-string splits on commas and reads a leading "{" as a list; backslash escapes both.
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("{", "\\{")


def _run_tool(what: str, command: list[str]) -> str:
    try:
        proc = run_tool(command, timeout_s=RENDER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RenderFailed(what, f"timed out after {RENDER_TIMEOUT_S}s") from None
    if proc.returncode != 0:
        raise RenderFailed(what, proc.stderr or proc.stdout)
    return proc.stdout
