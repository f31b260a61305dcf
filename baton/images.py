"""Building, trying and pushing container images with the local docker engine.

Builds go through BuildKit, as `docker build` does since Docker 23, where this machine has a way
to it (`find_builder`); a Dockerfile that needs more than the builder has is refused before the
build, naming the line. Builds use host networking (no bridge networks exist on Baton's hosts)
and the engine's layer cache, so building the same inputs again is quick and yields the same
image. `try_image` runs an app's image test in the built image. A push is only reported once the
registry itself serves the pushed digest.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
from pydantic import BaseModel

from baton import private, shared_http
from baton.config import ImageTest
from baton.errors import ConfigurationError, InfrastructureError
from baton.logs import LogStore, Progress, excerpt, follow
from baton.models import CheckResult, LogRef
from baton.registry import Registry, write_auth_file
from baton.store import BlobStore
from baton.tools import tool_env

PROGRESS_EVERY_S = 5
PROBE_EVERY_S = 0.5
SUMMARY_MAX = 300  # a step's summary is one line of workflow history
LAST_LINES = 20


class BuiltImage(BaseModel):
    image_id: str  # sha256:<64 hex>, the engine's image id
    tags: list[str]
    log_ref: LogRef  # the full build output in the LogStore


class EngineUnavailable(InfrastructureError):
    """No docker engine answers."""


class ImageBuildFailed(ConfigurationError):
    """The Dockerfile did not build; `last_lines` is the end of the build's own output."""

    def __init__(self, message: str, last_lines: Sequence[str], log_ref: LogRef) -> None:
        super().__init__(message)
        self.last_lines = list(last_lines)
        self.log_ref = log_ref


class ImagePushFailed(InfrastructureError):
    """The engine could not push an image, or the registry does not serve what was pushed."""


def docker_client() -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (default: the local socket)."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(
            f"cannot reach the docker engine ({exc}): start it (`make docker`) or set DOCKER_HOST"
        ) from None
    return client


@dataclass(frozen=True)
class Builder:
    """How images are built here: a docker CLI that talks BuildKit, or the engine's classic builder.

    `buildkit`: `RUN --mount`, `--network`, `--security` work. `frontend_1_4`: heredocs,
    `COPY --link` and `ADD --checksum` work too; the engine's built-in Dockerfile frontend has
    them from Docker Engine 23 on (BuildKit 0.10, Dockerfile syntax 1.4).
    """

    argv: tuple[str, ...]  # the build command before its options; empty: the classic builder
    description: str
    buildkit: bool
    frontend_1_4: bool


class BuildKitRequired(ConfigurationError):
    """The Dockerfile uses syntax the builder on this machine cannot build."""


@dataclass(frozen=True)
class DockerfileFeature:
    line: int  # 1-based, the line the syntax is written on
    syntax: str  # as written, e.g. `RUN --mount=type=cache,...`
    needs_frontend_1_4: bool  # False: any BuildKit builds it


_FLAG = re.compile(r"\s(--(?:mount|network|security|link|checksum|keep-git-dir)\b[^\s]*)")
_HEREDOC = re.compile(r"<<-?([\"']?)[A-Za-z_][A-Za-z0-9_]*\1")
_NEWER_FLAGS = ("--link", "--checksum", "--keep-git-dir")
# Parser directives come first, before any comment or instruction; `syntax` picks the frontend.
_SYNTAX_DIRECTIVE = re.compile(
    r"(?:[ \t]*#[ \t]*\w+[ \t]*=.*\n)*[ \t]*#[ \t]*syntax[ \t]*=", re.IGNORECASE
)


