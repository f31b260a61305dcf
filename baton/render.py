"""Rendering an app's templates into Kubernetes manifests, and validating them.

`HelmRenderer` and `KustomizeRenderer` implement the `Renderer` protocol; the app's config picks
one. Both pin the image by digest, so the rendered manifests name exactly the image CI built.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypedDict, Unpack

import jsonschema
import kubernetes_validate
import referencing
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, VersionNotSupportedError
from pydantic import BaseModel, PrivateAttr

from baton.artifacts import DependencyBuildFailed, build_dependencies
from baton.config import DEFAULT_IMAGE_VALUES, KUBE_VERSION, ImageValues, KubernetesConfig
from baton.errors import ConfigurationError
from baton.models import OmittedObject, PinnedImage
from baton.registry import Registry
from baton.tools import error_line, find_tool, run_tool

log = logging.getLogger(__name__)

YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""PyYAML's safe loader, in C (libyaml) where the wheel has it: manifests are parsed several times
per render (hooks, pin check, validation, diff), and the pure-Python loader was most of a render
step's time for a chart of 50 objects (`bench/render.py`)."""

# kubernetes_validate lists its schema directories and reads and parses a kind's JSON schema and
# the whole definitions file on every call (over half a second for 50 objects); none of them
# changes within a process, so keep them.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=512)(
    kubernetes_validate.utils.schema_contents
)
kubernetes_validate.utils.all_versions = functools.cache(kubernetes_validate.utils.all_versions)

RENDER_TIMEOUT_S = 120
DEFAULT_KUBERNETES = KubernetesConfig()


class RenderFailed(ConfigurationError):
    """helm or kustomize could not render the templates; `output` holds the tool's own words."""

    def __init__(self, what: str, output: str) -> None:
        super().__init__(f"{what} failed: {error_line(output)}" if what else error_line(output))
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


# What rendered-manifest GitOps does with each Helm hook kind (helm.sh/hook). An install creates
# the install and upgrade hooks' objects and leaves them in place (unless a delete policy removes
# them), so they are kept as ordinary objects, applied with the rest. The others never run on an
# install; applying them would run them on every sync, so they are left out, for the reason given.
OMITTED_HOOKS = {
    "test": "a test hook: `helm test` runs it, an install does not",
    "test-success": "a test hook: `helm test` runs it, an install does not",
    "test-failure": "a test hook: `helm test` runs it, an install does not",
    "pre-delete": "a delete hook: it runs only when the release is uninstalled",
    "post-delete": "a delete hook: it runs only when the release is uninstalled",
    "pre-rollback": "a rollback hook: it runs only on `helm rollback`, and Baton rolls back by "
    "reverting the GitOps change",
    "post-rollback": "a rollback hook: it runs only on `helm rollback`, and Baton rolls back by "
    "reverting the GitOps change",
}
_DOCUMENT_START = re.compile(r"^---[ \t]*$\n?", re.MULTILINE)
_POD_CONTAINERS = ("initContainers", "containers", "ephemeralContainers")


class RenderOptions(TypedDict, total=False):
    """The keyword arguments of `Renderer.render`."""

    values_files: Sequence[Path]
    overrides: Mapping[str, str] | None
    image: PinnedImage | None


class HelmRender(BaseModel):
    """What `HelmRenderer.template` made: the manifests and what it left out of them."""

    manifests: str
    omitted: list[OmittedObject] = []
    # The manifests' documents as parsed on the way (None when one did not parse): the pin
    # check and validation read them instead of parsing the text again.
    _documents: list[Any] | None = PrivateAttr(default=None)

    @property
    def documents(self) -> list[Any] | None:
        return self._documents


class ImageNotPinned(RenderFailed):
    """The rendered workloads do not run the image CI built: the chart does not read the values
    keys Baton pins the image with."""

    def __init__(self, message: str) -> None:
        super().__init__("", message)


