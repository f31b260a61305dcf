"""The artifact CI publishes for CD: the image digest and the chart, both in the OCI registry.

CD never rebuilds: it renders the published chart with the environment's values and the image
pinned by digest. The chart is pushed as `oci://<registry>/charts/<chart>:<version>-g<sha12>`.
A Kustomize app publishes its kustomization instead (`baton.bundles`); both are recorded here.

Publishing is idempotent. `helm package` stores each file's mtime and `helm push` records the
package file's mtime as `org.opencontainers.image.created` (Helm 4.1 ignores SOURCE_DATE_EPOCH),
so both are pinned to the commit time (or a fixed time) and identical content gets an identical
digest. A version already in the registry is reused, never pushed again.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from baton import private
from baton.errors import ConfigurationError, InfrastructureError
from baton.models import Artifact
from baton.registry import Registry, candidate, write_auth_file
from baton.settings import Settings
from baton.store import FileRecordStore, RecordStore
from baton.tools import error_line, find_tool, run_tool

CHARTS_NAMESPACE = "charts"
# Before any commit; 1980 rather than 1970 because zip-based tools reject older times.
FIXED_MTIME = datetime(1980, 1, 1, tzinfo=UTC)
HELM_TIMEOUT_S = 300

_COMMIT = re.compile(r"^[0-9a-f]{12,64}$")
_SEMVER = re.compile(r"^(\d+\.\d+\.\d+)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
_PUSHED_DIGEST = re.compile(r"^Digest:\s*(sha256:[0-9a-f]{64})", re.MULTILINE)
# helm's words (Go's net and http errors) for a registry that did not answer: worth a retry.
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|connection reset|TLS handshake timeout|"
    r"context deadline exceeded|server misbehaving|50[234] ",
    re.IGNORECASE,
)
# `helm dependency list` statuses of a dependency that charts/ satisfies.
_BUILT = ("ok", "unpacked")


class ArtifactError(InfrastructureError):
    """An artifact could not be published or fetched."""


class DependencyBuildFailed(ConfigurationError):
    """A chart's dependencies cannot be built as Chart.yaml names them; `output` is helm's."""

    def __init__(self, chart_dir: Path, output: str) -> None:
        super().__init__(f"helm dependency build of {chart_dir} failed: {error_line(output)}")
        self.output = output


class ArtifactStore:
    """Artifact records, one per app and commit, in a `baton.store.RecordStore` (kind
    `artifacts/<app>`, key the commit): the registry's for workers; a directory (`<root>/artifacts/
    <app>/<commit>.json`) when given a path, for one process alone."""

    def __init__(self, records: RecordStore | Path) -> None:
        self.records = FileRecordStore(records) if isinstance(records, Path) else records

    @classmethod
    def default(cls) -> ArtifactStore:
        return cls(Settings().home)

    def load(self, app: str, commit: str) -> Artifact | None:
        data = self.records.load(f"artifacts/{app}", commit)
        return Artifact.model_validate_json(data) if data is not None else None

    def commits(self, app: str) -> list[str]:
        """The commits of `app` with a record, in no meaningful order."""
        return self.records.keys(f"artifacts/{app}")

    def save(self, artifact: Artifact) -> Artifact:
        """Record `artifact`; a record with the same content is kept as is (with its created_at)."""
        existing = self.load(artifact.app, artifact.commit)
        if existing is not None and _same(existing, artifact):
            return existing
        data = (artifact.model_dump_json(indent=2) + "\n").encode()
        self.records.save(f"artifacts/{artifact.app}", artifact.commit, data)
        return artifact


def chart_version(base: str, commit: str) -> str:
    """The chart's SemVer for a commit: `0.1.0` → `0.1.0-g<sha12>` (a prerelease of the base).

    The `g` keeps the identifier alphanumeric: SemVer forbids leading zeros in numeric ones.
    """
    match = _SEMVER.match(base)
    if match is None:
        raise ArtifactError(f"chart version {base!r} is not SemVer (like 0.1.0): fix Chart.yaml")
    core, pre = match.group(1), match.group(2)
    return f"{core}{pre + '.' if pre else '-'}g{commit[:12]}"


def commit_version(chart_dir: Path, commit: str) -> str:
    """The version CI publishes the chart in `chart_dir` under for `commit` (see chart_version)."""
    return chart_version(str(_read_chart(Path(chart_dir))["version"]), commit)


def check_commit(commit: str) -> None:
    """Raises ArtifactError unless `commit` is a full git sha (artifacts are keyed by it)."""
    if not _COMMIT.match(commit):
        raise ArtifactError(f"commit {commit!r} is not a full git sha")


def publish_artifact(
    app: str,
    commit: str,
    chart_dir: Path,
    image: str,
    image_digest: str,
    registry: Registry,
    *,
    commit_time: datetime | None = None,
    metadata: Mapping[str, str] | None = None,
    store: ArtifactStore | None = None,
) -> Artifact:
    """Push the app's chart for `commit` to the registry and record the artifact. The chart
    CI staged while its checks ran (`stage_chart`) is copied, not packaged again."""
    check_commit(commit)
    chart_dir = Path(chart_dir)
    name = f"{CHARTS_NAMESPACE}/{_read_chart(chart_dir)['name']}"
    version = commit_version(chart_dir, commit)
    digest = registry.publish(
        name,
        version,
        lambda: push_chart(chart_dir, commit, registry, CHARTS_NAMESPACE, commit_time=commit_time),
    )
    published = {
        "chart_ref": f"oci://{registry.host}/{name}",
        "chart_version": version,
        "chart_digest": digest,
    }
    return record_artifact(app, commit, image, image_digest, published, metadata, store)


def stage_chart(chart_dir: Path, commit: str, registry: Registry) -> str:
    """Push the app's chart for `commit` as a candidate (`candidates/charts/<chart>`), the
    same bytes `publish_artifact` would push, which then copies it; its digest. Idempotent."""
    check_commit(commit)
    name = candidate(f"{CHARTS_NAMESPACE}/{_read_chart(Path(chart_dir))['name']}")
    staged = registry.manifest_digest(name, commit_version(chart_dir, commit))
    return staged or push_chart(chart_dir, commit, registry, candidate(CHARTS_NAMESPACE))


def push_chart(
    chart_dir: Path,
    commit: str,
    registry: Registry,
    namespace: str,
    *,
    commit_time: datetime | None = None,
) -> str:
    """`helm package` and `helm push` the chart for `commit` under `namespace`
    (`<namespace>/<chart>:<version>`); the digest the registry serves for it."""
    check_commit(commit)
    chart = _read_chart(Path(chart_dir))
    version = commit_version(chart_dir, commit)
    name = f"{namespace}/{chart['name']}"
    with _helm_session(registry) as helm:
        package = package_chart(
            chart_dir,
            version,
            commit[:12],
            helm.workdir,
            mtime=commit_time or FIXED_MTIME,
            registry=registry,
        )
        output = helm.run("push", str(package), f"oci://{registry.host}/{namespace}")
    pushed = _PUSHED_DIGEST.search(output)
    digest = registry.manifest_digest(name, version)
    if pushed is None or digest is None or digest != pushed.group(1):
        raise ArtifactError(
            f"helm pushed {name}:{version} but registry {registry.host} serves "
            f"{digest or 'nothing'} for it: retry the publish"
        )
    return digest


def record_artifact(
    app: str,
    commit: str,
    image: str,
    image_digest: str,
    published: Mapping[str, str],
    metadata: Mapping[str, str] | None,
    store: ArtifactStore | None,
) -> Artifact:
    """Record what CI published for `commit`: the image by digest and, as `published`, the
    `chart_*` or `kustomize_*` fields of the chart or bundle pushed beside it."""
    artifact = Artifact.model_validate(
        {
            "app": app,
            "commit": commit,
            "image": image,
            "image_digest": image_digest,
            "image_ref": f"{image}@{image_digest}",
            **published,
            "created_at": datetime.now(UTC),
            "metadata": dict(metadata or {}),
        }
    )
    return (store or ArtifactStore.default()).save(artifact)


def package_chart(
    chart_dir: Path,
    version: str,
    app_version: str,
    dest: Path,
    *,
    mtime: datetime = FIXED_MTIME,
    registry: Registry | None = None,
) -> Path:
    """`helm package` a copy of the chart, its dependencies built (`build_dependencies`) and
    every mtime pinned: same content, same bytes."""
    chart = _read_chart(Path(chart_dir))
    build_dependencies(chart_dir, registry)
    with tempfile.TemporaryDirectory(prefix="baton-chart-") as tmp:
        copy = Path(tmp) / Path(chart_dir).name
        shutil.copytree(chart_dir, copy)
        _set_mtimes(copy, mtime)
        _helm(
            [
                "package",
                str(copy),
                "--version",
                version,
                "--app-version",
                app_version,
                "--destination",
                str(dest),
            ],
            env=None,
        )
    package = Path(dest) / f"{chart['name']}-{version}.tgz"
    # helm push records the package file's mtime as the manifest's creation time.
    _set_mtimes(package, mtime)
    return package


def build_dependencies(chart_dir: Path, registry: Registry | None = None) -> None:
    """Build the chart's `dependencies:` into its charts/ directory when some are missing there.

    `helm dependency build` in the chart directory, as Argo CD and Flux do for charts from git,
    and offline: from `file://` paths and `oci://` charts in `registry` (Chart.lock's versions
    when there is one); a dependency from anywhere else must be vendored in charts/. A Chart.lock
    the build writes is removed again (its `generated` time would change every package). One build
    at a time per chart; charts whose dependencies are all in charts/ are left as they are.

    Raises `DependencyBuildFailed` when a retry cannot help (a path, chart or version that is not
    there: helm's error line), `ArtifactError` when the registry does not answer.
    """
    chart_dir = Path(chart_dir)
    if not _declares_dependencies(chart_dir):
        return
    with _exclusive(chart_dir):
        listed = _helm(["dependency", "list", str(chart_dir)], env=None)
        rows = [[column.strip() for column in line.split("\t")] for line in listed.splitlines()]
        missing = [row for row in rows[1:] if len(row) == 4 and row[3] not in _BUILT]
        if not missing:
            return
        sources = ("file://", f"oci://{registry.host}/") if registry else ("file://",)
        for name, _, repository, _ in missing:
            if repository and not (repository + "/").startswith(sources):
                raise DependencyBuildFailed(
                    chart_dir,
                    f"dependency {name} comes from {repository}, which Baton does not fetch "
                    f"(it builds dependencies from {' and '.join(s + '...' for s in sources)}): "
                    "vendor it in charts/ or push it to the registry",
                )
        lock = chart_dir / "Chart.lock"
        had_lock = lock.exists()
        try:
            with _helm_session(registry) as helm:
                proc = helm.attempt("dependency", "build", str(chart_dir), "--skip-refresh")
        finally:
            if not had_lock:
                lock.unlink(missing_ok=True)
    if proc.returncode != 0:
        output = proc.stderr or proc.stdout
        if _UNREACHABLE.search(output):
            raise ArtifactError(
                f"helm dependency build of {chart_dir}: the registry did not answer: "
                f"{error_line(output)}"
            )
        raise DependencyBuildFailed(chart_dir, output)


def _declares_dependencies(chart_dir: Path) -> bool:
    # An unreadable Chart.yaml is for helm to report, in its words, when it renders or lints.
    try:
        chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(chart, dict) and bool(chart.get("dependencies"))


@contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory` itself (nothing is written to take it)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fetch_chart(artifact: Artifact, dest: Path, registry: Registry) -> Path:
    """Pull the artifact's chart (by digest) and unpack it as `dest/<chart>`; returns that path."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if artifact.chart_ref is None or artifact.chart_digest is None:
        raise ArtifactError(
            f"the artifact of {artifact.app} {artifact.commit[:12]} holds no chart: publish it "
            "again (re-run CI) after configuring the app with a chart"
        )
    target = dest / artifact.chart_name
    name = artifact.chart_repository
    if registry.manifest_digest(name, artifact.chart_digest) is None:
        raise ArtifactError(
            f"chart {name}@{artifact.chart_digest} of {artifact.app} {artifact.commit[:12]} is "
            f"not in registry {registry.host}: publish the artifact again (re-run CI)"
        )
    reference = f"{artifact.chart_ref}:{artifact.chart_version}@{artifact.chart_digest}"
    with _helm_session(registry) as helm:
        unpacked = helm.workdir / "pulled"
        helm.run("pull", reference, "--untar", "--untardir", str(unpacked))
        if target.exists():
            shutil.rmtree(target)
        shutil.move(unpacked / artifact.chart_name, target)
    return target


class _Helm:
    """helm with a throwaway home and registry config, so no credential lands in $HOME."""

    def __init__(self, workdir: Path, registry: Registry | None) -> None:
        self.workdir = workdir
        self.registry = registry
        self.env = {
            "HELM_CONFIG_HOME": str(workdir / "config"),
            "HELM_CACHE_HOME": str(workdir / "cache"),
            "HELM_DATA_HOME": str(workdir / "data"),
            # helm's own temporary files too: a killed worker's are removed with its directory.
            "TMPDIR": str(workdir),
        }
        self.flags = ["--registry-config", str(workdir / "registry.json")]
        if registry is not None and registry.plain_http:
            self.flags.append("--plain-http")

    def login(self) -> None:
        """Write the registry's credentials to helm's registry config, as `helm registry login`
        would, without running helm for it (one process less per publish, dependency build and
        chart pull); wrong credentials fail the helm command that uses them, in helm's words."""
        if self.registry is None or self.registry.username is None:
            return
        write_auth_file(self.workdir / "registry.json", {self.registry.host: self.registry})

    def run(self, *args: str) -> str:
        return _helm([*args, *self.flags], env=self.env)

    def attempt(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run helm; its exit status is the caller's to judge."""
        try:
            return run_tool(
                [find_tool("helm"), *args, *self.flags], timeout_s=HELM_TIMEOUT_S, env=self.env
            )
        except subprocess.TimeoutExpired:
            raise ArtifactError(f"helm {args[0]} timed out after {HELM_TIMEOUT_S}s") from None


@contextmanager
def _helm_session(registry: Registry | None) -> Iterator[_Helm]:
    # helm's registry config holds the registry password: in this process's private directory.
    with private.scratch("helm-") as tmp:
        helm = _Helm(tmp, registry)
        helm.login()
        yield helm


def _helm(
    args: list[str],
    *,
    env: Mapping[str, str] | None,
    stdin: str | None = None,
    failure: str | None = None,
) -> str:
    try:
        proc = run_tool([find_tool("helm"), *args], timeout_s=HELM_TIMEOUT_S, stdin=stdin, env=env)
    except subprocess.TimeoutExpired:
        raise ArtifactError(f"helm {args[0]} timed out after {HELM_TIMEOUT_S}s") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise ArtifactError(f"{failure or f'helm {args[0]} failed'}: {detail}")
    return proc.stdout + proc.stderr


def _read_chart(chart_dir: Path) -> dict[str, Any]:
    try:
        chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ArtifactError(f"cannot read {chart_dir / 'Chart.yaml'}: {exc}") from None
    if not isinstance(chart, dict) or not chart.get("name") or not chart.get("version"):
        raise ArtifactError(f"{chart_dir / 'Chart.yaml'} needs a name and a version")
    return chart


def _set_mtimes(path: Path, mtime: datetime) -> None:
    stamp = mtime.timestamp()
    for entry in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(entry, (stamp, stamp), follow_symlinks=False)


def _same(a: Artifact, b: Artifact) -> bool:
    return a.model_dump(exclude={"created_at"}) == b.model_dump(exclude={"created_at"})
