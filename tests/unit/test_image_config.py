"""Image names, tags, image tests and mirror entries in `baton.yaml`: what Docker would refuse is
refused by `baton config check`, with the field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.config import parse_config
from baton.references import InvalidReference, parse_reference
from tests.unit.test_config import APP, check, problems

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "cases"


def test_case_09_config_check_refuses_an_image_name_with_capitals() -> None:
    result = check(CASES / "09-image-name-uppercase" / "baton.yaml")

    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.endswith(
        "baton.yaml: apps[0].image: 'ExampleOrg/Hello-World' is not a valid image repository "
        "name: use lowercase letters, digits and the separators . _ __ - between them, / between "
        "path components (e.g. exampleorg/hello-world)"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("image", ["web-", "-web", "team//web", "web:1.0", "we b", "Web"])
def test_image_names_docker_refuses_are_refused(image: str) -> None:
    (problem,) = problems(APP.replace("image: web", f"image: '{image}'"))
    assert problem.startswith(f"apps[0].image: {image!r} is not a valid image repository name")


@pytest.mark.parametrize("image", ["web", "team/web", "a.b_c__d--e/f0"])
def test_image_names_docker_accepts_are_accepted(image: str) -> None:
    assert parse_config(APP.replace("image: web", f"image: {image}")).apps[0].image == image


def test_registry_url_must_be_a_host() -> None:
    assert problems(APP + "registry: {url: 'my registry'}\n") == [
        "registry.url: 'my registry' is not a registry host: expected host[:port]"
    ]


def test_references_parse_as_docker_reads_them() -> None:
    ref = parse_reference("127.0.0.1:5000/library/redis:7.2@sha256:" + "a" * 64)
    assert (ref.domain, ref.path, ref.tag) == ("127.0.0.1:5000", "library/redis", "7.2")
    assert parse_reference("localhost/base:bookworm").domain == "localhost"
    assert parse_reference("team/app").domain is None
    with pytest.raises(InvalidReference, match="'-bad' is not a valid image tag"):
        parse_reference("docker.io/library/redis:-bad")
    with pytest.raises(InvalidReference, match="is longer than 255 characters"):
        parse_reference("r.example/" + "a" * 250)


MIRROR = APP + "images:\n  mirror:\n"


def test_mirror_sources_need_a_registry_and_a_tag() -> None:
    text = MIRROR + (
        "    - {source: 'docker.io/library/redis', name: mirror/redis}\n"
        "    - {source: 'redis:7', name: mirror/redis}\n"
        "    - {source: 'docker.io/library/redis:7', name: Mirror/Redis}\n"
        "    - {source: 'docker.io/library/redis:x y', name: mirror/redis}\n"
    )
    found = problems(text)
    assert found[0].startswith("images.mirror[0].source: 'docker.io/library/redis': give ")
    assert found[1].startswith("images.mirror[1].source: 'redis:7': give <registry>/")
    assert found[2].startswith("images.mirror[2].name: 'Mirror/Redis' is not a valid image")
    assert found[3] == (
        "images.mirror[3].source: 'x y' is not a valid image tag: use at most 128 of letters, "
        "digits, _ . -, not starting with . or -"
    )


def test_two_mirror_entries_cannot_write_the_same_tag() -> None:
    text = MIRROR + (
        "    - {source: 'docker.io/library/redis:7', name: mirror/redis}\n"
        "    - {source: 'quay.io/other/redis:7', name: mirror/redis}\n"
    )
    assert problems(text) == [
        "images: two mirror entries write mirror/redis:7: give each its own name"
    ]


def test_image_test_needs_a_command_or_a_probe() -> None:
    text = APP + "    image_test: {timeout_s: 30}\n"
    assert problems(text) == [
        "apps[0].image_test: set command (run inside the image), http (a probe), or both"
    ]
    text = APP + "    image_test: {http: {port: 8080, path: healthz}}\n"
    assert problems(text) == ["apps[0].image_test.http.path: must start with /, e.g. /healthz"]


def test_build_secrets_name_where_the_value_lives() -> None:
    text = APP + "    build_secrets: [{id: npmrc}]\n"
    assert problems(text) == [
        "apps[0].build_secrets[0]: build secret 'npmrc': set exactly one of env or file"
    ]