class HelmRenderer:
    """`helm template` of a chart directory, rendering what `helm install` would create.

    The chart's dependencies are built first (`artifacts.build_dependencies`, from `registry`);
    the CRDs of its crds/ directory come first, as an install applies them; hooks an install does
    not run are left out (`OMITTED_HOOKS`); `.Capabilities` are the `kubernetes` given. The image
    is set through the `image_values` keys, and every container of the app's image repository
    must then run it by digest. Overrides are passed as `--set-string`.
    """

    def __init__(
        self,
        chart_dir: Path,
        *,
        image_values: ImageValues = DEFAULT_IMAGE_VALUES,
        kubernetes: KubernetesConfig = DEFAULT_KUBERNETES,
        registry: Registry | None = None,
        source: str | None = None,
    ) -> None:
        self.chart_dir = Path(chart_dir)
        self.image_values = image_values
        self.kubernetes = kubernetes
        self.registry = registry
        self.source = source or str(self.chart_dir)  # how messages name the chart
        self._dependencies_built = False

    def render(self, release: str, namespace: str, **options: Unpack[RenderOptions]) -> str:
        return self.template(release, namespace, **options).manifests

    def build_dependencies(self) -> None:
        """Build the chart's missing dependencies, once per renderer (renders call it first).

        Raises `RenderFailed` with helm's error line, `ArtifactError` when a dependency's
        registry does not answer.
        """
        if self._dependencies_built:
            return
        try:
            build_dependencies(self.chart_dir, self.registry)
        except DependencyBuildFailed as exc:
            raise RenderFailed(f"helm dependency build of {self.source}", exc.output) from None
        self._dependencies_built = True

    def template(
        self, release: str, namespace: str, **options: Unpack[RenderOptions]
    ) -> HelmRender:
        """The release's manifests and the objects left out of them (with why).

        Raises `RenderFailed` with helm's error line (`ImageNotPinned` when the image is not
        pinned), `ArtifactError` when a dependency's registry does not answer.
        """
        return self.finish(self.helm_output(release, namespace, **options), options.get("image"))

    def helm_output(self, release: str, namespace: str, **options: Unpack[RenderOptions]) -> str:
        """`helm template`'s own output for the release, before `finish`."""
        image = options.get("image")
        self.build_dependencies()
        command = [find_tool("helm"), "template", release, str(self.chart_dir), "--include-crds"]
        command += ["--kube-version", self.kubernetes.version]
        for api_version in self.kubernetes.api_versions:
            command += ["--api-versions", api_version]
        if namespace:
            command += ["--namespace", namespace]
        for values in options.get("values_files", ()):
            command += ["--values", str(values)]
        settings = dict(options.get("overrides") or {})
        if image is not None:
            settings |= image_settings(self.image_values, image)
        for key, value in settings.items():
            command += ["--set-string", f"{key}={_helm_escape(value)}"]
        return _run_tool(f"helm template of {self.source}", command)

    def finish(self, output: str, image: PinnedImage | None) -> HelmRender:
        """`helm_output`'s `output` as an install creates it, its pin of `image` checked."""
        render = _install_objects(output)
        if image is not None:
            self._check_pinned(render, image)
        return render

    def _check_pinned(self, render: HelmRender, image: PinnedImage) -> None:
        running = [
            (key, name, ref)
            for key, name, ref in containers(render.manifests, render.documents)
            if _repository(ref) == image.repository
        ]
        if not running:
            raise ImageNotPinned(
                f"no container runs {image.repository}, the image CI built: {self._fix()}"
            )
        for key, name, ref in running:
            if not ref.endswith(f"@{image.digest}"):
                raise ImageNotPinned(
                    f"{key} container {name!r} runs {ref}, not the digest CI built "
                    f"({image.digest[:15]}…): {self._fix()}"
                )

    def _fix(self) -> str:
        """How to make the chart run the pinned image (read from its values.yaml: only on a
        failed pin check)."""
        keys = " and ".join(self.image_values.value_keys())
        return (
            f"Baton set {keys}, which the chart does not use for it; set "
            f"apps[].helm.image_values to the keys it reads, e.g. {{{self._suggested_keys()}}}"
        )

    def _suggested_keys(self) -> str:
        """Image keys to try: those the chart's values.yaml has beside its repository key."""
        parent = (self.image_values.repository or "image.repository").rpartition(".")[0]
        try:
            values = yaml.safe_load((self.chart_dir / "values.yaml").read_text())
        except (OSError, yaml.YAMLError):
            values = None
        for part in parent.split(".") if parent else []:
            values = values.get(part) if isinstance(values, dict) else None
        prefix = f"{parent}." if parent else ""
        offered = [
            key
            for key in ("digest", "tag")
            if isinstance(values, dict)
            and key in values
            and f"{prefix}{key}" not in self.image_values.value_keys()
        ]
        key = (offered or ["tag"])[0]
        return f"repository: {prefix}repository, {key}: {prefix}{key}"


