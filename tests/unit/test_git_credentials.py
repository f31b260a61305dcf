"""A forge token reaches git through a 0600 credential file, never its command line: a real git
fetching and pushing over smart HTTP (`git http-backend`) from a server that demands Basic auth,
as GitHub's, Gitea's and Azure DevOps' do."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from git import Repo

from baton import private
from baton.forges.http import with_credentials
from baton.workspace import Workspace, authenticated
from tests.fixtures.http import Handler, serving

TOKEN = "ghs_s3cretToken+/="
USER = "x-access-token"


def git_forge(root: Path) -> type[Handler]:
    """`git http-backend` behind HTTP Basic auth, serving the repositories in `root`."""
    expected = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()

    class GitForge(Handler):
        def do_GET(self) -> None:
            self.backend()

        def do_POST(self) -> None:
            self.backend()

        def backend(self) -> None:
            if self.headers.get("Authorization") != expected:
                self.answer(401, headers={"WWW-Authenticate": 'Basic realm="forge"'})
                return
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            cgi = subprocess.run(
                ["git", "http-backend"],
                input=body,
                capture_output=True,
                check=True,
                env={
                    "GIT_PROJECT_ROOT": str(root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "REMOTE_USER": USER,
                },
            )
            head, _, payload = cgi.stdout.partition(b"\r\n\r\n")
            headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
            status = int(headers.pop("Status", "200").split()[0])
            self.answer(status, payload, headers)

    return GitForge


@pytest.fixture
def forge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The base URL of a forge serving `app.git` over smart HTTP to holders of the token."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(private.tempfile, "tempdir", None)
    monkeypatch.setattr(private, "_own", None)
    served = tmp_path / "served"
    seed = Repo.init(tmp_path / "seed", initial_branch="main")
    (tmp_path / "seed" / "README").write_text("hello\n")
    seed.git.add("README")
    seed.git.commit(
        "-m",
        "first",
        env={
            "GIT_AUTHOR_NAME": "a",
            "GIT_AUTHOR_EMAIL": "a@x",
            "GIT_COMMITTER_NAME": "a",
            "GIT_COMMITTER_EMAIL": "a@x",
        },
    )
    Repo.clone_from(seed.git_dir, served / "app.git", bare=True)
    Repo(served / "app.git").git.config("http.receivepack", "true")
    with serving(git_forge(served)) as url:
        yield url


def test_a_fetch_and_a_push_authenticate_without_the_token_on_any_command_line(
    forge: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "git-trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))  # every git command line, as git ran it
    url = with_credentials(f"{forge}/app.git", USER, TOKEN)

    mirror = Workspace(tmp_path / "workspace").mirror("acme/app", url)
    with authenticated(mirror.git, url) as plain:
        mirror.git.push(plain, "refs/heads/main:refs/heads/copy")

    assert mirror.git.rev_parse("refs/heads/main")
    assert "refs/heads/copy" in Repo(tmp_path / "served" / "app.git").git.show_ref()
    commands = trace.read_text()
    assert f"{USER}@127.0.0.1" in commands
    assert "s3cret" not in commands
    assert "s3cret" not in Path(mirror.git_dir, "config").read_text()
    leftovers = [p for p in (tmp_path / "tmp").rglob("*") if p.is_file()]
    assert leftovers == []


def test_the_forge_refuses_git_without_the_token(forge: str, tmp_path: Path) -> None:
    """What makes the test above prove something: no credential, no answer."""
    mirror = Repo.init(tmp_path / "bare", bare=True)
    with pytest.raises(Exception, match="Authentication failed|could not read Username"):
        mirror.git.ls_remote(f"{forge}/app.git", env={"GIT_TERMINAL_PROMPT": "0"})
