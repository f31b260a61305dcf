"""The API's token file (BATON_TOKENS_FILE, `baton.tokens`): the line `baton token create
--for-file` prints, the file read again when it changes (in place, or as Kubernetes swaps a
Secret's `..data` symlink) so a removed line revokes its token, a malformed file refused at the
API's start and logged once on a re-read while the last good content stays; and the API
accepting and refusing file tokens over HTTP."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from baton.config import parse_config
from baton.errors import Unauthenticated
from baton.settings import Settings
from baton.tokens import (
    TOKEN,
    CreatedToken,
    TokenFile,
    TokenFileError,
    TokenStore,
    create_for_file,
    parse_token_file,
    verify,
)
from baton.tools import PROJECT_ROOT
from tests.fakes.forges import Served
from tests.fixtures.cli import run_baton

CONFIG = "apps: [{name: web, repo: web, image: web, chart: chart}]\n" + (
    "auth: {users: {carol: {groups: [release-managers]}}}\n"
)


def secret_of(token: str) -> str:
    match = TOKEN.match(token)
    assert match is not None
    return match.group(2)


def refusal(file: TokenFile, token: str) -> str:
    with pytest.raises(Unauthenticated) as info:
        verify(token, [file])
    return str(info.value)


def test_the_line_for_the_file_holds_the_digest_of_the_secret_never_the_secret() -> None:
    created, line = create_for_file("carol", timedelta(days=30))
    token_id, user, expires, digest = line.split(",")
    assert (token_id, user) == (created.record.id, "carol")
    assert digest == hashlib.sha256(secret_of(created.token).encode()).hexdigest()
    assert secret_of(created.token) not in line
    assert datetime.fromisoformat(expires) == created.record.expires_at
    ((_, record),) = parse_token_file(line, "f").values()
    assert (record.id, record.user, record.expires_at) == (
        token_id,
        "carol",
        created.record.expires_at,
    )
    assert create_for_file("dave")[1].split(",")[2] == ""  # valid until its line is removed


def test_comments_blank_lines_and_a_time_without_a_zone_read_as_written() -> None:
    text = "# carol's laptop\n\n  0123456789ab , carol , 2027-01-31 , " + "a" * 64 + "\n"
    entries = parse_token_file(text, "f")
    assert entries["0123456789ab"][1].expires_at == datetime(2027, 1, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("0123456789ab,carol," + "a" * 64, "expected 4 comma-separated fields"),
        ("0123456789AB,carol,," + "a" * 64, "the id is not 12 lowercase hex digits"),
        ("0123456789ab,,," + "a" * 64, "the user is empty"),
        ("0123456789ab,carol,next week," + "a" * 64, "the expiry is not an ISO 8601 time"),
        ("0123456789ab,carol,,baton_0123456789ab_" + "s" * 43, "the sha256 is not 64"),
    ],
)
def test_a_malformed_line_is_refused_with_the_file_and_its_number(line: str, problem: str) -> None:
    with pytest.raises(TokenFileError) as info:
        parse_token_file(f"# tokens\n{line}\n", "the token file /t")
    assert str(info.value).startswith(f"the token file /t line 2: {problem}")
    assert "s" * 43 not in str(info.value)  # a token pasted in the wrong field is not repeated


def test_a_token_on_two_lines_is_refused() -> None:
    line = "0123456789ab,carol,," + "a" * 64
    with pytest.raises(TokenFileError, match="f line 3: token 0123456789ab is on line 1 too"):
        parse_token_file(f"{line}\n\n{line}\n", "f")


def test_removing_a_line_revokes_its_token_and_a_new_line_is_taken_at_once(tmp_path: Path) -> None:
    (carol, carol_line), (dave, dave_line) = create_for_file("carol"), create_for_file("dave")
    path = tmp_path / "tokens"
    path.write_text(f"{carol_line}\n")
    file = TokenFile(path)
    assert verify(carol.token, [file]).user == "carol"
    assert "unknown token" in refusal(file, dave.token)

    path.write_text(f"{dave_line}\n")
    assert verify(dave.token, [file]).user == "dave"
    assert "unknown token" in refusal(file, carol.token)


def test_expired_and_tampered_file_tokens_are_refused(tmp_path: Path) -> None:
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    expired, expired_line = create_for_file("carol", timedelta(minutes=1), now=an_hour_ago)
    good, good_line = create_for_file("dave")
    path = tmp_path / "tokens"
    path.write_text(f"{expired_line}\n{good_line}\n")
    file = TokenFile(path)
    assert f"token {expired.record.id} is expired" in refusal(file, expired.token)
    tampered = good.token[:-1] + ("A" if good.token[-1] != "A" else "B")
    assert "unknown token" in refusal(file, tampered)


def kubernetes_volume(root: Path, content: str, version: int) -> None:
    """Write `content` as the Secret volume's key `tokens` the way the kubelet does: a new
    timestamped directory, `..data` swapped to it by renaming a symlink, the old one removed."""
    new = root / f"..2026_12_01_15_00_0{version}.000000001"
    new.mkdir()
    (new / "tokens").write_text(content)
    previous = os.readlink(root / "..data") if (root / "..data").is_symlink() else None
    if previous:  # the same size and mtime as the file it replaces
        old = (root / previous / "tokens").stat()
        os.utime(new / "tokens", ns=(old.st_atime_ns, old.st_mtime_ns))
    os.symlink(new.name, root / "..data_tmp")
    os.rename(root / "..data_tmp", root / "..data")
    if not (root / "tokens").is_symlink():
        os.symlink("..data/tokens", root / "tokens")
    if previous:
        shutil.rmtree(root / previous)


def test_a_secret_updated_by_kubernetes_swapping_its_data_symlink_is_read_again(
    tmp_path: Path,
) -> None:
    (carol, carol_line), (alice, alice_line) = create_for_file("carol"), create_for_file("alice")
    assert len(carol_line) == len(alice_line)
    kubernetes_volume(tmp_path, f"{carol_line}\n", 1)
    file = TokenFile(tmp_path / "tokens")
    assert verify(carol.token, [file]).user == "carol"

    kubernetes_volume(tmp_path, f"{alice_line}\n", 2)
    assert verify(alice.token, [file]).user == "alice"
    assert "unknown token" in refusal(file, carol.token)


def test_a_malformed_new_content_is_logged_once_and_the_last_good_one_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    carol, line = create_for_file("carol")
    path = tmp_path / "tokens"
    path.write_text(f"{line}\n")
    file = TokenFile(path)
    path.write_text(f"{line}\nnot a token line\n")
    with caplog.at_level(logging.ERROR, logger="baton.tokens"):
        for _ in range(3):
            assert verify(carol.token, [file]).user == "carol"
    assert [r.getMessage() for r in caplog.records] == [
        (
            f"the token file {path} line 2: expected 4 comma-separated fields (id,user,expires,"
            "sha256), found 1: print a line with `baton token create --for-file`; the tokens read "
            "before stay in force until it is fixed"
        )
    ]
    path.write_text("")  # fixed, by removing every line
    assert "unknown token" in refusal(file, carol.token)


def test_a_missing_file_holds_no_tokens_until_it_appears(tmp_path: Path) -> None:
    """deploy/kubernetes mounts the Secret optionally: the API starts before it exists."""
    carol, line = create_for_file("carol")
    path = tmp_path / "tokens"
    file = TokenFile(path)
    assert "unknown token" in refusal(file, carol.token)
    path.write_text(f"{line}\n")
    assert verify(carol.token, [file]).user == "carol"


def test_a_token_in_the_file_and_in_tokens_db_is_a_configuration_error(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.db")
    kept = store.create("carol")
    path = tmp_path / "tokens"
    path.write_text(f"{kept.record.id},carol,,{'a' * 64}\n")
    with pytest.raises(TokenFileError, match=f"token {kept.record.id} is in tokens.db too"):
        TokenFile(path, known=store.ids)

    # An id tokens.db takes after the file was read: the token is refused, naming why.
    carol, line = create_for_file("carol")
    path.write_text(f"{line}\n")
    file = TokenFile(path, known=store.ids)
    with sqlite3.connect(store.path) as db:
        db.execute(
            "INSERT INTO tokens (id, user, digest, created_at) VALUES (?, 'eve', ?, ?)",
            (carol.record.id, "b" * 64, datetime.now(UTC).isoformat()),
        )
    with pytest.raises(Unauthenticated, match="both in the token file and in tokens.db"):
        verify(carol.token, [store, file])


def test_the_cli_prints_the_token_and_the_files_line_and_stores_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "BATON_HOME": str(tmp_path / "home")}
    done = run_baton(
        "token", "create", "--user", "carol", "--expires", "30d", "--for-file", env=env
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    token = next(line for line in lines if line.startswith("baton_"))
    ((digest, record),) = parse_token_file(lines[-1], "stdout").values()
    assert (record.id, record.user) == (token.split("_")[1], "carol")
    assert digest == hashlib.sha256(secret_of(token).encode()).hexdigest()
    assert not (tmp_path / "home" / "tokens.db").exists()

    quiet = run_baton("token", "create", "--user", "dave", "--for-file", "-q", env=env)
    shown, line = quiet.stdout.splitlines()
    assert line.startswith(shown.split("_")[1] + ",dave,,")

    described = run_baton(
        "token", "create", "--user", "x", "--for-file", "--description", "d", env=env
    )
    assert described.returncode == 2
    assert described.stderr.splitlines() == [
        (
            "error: a token file keeps no description: drop --description and put it on a `#` "
            "comment line above the token's line"
        )
    ]


def test_token_ls_shows_the_files_tokens_and_revoke_says_to_remove_their_line(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "BATON_HOME": str(tmp_path / "home")}
    kept = TokenStore(Settings(home=tmp_path / "home").tokens_file).create("carol").record
    _, line = create_for_file("dave", timedelta(days=1))
    file = tmp_path / "tokens"
    file.write_text(f"# the release bot\n{line}\n")
    env["BATON_TOKENS_FILE"] = str(file)
    file_id, kept_id = line.split(",")[0], kept.id

    listed = run_baton("token", "ls", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [(t["id"], t["user"], t["source"]) for t in json.loads(listed.stdout)]
    assert rows == [(kept_id, "carol", "db"), (file_id, "dave", "file")]
    table = run_baton("token", "ls", env=env).stdout.splitlines()
    assert [row.split()[:4] for row in table] == [
        [kept_id, "carol", "active", "db"],
        [file_id, "dave", "active", "file"],
    ]

    revoked = run_baton("token", "revoke", file_id, env=env)
    assert revoked.returncode == 2
    assert revoked.stderr.splitlines() == [
        (
            f"error: token {file_id} is in the token file {file}: remove its line there (on "
            "Kubernetes, from the `tokens` key of the API's Secret); the API stops accepting it "
            "when it reads the file again"
        )
    ]
    assert run_baton("token", "revoke", kept_id, env=env).returncode == 0


def test_the_api_refuses_to_start_with_a_malformed_token_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{create_for_file('carol')[1]}\n0123456789ab,carol\n")
    started = subprocess.run(
        [sys.executable, "-m", "api"],
        check=False,
        cwd=PROJECT_ROOT,
        env={**os.environ, "BATON_HOME": str(tmp_path / "home"), "BATON_TOKENS_FILE": str(path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 1
    assert started.stderr.splitlines() == [
        (
            f"error: the token file {path} line 2: expected 4 comma-separated fields (id,user,"
            "expires,sha256), found 2: print a line with `baton token create --for-file`"
        )
    ]


@pytest.fixture
def served_api(
    tmp_path: Path, temporal_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path]]:
    """The API on loopback reading the token file `tokens` in a directory of the test's: its URL
    and the file's path."""
    path = tmp_path / "tokens"
    path.write_text("# Baton API tokens\n")
    monkeypatch.setenv("BATON_TOKENS_FILE", str(path))
    settings = Settings(home=tmp_path / "home")
    served = Served(create_app(settings, parse_config(CONFIG), temporal_env.client)).start()
    try:
        yield served.url, path
    finally:
        served.stop()