def buildkit_features(dockerfile_text: str) -> list[DockerfileFeature]:
    """The syntax in a Dockerfile that only BuildKit builds, each with the line it is on."""
    features = []
    instruction = ""
    continued = False
    for number, line in enumerate(dockerfile_text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if not continued:
            instruction = stripped.split(maxsplit=1)[0].upper()
        continued = stripped.endswith("\\")
        if instruction in ("RUN", "COPY", "ADD"):
            for flag in _FLAG.findall(" " + stripped):
                newer = flag.startswith(_NEWER_FLAGS)
                features.append(DockerfileFeature(number, f"{instruction} {flag}", newer))
            heredoc = _HEREDOC.search(stripped)
            if heredoc:
                features.append(DockerfileFeature(number, f"a heredoc ({heredoc.group()})", True))
    return features


@functools.cache
def find_builder() -> Builder:
    """The best builder on this machine: `docker buildx build`, else a docker CLI older than 23
    with `DOCKER_BUILDKIT=1` (it builds through the engine's own BuildKit), else the classic
    builder through the engine API. `BATON_DOCKER_CLI` names the CLI to use."""
    engine = _engine_version()
    frontend_1_4 = engine >= (23,)
    engine_text = ".".join(map(str, engine))
    configured = os.environ.get("BATON_DOCKER_CLI")
    candidates = [configured] if configured else _on_path("docker")
    for cli in candidates:
        if _run_cli([cli, "buildx", "version"]) is not None:
            return Builder((cli, "buildx", "build", "--load"), f"{cli} buildx", True, frontend_1_4)
    for cli in candidates:
        version = _run_cli([cli, "version", "--format", "{{.Client.Version}}"])
        if version is not None and _version(version) < (23,):
            description = f"Docker {engine_text}'s built-in BuildKit, through {cli}"
            return Builder((cli, "build"), description, True, frontend_1_4)
    return Builder((), f"Docker {engine_text}'s classic builder", False, False)


def check_buildable(dockerfile: Path, builder: Builder | None = None) -> None:
    """Raise BuildKitRequired naming the first line this machine's builder cannot build."""
    if not Path(dockerfile).is_file():
        return  # the build itself reports a missing Dockerfile, as docker build does
    text = Path(dockerfile).read_text(errors="replace")
    builder = builder or find_builder()
    own_frontend = builder.buildkit and _SYNTAX_DIRECTIVE.match(text) is not None
    for feature in buildkit_features(text):
        if not builder.buildkit:
            raise BuildKitRequired(
                f"{dockerfile.name} line {feature.line}: {feature.syntax} needs BuildKit, and "
                f"this machine only has {builder.description}: install the docker-buildx "
                "plugin (or a docker CLI older than 23) on the build workers"
            )
        if feature.needs_frontend_1_4 and not builder.frontend_1_4 and not own_frontend:
            raise BuildKitRequired(
                f"{dockerfile.name} line {feature.line}: {feature.syntax} needs Dockerfile "
                f"syntax 1.4, which the builder here ({builder.description}) lacks: run Docker "
                "Engine 23 or later on the build workers, or start the Dockerfile with "
                "`# syntax=docker/dockerfile:1.4` where the builder can pull that image, or "
                "write it without that syntax"
            )


def build_image(
    context_dir: Path,
    tags: Sequence[str],
    *,
    dockerfile: str = "Dockerfile",
    buildargs: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
    registries: Sequence[Registry] = (),
    on_progress: Progress | None = None,
    client: docker.DockerClient | None = None,
    logs: BlobStore | None = None,
) -> BuiltImage:
    """Build `dockerfile` (relative to `context_dir`) and give the image every tag in `tags`.

    Builds with BuildKit where this machine has it (`find_builder`), as `docker build` does since
    Docker 23; `secrets` (id to value) are what `RUN --mount=type=secret,id=<id>` reads, handed to
    BuildKit in files only the build can read, and never part of the image or the log. The
    credentials of `registries` let `FROM` lines pull from them (a mirrored image in Baton's
    registry), next to what the worker's docker config holds. Raises BuildKitRequired before
    building when the Dockerfile needs more than the builder has.
    """
    if not tags:
        raise ValueError("build_image needs at least one tag")
    client = client or docker_client()
    logs = logs or LogStore.default()
    builder = find_builder()
    check_buildable(Path(context_dir) / dockerfile, builder)
    if not builder.buildkit:
        if secrets:
            raise BuildKitRequired(
                f"build secrets ({', '.join(secrets)}) need BuildKit, and this machine only has "
                f"{builder.description}: install the docker-buildx plugin on the build workers"
            )
        for registry in registries:
            if registry.auth_config is not None:  # kept by the client for the build's pulls
                client.login(registry=registry.host, **registry.auth_config)
        return _classic_build(
            client, context_dir, tags, dockerfile, buildargs, labels, on_progress, logs
        )
    return _buildkit_build(
        builder,
        context_dir,
        tags,
        dockerfile,
        buildargs,
        labels,
        secrets,
        registries,
        on_progress,
        logs,
    )


def _buildkit_build(
    builder: Builder,
    context_dir: Path,
    tags: Sequence[str],
    dockerfile: str,
    buildargs: Mapping[str, str] | None,
    labels: Mapping[str, str] | None,
    secrets: Mapping[str, str] | None,
    registries: Sequence[Registry],
    on_progress: Progress | None,
    logs: BlobStore,
) -> BuiltImage:
    # Build secrets and the build's docker config are files for the builder: in this process's
    # private directory.
    with private.scratch("build-") as scratch:
        iidfile = scratch / "iid"
        env = _cli_env()
        if registries:
            # A docker config of the build's own: the worker's, plus these registries' logins.
            env["DOCKER_CONFIG"] = str(scratch / "docker")
            Path(env["DOCKER_CONFIG"]).mkdir(mode=0o700)
            write_auth_file(
                Path(env["DOCKER_CONFIG"]) / "config.json",
                {registry.host: registry for registry in registries},
                base=_docker_config(),
            )
        # Host networking (no bridge exists on Baton's hosts) and plain progress for the log.
        argv = [*builder.argv, "--network", "host", "--progress", "plain"]
        argv += ["--iidfile", str(iidfile), "--file", str(Path(context_dir) / dockerfile)]
        for tag in tags:
            argv += ["--tag", tag]
        for key, value in (buildargs or {}).items():
            argv += ["--build-arg", f"{key}={value}"]
        for key, value in (labels or {}).items():
            argv += ["--label", f"{key}={value}"]
        for secret_id, value in (secrets or {}).items():
            path = private.write_secret(scratch / f"secret-{len(argv)}", value)
            argv += ["--secret", f"id={secret_id},src={path}"]
        argv.append(str(context_dir))
        exit_code, output = _stream_cli(argv, on_progress, f"build {tags[0]}", env)
        if exit_code != 0:
            error = next((line for line in reversed(output) if line.strip()), "")
            error = error.removeprefix("ERROR: ").removeprefix("error: ")
            raise _build_failed(tags[0], error or f"exit code {exit_code}", output, logs)
        image_id = iidfile.read_text().strip()
    return BuiltImage(image_id=image_id, tags=list(tags), log_ref=logs.put("".join(output)))


def _stream_cli(
    argv: list[str], on_progress: Progress | None, what: str, env: dict[str, str]
) -> tuple[int, list[str]]:
    """Run a docker CLI command, its output collected, reporting progress while it runs."""
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None
    output: list[str] = []
    try:
        for item in _reporting(({"stream": line} for line in proc.stdout), on_progress, what):
            output.append(item["stream"])
    except BaseException:
        # Cancelled or the worker stopping: the build must not outlive its activity.
        proc.kill()
        proc.wait()
        raise
    return proc.wait(), output


_DOCKER_CLI_ENV = ("HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")


def _cli_env() -> dict[str, str]:
    """The docker CLI's environment: where its engine and config are, never the worker's
    secrets (`tool_env`)."""
    return tool_env({"DOCKER_BUILDKIT": "1"}, keep=_DOCKER_CLI_ENV, prefixes=())


def _docker_config() -> dict[str, Any]:
    """The worker's own docker config (`$DOCKER_CONFIG/config.json`, else
    `~/.docker/config.json`), or nothing when it has none or it is not JSON."""
    folder = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    try:
        loaded = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _run_cli(argv: list[str]) -> str | None:
    """The output of a quick CLI question, or None when the CLI says no."""
    try:
        done = subprocess.run(
            argv, env=_cli_env(), capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _on_path(name: str) -> list[str]:
    """Every distinct executable `name` on PATH, in PATH order."""
    found: dict[str, str] = {}
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = shutil.which(name, path=directory)
        if path is not None:
            found.setdefault(os.path.realpath(path), path)
    return list(found.values())


def _engine_version() -> tuple[int, ...]:
    return _version(str(docker_client().version().get("Version", "0")))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3]) or (0,)


