"""Moving pins of a mirrored image to the digest an upstream update brought."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from baton.mirror import MirroredImage, MirrorState, api_path, bump_pins, mark_bumped, readable_tag
from baton.references import parse_reference

OLD, NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64
REPO = "127.0.0.1:5000/mirror/redis"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
UPDATED = MirroredImage(
    source="docker.io/library/redis:7.2",
    source_digest=NEW,
    image=f"{REPO}:{readable_tag('7.2', NEW)}",
    digest=NEW,
    config_commit=None,
    mirrored_at=NOW,
    checked_at=NOW,
    previous_digest=OLD,
    update_waiting=True,
)


def test_pins_by_readable_tag_and_by_digest_move_to_the_new_digest() -> None:
    text = (
        f"FROM {REPO}:7.2-aaaaaaaaaaaa\nimage: {REPO}@{OLD}\nimage: {REPO}:7.2-aaaaaaaaaaaa@{OLD}\n"
    )

    assert UPDATED.previous_image == f"{REPO}:7.2-aaaaaaaaaaaa"
    assert bump_pins(text, UPDATED) == (
        f"FROM {REPO}:7.2-bbbbbbbbbbbb\n"
        f"image: {REPO}:7.2-bbbbbbbbbbbb@{NEW}\n"
        f"image: {REPO}:7.2-bbbbbbbbbbbb@{NEW}\n"
    )


def test_other_tags_and_other_repositories_are_left_alone() -> None:
    text = (
        f"FROM {REPO}:7.2-aaaaaaaaaaaa1\n"
        f"FROM {REPO}:7.0-aaaaaaaaaaaa\n"
        f"FROM {REPO}-sentinel:7.2-aaaaaaaaaaaa\n"
        f"FROM {REPO}\n"
    )

    assert bump_pins(text, UPDATED) == text


def test_an_image_without_a_previous_digest_moves_nothing() -> None:
    first = UPDATED.model_copy(update={"previous_digest": None, "update_waiting": False})
    text = f"FROM {REPO}:7.2-aaaaaaaaaaaa\n"

    assert first.previous_image is None
    assert bump_pins(text, first) == text


def test_docker_hub_official_images_are_read_under_library() -> None:
    assert api_path(parse_reference("docker.io/redis:7")) == "library/redis"
    assert api_path(parse_reference("docker.io/bitnami/redis:7")) == "bitnami/redis"
    assert api_path(parse_reference("quay.io/redis:7")) == "redis"


def test_an_update_waits_while_a_bump_pr_is_open_and_not_once_none_is(tmp_path: Path) -> None:
    state = MirrorState(tmp_path / "mirrors.json")
    state.save({"mirror/redis:7.2": UPDATED})

    mark_bumped(state, UPDATED, ["web#4"])
    (opened,) = state.load().values()
    mark_bumped(state, UPDATED, [])  # merged: nothing pins the previous digest any more
    (merged,) = state.load().values()

    assert (opened.update_waiting, opened.bump_prs) == (True, ["web#4"])
    assert (merged.update_waiting, merged.bump_prs) == (False, ["web#4"])