def me(url: str, created: CreatedToken) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/me", headers={"Authorization": f"Bearer {created.token}"})


def test_the_api_takes_a_file_token_and_refuses_it_once_revoked_or_expired(
    served_api: tuple[str, Path],
) -> None:
    url, path = served_api
    carol, carol_line = create_for_file("carol", timedelta(days=1))
    expired, expired_line = create_for_file(
        "dave", timedelta(minutes=1), now=datetime.now(UTC) - timedelta(hours=1)
    )
    assert me(url, carol).status_code == 401  # not in the file yet
    path.write_text(f"{carol_line}\n{expired_line}\n")

    answer = me(url, carol)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "user": "carol",
        "groups": ["release-managers"],
        "forge_users": [],
        "via": "token",
        "issuer": "baton",
        "subject": carol.record.id,
    }
    refused = me(url, expired)
    assert (refused.status_code, refused.json()) == (
        401,
        {"error": f"token {expired.record.id} is expired: ask an administrator for a new one"},
    )

    path.write_text(f"{carol_line}\nnot a token line\n")  # malformed: carol's still counts
    assert me(url, carol).status_code == 200

    path.write_text(f"{expired_line}\n")  # carol's line removed: revoked, no restart
    revoked = me(url, carol)
    assert (revoked.status_code, revoked.json()) == (
        401,
        {"error": "unknown token: ask an administrator for one"},
    )