def _classic_build(
    client: docker.DockerClient,
    context_dir: Path,
    tags: Sequence[str],
    dockerfile: str,
    buildargs: Mapping[str, str] | None,
    labels: Mapping[str, str] | None,
    on_progress: Progress | None,
    logs: BlobStore,
) -> BuiltImage:
    output: list[str] = []
    image_id = None
    try:
        stream = client.api.build(
            path=str(context_dir),
            dockerfile=dockerfile,
            tag=tags[0],
            buildargs=dict(buildargs or {}),
            labels=dict(labels or {}),
            network_mode="host",
            decode=True,
            rm=True,
            forcerm=True,
        )
        for item in _reporting(stream, on_progress, f"build {tags[0]}"):
            if "error" in item:
                output.append(item["error"].rstrip() + "\n")
                raise _build_failed(tags[0], item["error"], output, logs)
            output.append(item.get("stream", ""))
            image_id = (item.get("aux") or {}).get("ID", image_id)
    except docker.errors.APIError as exc:
        # The engine refused the build outright: no Dockerfile, a bad build argument...
        raise _build_failed(tags[0], exc.explanation, output, logs) from None
    image_id = image_id or client.api.inspect_image(tags[0])["Id"]
    for extra in tags[1:]:
        repository, tag = _split_tag(extra)
        client.api.tag(image_id, repository, tag)
    return BuiltImage(image_id=image_id, tags=list(tags), log_ref=logs.put("".join(output)))


