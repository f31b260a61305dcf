"""Checks: configured commands and linters run in a checkout, each giving one `CheckResult`.

A check that finds problems is a result with `passed=False`, not an exception; exceptions are
left for Baton's own setup problems (a missing tool, an unreadable directory).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from baton.artifacts import DependencyBuildFailed, build_dependencies
from baton.bundles import BundleInvalid, bundle_directories
from baton.config import KUBE_VERSION
from baton.logs import LogStore, Progress, excerpt, follow
from baton.models import CheckResult, PinnedImage
from baton.registry import Registry
from baton.render import (
    KustomizeRenderer,
    Renderer,
    RenderFailed,
    split_objects,
    validate_manifests,
)
from baton.store import BlobStore
from baton.tools import find_tool, tool_env

SUMMARY_MAX = 300


@dataclass
class _Run:
    exit_code: int | None
    output: str
    duration_s: float
    timed_out_after_s: float | None = None


def run_check(
    name: str,
    command: str | Sequence[str],
    cwd: Path,
    *,
    timeout_s: float = 600,
    env: Mapping[str, str] | None = None,
    on_progress: Progress | None = None,
    progress_every_s: float = 5,
    logs: BlobStore | None = None,
    niceness: int = 0,
) -> CheckResult:
    """Run a configured command (shell string or argv) in `cwd`; it passes if it exits 0.
    A `niceness` (1-19) runs it at a lower CPU priority than the processes beside it
    (`lowered`)."""
    run = _execute(name, command, cwd, timeout_s, env, on_progress, progress_every_s, niceness)
    return _result(name, run, summary=_last_line(run), logs=logs)


HADOLINT_CONFIGS = (".hadolint.yaml", ".hadolint.yml")


def hadolint(
    dockerfile: Path,
    *,
    repository_root: Path | None = None,
    timeout_s: float = 120,
    on_progress: Progress | None = None,
    logs: BlobStore | None = None,
    niceness: int = 0,
) -> CheckResult:
    """Lint a Dockerfile; the summary names the first finding: `DL3007 line 1: Using latest...`.
    `niceness`: as `run_check`'s.

    hadolint's configuration is the `.hadolint.yaml` (or `.yml`) nearest the Dockerfile, from its
    directory up to `repository_root`, where users keep it (hadolint's README, hadolint-action).
    """
    dockerfile = Path(dockerfile)
    command = [find_tool("hadolint"), "-f", "json", dockerfile.name]
    config = _nearest(
        dockerfile.parent, Path(repository_root or dockerfile.parent), HADOLINT_CONFIGS
    )
    if config is not None:
        command[1:1] = ["--config", str(config)]
    run = _execute(
        "hadolint", command, dockerfile.parent, timeout_s, None, on_progress, 5, niceness
    )
    try:
        findings = json.loads(run.output)
    except ValueError:  # not JSON: hadolint itself failed (missing file, bad config)
        return _result("hadolint", run, summary=_last_line(run), logs=logs)
    lines = [f"{f['code']} line {f['line']}: {f['message']}" for f in findings]
    summary = _first_of(lines) if lines else "no findings"
    detail = "\n".join(
        f"{dockerfile.name}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    return _result("hadolint", run, summary=summary, logs=logs, detail=detail)


def _nearest(start: Path, root: Path, names: Sequence[str]) -> Path | None:
    """The first of `names` found in `start` or a parent of it, up to and including `root`."""
    root = root.resolve()
    directory = start.resolve()
    while True:
        for name in names:
            if (directory / name).is_file():
                return directory / name
        if directory == root or directory.parent == directory or root not in directory.parents:
            return None
        directory = directory.parent


def helm_lint(
    chart_dir: Path,
    values_files: Sequence[Path] = (),
    *,
    timeout_s: float = 120,
    on_progress: Progress | None = None,
    logs: BlobStore | None = None,
    registry: Registry | None = None,
    niceness: int = 0,
) -> CheckResult:
    """`helm lint --strict` with values files, the chart's dependencies built first (from
    `registry`); the summary is helm's [ERROR]/[WARNING] lines. `niceness`: as `run_check`'s."""
    chart_dir = Path(chart_dir).resolve()
    started = time.monotonic()
    try:
        build_dependencies(chart_dir, registry)
    except DependencyBuildFailed as exc:
        run = _Run(None, exc.output, time.monotonic() - started)
        return _result("helm-lint", run, summary=str(exc), logs=logs)
    # The Kubernetes version CI's test render and validation use, for the same capabilities.
    command = [
        find_tool("helm"),
        "lint",
        str(chart_dir),
        "--strict",
        "--kube-version",
        KUBE_VERSION,
    ]
    for values in values_files:
        command += ["--values", str(Path(values).resolve())]
    run = _execute("helm-lint", command, chart_dir, timeout_s, None, on_progress, 5, niceness)
    findings: list[str] = []
    in_finding = False
    for line in run.output.splitlines():
        if line.startswith(("[ERROR]", "[WARNING]")):
            findings.append(line.strip())
            in_finding = True
        elif in_finding and line[:1].isspace() and line.strip():
            findings[-1] += " " + line.strip()  # helm continues a finding on indented lines
        else:
            in_finding = False
    summary = "; ".join(findings) if findings else _last_line(run)
    return _result("helm-lint", run, summary=summary, logs=logs)


def render_and_validate(
    name: str,
    renderer: Renderer,
    *,
    release: str,
    namespace: str,
    values_files: Sequence[Path] = (),
    overrides: Mapping[str, str] | None = None,
    image: PinnedImage | None = None,
    kube_version: str = KUBE_VERSION,
    logs: BlobStore | None = None,
) -> CheckResult:
    """Render templates (image pinned by digest when given) and validate every object offline."""
    started = time.monotonic()
    try:
        rendered = renderer.render(
            release, namespace, values_files=values_files, overrides=overrides, image=image
        )
    except RenderFailed as exc:
        run = _Run(None, exc.output, time.monotonic() - started)
        return _result(name, run, summary=str(exc), logs=logs)
    problems = validate_manifests(rendered, kube_version)
    run = _Run(0 if not problems else 1, rendered, time.monotonic() - started)
    if problems:
        return _result(
            name, run, summary=_first_of(problems), logs=logs, detail="\n".join(problems)
        )
    keys = list(split_objects(rendered))
    return _result(
        name,
        run,
        summary=f"{len(keys)} objects rendered, all valid",
        logs=logs,
        detail="\n".join(keys),
    )


def kustomize_build(
    kustomize_dir: Path,
    *,
    root: Path | None = None,
    kube_version: str = KUBE_VERSION,
    logs: BlobStore | None = None,
) -> CheckResult:
    """`kubectl kustomize` the directory and validate what it builds.

    With `root` (the repository), also check that the kustomization can be published as a
    bundle: every kustomization it reaches is inside `root` and has its kustomization file.
    """
    if root is not None:
        try:
            bundle_directories(root, str(Path(kustomize_dir).relative_to(root)))
        except BundleInvalid as exc:
            return _result("kustomize-build", _Run(1, str(exc), 0), summary=str(exc), logs=logs)
    return render_and_validate(
        "kustomize-build",
        KustomizeRenderer(kustomize_dir),
        release="",
        namespace="",
        kube_version=kube_version,
        logs=logs,
    )


def _execute(
    name: str,
    command: str | Sequence[str],
    cwd: Path,
    timeout_s: float,
    env: Mapping[str, str] | None,
    on_progress: Progress | None,
    progress_every_s: float,
    niceness: int = 0,
) -> _Run:
    started = time.monotonic()
    if niceness:
        command = lowered(command, niceness)
    proc = subprocess.Popen(
        command,
        shell=isinstance(command, str),
        cwd=cwd,
        env=_child_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a timeout ends the whole tree
    )
    assert proc.stdout is not None
    output: list[str] = []
    last_report = started
    timed_out_after_s = None
    try:
        for line in follow(proc.stdout, every_s=min(progress_every_s, 1.0)):
            if line is not None:
                output.append(line.decode(errors="replace"))
            now = time.monotonic()
            if now - started > timeout_s:
                timed_out_after_s = timeout_s
                _kill_group(proc)
                break
            if on_progress is not None and now - last_report >= progress_every_s:
                last_line = next((o.strip() for o in reversed(output) if o.strip()), "")
                on_progress(
                    f"{name}: running for {now - started:.0f}s: {last_line[:120]}".rstrip(": ")
                )
                last_report = now
    except BaseException:
        # Cancelled (Temporal raises into the activity's thread, e.g. from its heartbeat, when a
        # newer head supersedes the validation) or the worker stopping: the command must not
        # outlive its activity.
        _kill_group(proc)
        raise
    exit_code = None if timed_out_after_s is not None else proc.wait()
    return _Run(exit_code, "".join(output), time.monotonic() - started, timed_out_after_s)


def lowered(command: str | Sequence[str], niceness: int) -> list[str]:
    """`command` (a shell string or argv) run at a CPU priority `niceness` (1-19) lower, in the
    session `_execute` starts it in, set before it runs: argv for `subprocess`.

    Where the kernel groups each session for scheduling (Linux's autogroup, on by default in
    Debian's kernels: `/proc/sys/kernel/sched_autogroup_enabled`), a process's nice value only
    counts against its own session, so the session's group gets the niceness
    (`/proc/self/autogroup`, sched(7)); the process gets it too (`nice -n`, coreutils), for
    kernels without autogroup. Raising a niceness needs no privilege.
    """
    argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
    lower = f'echo {niceness} > /proc/self/autogroup 2>/dev/null; exec nice -n {niceness} "$@"'
    return ["sh", "-c", lower, "sh", *argv]


def _child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    # Checks run code from the repository under test: pass only what a build needs, never the
    # worker's own environment (it holds Baton's secrets).
    return tool_env(extra, keep=("HOME", "TMPDIR", "TZ"), prefixes=())


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue


def _result(
    name: str, run: _Run, *, summary: str, logs: BlobStore | None, detail: str | None = None
) -> CheckResult:
    if run.timed_out_after_s is not None:
        summary = f"timed out after {run.timed_out_after_s:g}s"
    log_ref = (logs or LogStore.default()).put(run.output) if run.output else None
    return CheckResult(
        name=name,
        passed=run.exit_code == 0,
        exit_code=run.exit_code,
        duration_s=round(run.duration_s, 3),
        summary=_one_line(summary),
        excerpt=excerpt(detail if detail is not None else run.output),
        log_ref=log_ref,
    )


def _last_line(run: _Run) -> str:
    last = next((line for line in reversed(run.output.splitlines()) if line.strip()), "")
    if run.exit_code not in (0, None) and not last:
        return f"exited with code {run.exit_code}"
    return last or ("passed" if run.exit_code == 0 else "no output")


def _first_of(items: Sequence[str]) -> str:
    return items[0] + (f" (+{len(items) - 1} more)" if len(items) > 1 else "")


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= SUMMARY_MAX else line[: SUMMARY_MAX - 1] + "…"
