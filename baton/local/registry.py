"""The embedded OCI registry: Debian's CNCF distribution `docker-registry` with htpasswd auth."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

from baton.tools import find_tool

BCRYPT_COST = 4
"""The htpasswd lines' bcrypt cost: the least bcrypt allows. htpasswd auth has no session, so
the registry checks the password on every request: at htpasswd's default, 5, that took about 3
of the 4.5 ms of CPU an authenticated `GET /v2/` took on a 2-core machine; at 4, 1.3 (issue 18:
a PR + CI makes about 75 registry requests beside its long tests). The file stays 0600 on the
registry's host; a password the stack generated (`Settings.local_secret`) gains nothing from a
higher cost; against a chosen one, each guess costs an attacker half what it did at 5."""


def prepare_registry(workdir: Path, host: str, users: Mapping[str, str]) -> Path:
    """Write the registry's htpasswd (bcrypt at `BCRYPT_COST`; one line per username: password
    of `users`) and config under `workdir`; returns the config file.

    The distribution registry's htpasswd auth only authenticates: every user it knows may push
    and pull (no per-user permissions; its `registry/auth/htpasswd` package, access.go), so a
    second user for pulls is a separate secret, not a weaker one."""
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [
        subprocess.run(
            [find_tool("htpasswd"), "-Bbn", "-C", str(BCRYPT_COST), username, password],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for username, password in users.items()
    ]
    (workdir / "htpasswd").write_text("".join(f"{line}\n" for line in lines))
    (workdir / "htpasswd").chmod(0o600)
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "storage")},
            "delete": {"enabled": True},
        },
        "http": {"addr": host, "secret": secrets.token_hex(16)},
        "auth": {"htpasswd": {"realm": "baton", "path": str(workdir / "htpasswd")}},
    }
    path = workdir / "config.yml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def registry_command(config: Path) -> list[str]:
    return [find_tool("docker-registry"), "serve", str(config)]