def local_image(reference: str, client: docker.DockerClient | None = None) -> str | None:
    """The id of the image the local engine knows as `reference` (`<repository>:<tag>`), or None."""
    client = client or docker_client()
    try:
        return str(client.images.get(reference).id)
    except docker.errors.ImageNotFound:
        return None


def push_image(
    image: str,
    registry: Registry,
    name: str,
    tag: str,
    *,
    on_progress: Progress | None = None,
    client: docker.DockerClient | None = None,
) -> str:
    """Tag `image` (an id or reference) as `<registry>/<name>:<tag>`, push it, return its digest.

    The digest is the one the engine reports, checked against what the registry serves.
    """
    client = client or docker_client()
    repository = registry.repository(name)
    try:
        client.api.tag(image, repository, tag)
        stream = client.api.push(
            repository, tag=tag, stream=True, decode=True, auth_config=registry.auth_config
        )
        digest = None
        for item in _reporting(stream, on_progress, f"push {repository}:{tag}"):
            if "error" in item:
                raise ImagePushFailed(f"pushing {repository}:{tag} failed: {item['error'].strip()}")
            digest = (item.get("aux") or {}).get("Digest", digest)
    except docker.errors.APIError as exc:
        raise ImagePushFailed(f"pushing {repository}:{tag} failed: {exc.explanation}") from None
    if digest is None:
        raise ImagePushFailed(f"pushing {repository}:{tag} reported no digest")
    served = registry.manifest_digest(name, tag)
    if served != digest:
        raise ImagePushFailed(
            f"registry {registry.host} serves {served or 'nothing'} for {name}:{tag}, "
            f"but the push reported {digest}: another push may have raced this one; retry"
        )
    return digest


def _build_failed(tag: str, error: str, output: list[str], logs: BlobStore) -> ImageBuildFailed:
    text = "".join(output)
    last_lines = [line for line in text.splitlines() if line.strip()][-LAST_LINES:]
    return ImageBuildFailed(f"building {tag} failed: {error.strip()}", last_lines, logs.put(text))


