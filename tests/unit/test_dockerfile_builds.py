"""Which Dockerfiles the builder on a machine can build: BuildKit syntax is found line by line,
and a Dockerfile that needs more than the builder has is refused before any build, naming the
line and what to install."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.images import Builder, BuildKitRequired, buildkit_features, check_buildable

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "cases"
CLASSIC = Builder((), "Docker 20.10.24's classic builder", buildkit=False, frontend_1_4=False)
ENGINE_20 = Builder(
    ("/usr/bin/docker", "build"), "Docker 20.10.24's built-in BuildKit", True, False
)
ENGINE_27 = Builder(("/usr/bin/docker", "buildx", "build", "--load"), "docker buildx", True, True)

USER_DOCKERFILE = """\
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}
# RUN --mount=type=cache in a comment is not an instruction
RUN --mount=type=cache,target=/root/.cache/pip \\
    --mount=type=secret,id=npmrc,target=/root/.npmrc \\
    python3 -m pip --version
RUN echo $((1<<4))
COPY --link app.py .
RUN <<EOF
set -e
echo built > /built
EOF
"""


def test_buildkit_syntax_is_found_on_the_line_it_is_written_on() -> None:
    found = [(f.line, f.syntax, f.needs_frontend_1_4) for f in buildkit_features(USER_DOCKERFILE)]

    assert found == [
        (4, "RUN --mount=type=cache,target=/root/.cache/pip", False),
        (5, "RUN --mount=type=secret,id=npmrc,target=/root/.npmrc", False),
        (8, "COPY --link", True),
        (9, "a heredoc (<<EOF)", True),
    ]


def test_case_07_cache_mount_is_refused_by_the_classic_builder_naming_the_line() -> None:
    with pytest.raises(BuildKitRequired) as refused:
        check_buildable(CASES / "07-buildkit-dockerfile" / "Dockerfile", CLASSIC)

    assert str(refused.value) == (
        "Dockerfile line 6: RUN --mount=type=cache,target=/root/.cache/pip needs BuildKit, and "
        "this machine only has Docker 20.10.24's classic builder: install the docker-buildx "
        "plugin (or a docker CLI older than 23) on the build workers"
    )


def test_case_07_builds_with_the_engines_buildkit() -> None:
    check_buildable(CASES / "07-buildkit-dockerfile" / "Dockerfile", ENGINE_20)


def test_heredoc_needs_dockerfile_syntax_1_4(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(USER_DOCKERFILE.replace("COPY --link", "COPY"))

    with pytest.raises(BuildKitRequired, match=r"^Dockerfile line 9: a heredoc \(<<EOF\) needs"):
        check_buildable(dockerfile, ENGINE_20)
    check_buildable(dockerfile, ENGINE_27)
    # A syntax directive brings its own frontend, which BuildKit fetches.
    dockerfile.write_text("# syntax=docker/dockerfile:1.7\n" + dockerfile.read_text())
    check_buildable(dockerfile, ENGINE_20)
    with pytest.raises(BuildKitRequired, match="line 5: RUN --mount=type=cache"):
        check_buildable(dockerfile, CLASSIC)


def test_a_dockerfile_without_buildkit_syntax_builds_anywhere() -> None:
    sample = Path(__file__).resolve().parents[2] / "examples" / "sample-app" / "Dockerfile"

    assert buildkit_features(sample.read_text()) == []
    check_buildable(sample, CLASSIC)
