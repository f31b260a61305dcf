"""Checks run real commands and linters (hadolint, helm, kubectl) and judge them like CI would."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from baton.checks import hadolint, helm_lint, kustomize_build, run_check
from baton.logs import LogNotFound, LogStore, excerpt
from tests.conftest import eventually
from tests.fixtures.manifests import DEPLOYMENT

SAMPLE_CHART = Path(__file__).resolve().parents[2] / "examples" / "sample-app" / "chart"


@pytest.fixture
def logs(tmp_path: Path) -> LogStore:
    return LogStore(tmp_path / "logs")


def test_passing_command_passes_with_its_last_line_as_summary(tmp_path, logs):
    result = run_check("unit", "echo collecting; echo '3 passed in 0.1s'", tmp_path, logs=logs)

    assert result.passed
    assert result.exit_code == 0
    assert result.summary == "3 passed in 0.1s"
    assert logs.get(result.log_ref) == "collecting\n3 passed in 0.1s\n"


def test_failing_command_fails_with_its_exit_code_and_combined_output(tmp_path, logs):
    result = run_check(
        "lint", "echo out; echo 'E501 line too long' >&2; exit 3", tmp_path, logs=logs
    )

    assert not result.passed
    assert result.exit_code == 3
    assert result.summary == "E501 line too long"
    assert result.excerpt == "out\nE501 line too long"


def test_timeout_ends_the_whole_process_group_and_says_so(tmp_path, logs):
    pid_file = tmp_path / "child.pid"
    command = f"sleep 60 & echo $! > {pid_file}; echo started; wait"

    # The timeout leaves the shell, on a loaded machine, time enough to start and say so.
    started = time.monotonic()
    result = run_check("slow", command, tmp_path, timeout_s=5, logs=logs)

    assert time.monotonic() - started < 30  # it did not wait for the 60 s sleep
    assert not result.passed
    assert result.exit_code is None
    assert result.summary == "timed out after 5s"
    assert result.excerpt == "started"
    eventually(lambda: _ended(int(pid_file.read_text())), what="the backgrounded sleep to end")


def test_a_cancelled_check_ends_its_whole_process_group(tmp_path, logs):
    pid_file = tmp_path / "child.pid"
    command = f"sleep 600 & echo $! > {pid_file}; wait"

    def cancel(message: str) -> None:
        # What Temporal does to a cancelled threaded activity: raise into it, here at heartbeat.
        if pid_file.exists() and pid_file.read_text().strip():
            raise TimeoutError("cancelled")

    with pytest.raises(TimeoutError):
        run_check(
            "cancelled",
            command,
            tmp_path,
            timeout_s=300,
            on_progress=cancel,
            progress_every_s=0.2,
            logs=logs,
        )

    eventually(lambda: _ended(int(pid_file.read_text())), what="the backgrounded sleep to end")


def _ended(pid: int) -> bool:
    """Whether `pid` has exited (or is left a zombie for init to reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_progress_is_reported_while_a_quiet_command_runs(tmp_path, logs):
    reports: list[str] = []
    go_on = tmp_path / "go-on"

    def report(message: str) -> None:
        reports.append(message)
        if len(reports) == 2:
            go_on.touch()

    # Quiet until the second report came, however long the machine takes: the command's
    # timeout only ends a run in which progress is never reported.
    run_check(
        "quiet",
        f"echo warming up; while [ ! -e {go_on} ]; do sleep 0.1; done",
        tmp_path,
        timeout_s=120,
        on_progress=report,
        progress_every_s=1,
        logs=logs,
    )

    assert len(reports) >= 2
    assert reports[-1].startswith("quiet: running for ")
    assert reports[-1].endswith("warming up")


def test_a_check_run_at_a_lower_priority_runs_niced_in_its_own_scheduling_group(tmp_path, logs):
    # With the kernel's autogroup (Debian's default), a nice value only counts within the
    # process's session: a check in a session of its own gets the niceness as a group.
    autogroup = Path("/proc/self/autogroup")
    show = "ps -o ni= -p $$; cat /proc/self/autogroup 2>/dev/null || true"

    lowered = run_check("lint", show, tmp_path, logs=logs, niceness=10)
    normal = run_check("lint", show, tmp_path, logs=logs)

    niced, *group = logs.get(lowered.log_ref).split("\n", 1)
    assert lowered.passed and niced.strip() == "10"
    assert logs.get(normal.log_ref).split("\n", 1)[0].strip() == "0"
    if autogroup.exists():
        assert group[0].strip().endswith("nice 10"), group
        assert logs.get(normal.log_ref).strip().endswith("nice 0")


def test_command_sees_extra_env_but_not_the_workers_secrets(tmp_path, logs, monkeypatch):
    monkeypatch.setenv("BATON_WEBHOOK_SECRET", "do-not-leak")
    command = 'echo "extra=$APP_ENV secret=${BATON_WEBHOOK_SECRET:-unset}"'

    result = run_check("env", command, tmp_path, env={"APP_ENV": "ci"}, logs=logs)

    assert result.summary == "extra=ci secret=unset"


def test_hadolint_summary_names_the_finding_and_line(tmp_path, logs):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM ubuntu:latest\nCMD ["true"]\n')

    result = hadolint(dockerfile, logs=logs)

    assert not result.passed
    assert result.exit_code == 1
    assert result.summary.startswith("DL3007 line 1: Using latest is prone to errors")
    assert "Dockerfile:1 DL3007 warning" in result.excerpt


def test_hadolint_passes_a_clean_dockerfile(tmp_path, logs):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM debian:12.8\nUSER 10001\nCMD ["true"]\n')

    result = hadolint(dockerfile, logs=logs)

    assert result.passed
    assert result.summary == "no findings"


def test_helm_lint_passes_the_sample_chart_with_its_test_values(logs):
    result = helm_lint(SAMPLE_CHART, [SAMPLE_CHART / "ci" / "test-values.yaml"], logs=logs)

    assert result.passed, result.summary
    assert result.summary == "1 chart(s) linted, 0 chart(s) failed"


def test_helm_lint_summary_is_helms_error_line(tmp_path, logs):
    chart = tmp_path / "broken"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text("{{ .Values.missing.key }}\n")

    result = helm_lint(chart, logs=logs)

    assert not result.passed
    assert result.summary.startswith("[ERROR] templates/: broken/templates/cm.yaml:1:")
    assert "nil pointer evaluating interface {}.key" in result.summary


def test_kustomize_build_fails_on_an_invalid_object(tmp_path, logs):
    (tmp_path / "kustomization.yaml").write_text("resources: [deploy.yaml]\n")
    (tmp_path / "deploy.yaml").write_text(DEPLOYMENT.replace("replicas: 2", 'replicas: "x"'))

    result = kustomize_build(tmp_path, logs=logs)

    assert not result.passed
    assert result.summary == "Deployment/web: spec.replicas: 'x' is not of type 'integer', 'null'"


def test_kustomize_build_passes_valid_manifests(tmp_path, logs):
    (tmp_path / "kustomization.yaml").write_text("resources: [deploy.yaml]\n")
    (tmp_path / "deploy.yaml").write_text(DEPLOYMENT)

    result = kustomize_build(tmp_path, logs=logs)

    assert result.passed, result.summary
    assert result.summary == "1 objects rendered, all valid"


def test_log_store_is_content_addressed(logs):
    first = logs.put("same output\n")

    assert logs.put("same output\n") == first
    assert first.startswith("sha256:")
    with pytest.raises(LogNotFound):
        logs.get("sha256:" + "0" * 64)


def test_excerpt_keeps_the_last_lines_within_the_byte_bound():
    text = "\n".join(f"line {i} " + "x" * 200 for i in range(100))

    short = excerpt(text, lines=5)
    assert short.splitlines()[0].startswith("line 95 ")
    assert len(excerpt(text).encode()) <= 2048
    assert excerpt(text).splitlines()[-1].startswith("line 99 ")


@pytest.mark.parametrize("config_name", [".hadolint.yaml", ".hadolint.yml"])
def test_hadolint_reads_the_config_at_the_repository_root(tmp_path, logs, config_name):
    (tmp_path / config_name).write_text("ignored: [DL3007]\n")
    (tmp_path / "docker").mkdir()
    dockerfile = tmp_path / "docker" / "Dockerfile"
    dockerfile.write_text('FROM ubuntu:latest\nUSER 10001\nCMD ["true"]\n')

    assert not hadolint(dockerfile, logs=logs).passed  # without the root, only its own folder
    result = hadolint(dockerfile, repository_root=tmp_path, logs=logs)

    assert result.passed, result.summary
    assert result.summary == "no findings"


def test_hadolint_config_beside_the_dockerfile_wins_over_the_roots(tmp_path, logs):
    (tmp_path / ".hadolint.yaml").write_text("ignored: [DL3007]\n")
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / ".hadolint.yaml").write_text("ignored: [DL3002]\n")
    dockerfile = tmp_path / "docker" / "Dockerfile"
    dockerfile.write_text('FROM ubuntu:latest\nCMD ["true"]\n')

    result = hadolint(dockerfile, repository_root=tmp_path, logs=logs)

    assert result.summary.startswith("DL3007 line 1: Using latest")