def _reporting(
    stream: Iterable[dict[str, Any]],
    on_progress: Progress | None,
    what: str,
) -> Iterator[dict[str, Any]]:
    """The items of a build or push stream, calling `on_progress` at least every few seconds."""
    started = last_report = time.monotonic()
    latest = ""
    for item in follow(stream, every_s=1.0):
        if item is not None:
            status = item.get("stream") or item.get("status") or ""
            if status.strip():
                latest = " ".join(filter(None, [status.strip(), item.get("id")]))
            yield item
        now = time.monotonic()
        if on_progress is not None and now - last_report >= PROGRESS_EVERY_S:
            on_progress(f"{what}: {now - started:.0f}s: {latest[:120]}".rstrip(": "))
            last_report = now


def _split_tag(reference: str) -> tuple[str, str]:
    # The tag follows the last colon, unless that colon belongs to a registry port.
    repository, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, "latest"
    return repository, tag


class ImageTestPortBusy(InfrastructureError):
    """Something on the worker already answers on the port the image test probes."""


def try_image(
    image: str,
    test: ImageTest,
    *,
    commit: str = "",
    on_progress: Progress | None = None,
    client: docker.DockerClient | None = None,
    logs: BlobStore | None = None,
) -> CheckResult:
    """Try a built image: run `test.command` inside it, then start it and probe `test.http`.

    Containers use the host network (the probe reaches `127.0.0.1:<port>`) and are removed
    afterwards (and those killed workers left, once past their time limit, before). The summary
    says what the test saw; the full container output and every probe
    answer are kept in the LogStore. Raises ImageTestPortBusy when the port already answers.
    """
    client = client or docker_client()
    logs = logs or LogStore.default()
    started = time.monotonic()
    remove_expired_test_containers(client)  # a killed worker's may hold the port
    transcript: list[str] = []
    passed, summary = True, []
    if test.command is not None:
        passed, seen = _run_test_command(client, image, test, transcript, on_progress)
        summary.append(seen)
    if passed and test.http is not None:
        passed, seen = _probe(client, image, test, commit, transcript, on_progress)
        summary.append(seen)
    text = "".join(transcript)
    outcome = "image test passed: " if passed else "image test failed: "
    line = " ".join((outcome + "; ".join(summary)).split())  # one line, whatever the body held
    return CheckResult(
        name="image-test",
        passed=passed,
        exit_code=0 if passed else 1,
        duration_s=round(time.monotonic() - started, 3),
        summary=line[:SUMMARY_MAX],
        excerpt=excerpt(text),
        log_ref=logs.put(text),
    )


def _run_test_command(
    client: docker.DockerClient,
    image: str,
    test: ImageTest,
    transcript: list[str],
    on_progress: Progress | None,
) -> tuple[bool, str]:
    assert test.command is not None
    shown = " ".join(test.command)
    transcript.append(f"$ {shown}\n")
    with _container(client, image, test, command=test.command) as container:
        if isinstance(container, str):
            return False, f"`{shown}` could not start: {container}"
        deadline = time.monotonic() + test.timeout_s
        while (status := _exit_code(container)) is None:
            if time.monotonic() > deadline:
                transcript.append(_container_logs(container))
                return False, f"`{shown}` did not finish within {test.timeout_s}s"
            _wait_a_moment(on_progress, f"image test: {shown}")
        output = _container_logs(container)
    transcript.append(output + f"(exit code {status})\n")
    last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
    if status != 0:
        return False, f"`{shown}` exited with code {status}" + (f": {last}" if last else "")
    return True, f"`{shown}` exited 0"