def image_settings(keys: ImageValues, image: PinnedImage) -> dict[str, str]:
    """The values that pin `image` through the chart's `keys`.

    A tag key alone takes `<tag>@<digest>`: the chart builds `repository:tag`, and a reference
    with both a tag and a digest is pulled by the digest. The tag is the one CI pushed the image
    under (`pinned` when the image names none).
    """
    if keys.image:
        return {keys.image: image.ref}
    assert keys.repository is not None  # ImageValues holds repository or image
    settings = {keys.repository: image.repository}
    tag = image.tag or "pinned"
    if keys.digest:
        settings[keys.digest] = image.digest
        if keys.tag:
            settings[keys.tag] = tag
    elif keys.tag:
        settings[keys.tag] = f"{tag}@{image.digest}"
    return settings


def containers(
    manifests: str, documents: Sequence[Any] | None = None
) -> list[tuple[str, str, str]]:
    """Every container of the manifests' pod specs and pod templates: (object key, name, image).
    `documents`: the manifests already parsed, when they are."""
    found: list[tuple[str, str, str]] = []

    def walk(key: str, node: object) -> None:
        if isinstance(node, dict):
            for field, value in node.items():
                if field in _POD_CONTAINERS and isinstance(value, list):
                    found.extend(
                        (key, str(c.get("name", "?")), str(c["image"]))
                        for c in value
                        if isinstance(c, dict) and "image" in c
                    )
                else:
                    walk(key, value)
        elif isinstance(node, list):
            for item in node:
                walk(key, item)

    if documents is None:
        try:
            documents = list(yaml.load_all(manifests, Loader=YAML_LOADER))
        except yaml.YAMLError:
            return []  # validation says what is wrong with them
    for obj in documents:
        if isinstance(obj, dict) and obj.get("kind") != "CustomResourceDefinition":
            walk(object_key(obj), obj.get("spec"))
    return found


def _repository(ref: str) -> str:
    """`registry/name` of an image reference `registry/name[:tag][@digest]`."""
    name = ref.split("@", 1)[0]
    host_and_path, _, last = name.rpartition("/")
    return f"{host_and_path}/{last.split(':', 1)[0]}" if host_and_path else last.split(":", 1)[0]


def _install_objects(output: str) -> HelmRender:
    """helm's output without the hooks an install does not run (`OMITTED_HOOKS`)."""
    kept: list[str] = []
    omitted: list[OmittedObject] = []
    parsed: list[Any] | None = []  # the kept documents, None once one does not parse
    for document in _DOCUMENT_START.split(output):
        try:
            obj = yaml.load(document, Loader=YAML_LOADER)
        except yaml.YAMLError:
            obj, parsed = None, None  # kept as it is: validation says what is wrong with it
        metadata = obj.get("metadata") if isinstance(obj, dict) else None
        annotations = (metadata or {}).get("annotations") or {}
        hooks = [h.strip() for h in str(annotations.get("helm.sh/hook", "")).split(",") if h]
        if hooks and all(h in OMITTED_HOOKS for h in hooks):
            assert isinstance(obj, dict)  # it has annotations
            omitted.append(OmittedObject(key=object_key(obj), reason=OMITTED_HOOKS[hooks[0]]))
        elif document.strip():
            kept.append(document)
            if parsed is not None and obj is not None:
                parsed.append(obj)
    if not omitted:
        render = HelmRender(manifests=output)
    else:
        render = HelmRender(manifests="".join(f"---\n{d}" for d in kept), omitted=omitted)
    render._documents = parsed
    return render


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

    def render(self, release: str, namespace: str, **options: Unpack[RenderOptions]) -> str:
        values_files, overrides = options.get("values_files", ()), options.get("overrides")
        image = options.get("image")
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
    for obj in yaml.load_all(manifests, Loader=YAML_LOADER):
        spec = (obj or {}).get("spec") or {}
        pod = ((spec.get("jobTemplate") or {}).get("spec") or spec).get("template") or {}
        pod_spec = pod.get("spec") or {}
        for container in [*pod_spec.get("containers", []), *pod_spec.get("initContainers", [])]:
            images.add(str(container.get("image")))
    return images