def _probe(
    client: docker.DockerClient,
    image: str,
    test: ImageTest,
    commit: str,
    transcript: list[str],
    on_progress: Progress | None,
) -> tuple[bool, str]:
    assert test.http is not None
    http = test.http
    url = f"http://127.0.0.1:{http.port}{http.path}"
    expected_body = (http.expected_body or "").replace("{commit}", commit)
    if _answers(url):
        raise ImageTestPortBusy(
            f"port {http.port} on this worker already answers before the image test starts: "
            "stop what listens there, or probe another port (image_test.http.port and env)"
        )
    seen = "nothing answered"
    with _container(client, image, test) as container:
        if isinstance(container, str):
            return False, f"the container could not start: {container}"
        deadline = time.monotonic() + test.timeout_s
        while time.monotonic() < deadline:
            status = _exit_code(container)
            if status is not None:
                output = _container_logs(container)
                transcript.append(output)
                last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
                return False, (
                    f"the container exited with code {status} before GET {url} passed "
                    f"(last seen: {seen})" + (f": {last}" if last else "")
                )
            try:
                response = shared_http.client().get(url, timeout=2.0)
            except httpx.TransportError as exc:
                seen = f"no answer ({type(exc).__name__})"
            else:
                body = response.text
                seen = f"{response.status_code} {body[:200]!r}"
                transcript.append(f"GET {url} -> {response.status_code} {body[:2000]!r}\n")
                if response.status_code == http.expected_status and expected_body in body:
                    transcript.append(_container_logs(container))
                    return True, f"GET {url} answered {response.status_code}"
            _wait_a_moment(on_progress, f"image test: GET {url}: {seen}")
        transcript.append(_container_logs(container))
    wanted = f"{http.expected_status}" + (f" with {expected_body!r}" if expected_body else "")
    return False, f"GET {url} did not answer {wanted} within {test.timeout_s}s; it saw {seen}"


IMAGE_TEST_LABEL = "org.baton.image-test"
EXPIRES_LABEL = "org.baton.image-test.expires"
"""When (Unix seconds) a test container is past its time limit, whoever started it."""
_EXPIRY_GRACE_S = 60


def remove_expired_test_containers(client: docker.DockerClient) -> list[str]:
    """Remove the image-test containers past their time limit (`EXPIRES_LABEL`; one without it
    is from before the label), which a worker killed during a test left running: its own cleanup
    never ran, and on the host network such a container may hold the port the next test of the
    app probes. Returns the names removed."""
    now, removed = time.time(), []
    for container in client.containers.list(all=True, filters={"label": IMAGE_TEST_LABEL}):
        try:
            expires = float(container.labels.get(EXPIRES_LABEL, "0"))
        except ValueError:
            expires = 0.0
        if expires < now:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                continue  # another worker swept it first
            removed.append(container.name)
    return removed


@contextmanager
def _container(
    client: docker.DockerClient,
    image: str,
    test: ImageTest,
    command: list[str] | None = None,
) -> Iterator[Any]:
    """A started container of `image` on the host network, removed (killed if need be) after;
    the engine's explanation instead, when it cannot start (an unknown command...)."""
    expires = time.time() + test.timeout_s + _EXPIRY_GRACE_S
    try:
        container = client.containers.create(
            image,
            command,
            network_mode="host",
            environment=dict(test.env),
            labels={IMAGE_TEST_LABEL: "true", EXPIRES_LABEL: str(int(expires))},
        )
    except docker.errors.ImageNotFound:
        raise EngineUnavailable(f"image {image} is not on this engine: build it first") from None
    try:
        try:
            container.start()
        except docker.errors.APIError as exc:
            yield str(exc.explanation)
        else:
            yield container
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


def _exit_code(container: Any) -> int | None:
    container.reload()
    if container.status in ("exited", "dead"):
        return int(container.attrs["State"]["ExitCode"])
    return None


def _container_logs(container: Any) -> str:
    return bytes(container.logs(stdout=True, stderr=True)).decode(errors="replace")


def _answers(url: str) -> bool:
    try:
        shared_http.client().get(url, timeout=1.0)
    except httpx.TransportError:
        return False
    return True


def _wait_a_moment(on_progress: Progress | None, status: str) -> None:
    # Between polls of a container or a probe; heartbeats keep the activity alive meanwhile.
    time.sleep(PROBE_EVERY_S)
    if on_progress is not None:
        on_progress(status[:160])