def validate_manifests(
    yaml_text: str, kube_version: str = KUBE_VERSION, documents: Sequence[Any] | None = None
) -> list[str]:
    """Problems found in rendered manifests, checked offline against the Kubernetes schemas.
    `documents`: the manifests already parsed (their non-empty documents), when they are.

    Objects of a kind with no bundled schema (CRDs such as Flux's) are skipped with a log note,
    except in Kubernetes' own API groups (`v1`, `apps/v1`...: no dot in the group, which a CRD's
    group must have): there the kind is unknown, or not served by `kube_version`.
    """
    problems: list[str] = []
    seen: set[str] = set()
    if documents is None:
        try:
            documents = [
                doc for doc in yaml.load_all(yaml_text, Loader=YAML_LOADER) if doc is not None
            ]
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
            _validate(obj, kube_version)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path) or "(root)"
            problems.append(f"{key}: {where}: {exc.message}")
        except SchemaNotFoundError:
            if "." not in obj["apiVersion"].rpartition("/")[0]:
                problems.append(
                    f"{key}: Kubernetes {kube_version} serves no kind {obj['kind']} in "
                    f"{obj['apiVersion']}: fix the kind or apiVersion"
                )
                continue
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


def _validate(obj: dict[str, Any], kube_version: str) -> None:
    """`kubernetes_validate.validate(obj, kube_version, strict=True)`, with one validator per
    kind and API version (the library builds a new one, with its registry of the definitions, for
    every object: most of a validation's time)."""
    if not isinstance(obj["kind"], str) or not isinstance(obj["apiVersion"], str):
        kubernetes_validate.validate(obj, kube_version, strict=True)  # its own errors
        return
    validator, version = _validator(kube_version, obj["apiVersion"], obj["kind"])
    try:
        validator.validate(obj)
    except jsonschema.ValidationError as exc:
        raise kubernetes_validate.ValidationError(exc, version=version) from None


@functools.lru_cache(maxsize=512)
def _validator(kube_version: str, api_version: str, kind: str) -> tuple[Any, str]:
    """The strict validator `kubernetes_validate.validate` makes for a kind, and the schemas'
    Kubernetes version; raises its `SchemaNotFoundError` and `VersionNotSupportedError`."""
    utils = kubernetes_validate.utils
    desired = kube_version.removeprefix("v")
    if utils.major_minor(desired) > utils.latest_version():
        raise VersionNotSupportedError(version=utils.major_minor(desired))
    version = [
        v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(desired)
    ][-1]
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    try:
        schema = utils.schema_contents(f"{schema_dir}/{kind.lower()}-{group_version}.json", desired)
    except FileNotFoundError:
        raise SchemaNotFoundError(
            version=utils.major_minor(desired), kind=kind, api_version=api_version
        ) from None
    definitions = utils.schema_contents(f"{schema_dir}/_definitions.json", desired)
    try:
        validator = jsonschema.validators.Draft202012Validator(_inline(schema, definitions))
    except _NotInlined:
        registry = referencing.Resource.from_contents(definitions) @ (
            referencing.Resource.from_contents(schema) @ referencing.Registry()
        )
        validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    return validator, utils.major_minor(version)


class _NotInlined(Exception):
    """A schema's `$ref` that `_inline` does not replace."""


_DEFINITIONS_REF = re.compile(r"^(?:/api/_definitions\.json)?#/\$defs/([^/~]+)$")
_ANNOTATIONS = re.compile(r"^(?:\$ref|description|x-kubernetes-.*)$")


def _inline(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every `$ref` into the definitions replaced by the definition itself (one
    object per definition, so recursive ones make a cycle): the validator then resolves no
    reference per object, which was most of a validation's time. Beside a `$ref`, the schemas
    hold only annotations; anything else raises `_NotInlined` (validated by reference then)."""
    defs = definitions.get("$defs")
    if not isinstance(defs, dict):
        raise _NotInlined
    inlined: dict[str, dict[str, Any]] = {}

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return {key: inline(value) for key, value in node.items()}
        match = _DEFINITIONS_REF.match(ref)
        if match is None or match.group(1) not in defs or not all(map(_ANNOTATIONS.match, node)):
            raise _NotInlined
        name = match.group(1)
        if name not in inlined:
            inlined[name] = {}  # filled below; a reference to it from within shares it
            resolved = inline(defs[name])
            if not isinstance(resolved, dict):
                raise _NotInlined
            inlined[name].update(resolved)
        return inlined[name]

    return inline(schema)


def object_key(obj: Mapping[str, Any]) -> str:
    """`Kind/namespace/name`, or `Kind/name` when the object names no namespace."""
    meta = obj.get("metadata") or {}
    parts = [obj.get("kind", "?"), meta.get("namespace"), meta.get("name", "?")]
    return "/".join(str(p) for p in parts if p)


def split_objects(yaml_text: str) -> dict[str, dict[str, Any]]:
    """The objects of a multi-document YAML text, keyed by `object_key`."""
    objects: dict[str, dict[str, Any]] = {}
    try:
        documents = list(yaml.load_all(yaml_text, Loader=YAML_LOADER))
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
