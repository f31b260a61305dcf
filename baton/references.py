"""Image references as Docker and OCI registries read them: `[registry/]path[:tag][@digest]`.

The grammar is distribution's (github.com/distribution/reference, `reference.go`): a repository
path is lowercase components separated by `/`; a component is `[a-z0-9]+` joined by `.`, `_`,
`__` or runs of `-`; the whole name is at most 255 characters; a tag matches
`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; a digest is `algorithm:hex` (sha256: 64 hex digits). The
first component is a registry host when it holds a `.` or a `:`, or is `localhost`. Pure rules:
nothing here does I/O, so the config model uses them to refuse names Docker would refuse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_MAX = 255
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_DOMAIN = re.compile(
    r"^(?:localhost|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*"
    r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$"
)


class InvalidReference(ValueError):
    """A name, tag, digest or reference Docker would refuse; the message says what to use."""


@dataclass(frozen=True)
class Reference:
    """A parsed reference; `domain` is None when the reference names no registry."""

    domain: str | None
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """`domain/path` (or `path` without a domain)."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        return (
            self.repository
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )


def check_repository(path: str) -> str:
    """`path` if it is a valid repository path (no registry host), else InvalidReference."""
    if not _PATH.match(path):
        hint = _PATH.match(path.lower()) and f" (e.g. {path.lower()})"
        raise InvalidReference(
            f"{path!r} is not a valid image repository name: use lowercase letters, digits and "
            f"the separators . _ __ - between them, / between path components{hint or ''}"
        )
    if len(path) > NAME_MAX:
        raise InvalidReference(f"image name {path[:40]!r}... is longer than {NAME_MAX} characters")
    return path


def check_tag(tag: str) -> str:
    """`tag` if Docker accepts it as a tag, else InvalidReference."""
    if not _TAG.match(tag):
        raise InvalidReference(
            f"{tag!r} is not a valid image tag: use at most 128 of letters, digits, _ . -, "
            "not starting with . or -"
        )
    return tag


def check_digest(digest: str) -> str:
    """`digest` if it is a sha256 digest (`sha256:` and 64 lowercase hex digits)."""
    if not _DIGEST.match(digest):
        raise InvalidReference(f"{digest!r} is not a digest: expected sha256:<64 hex digits>")
    return digest


def check_domain(domain: str) -> str:
    """`domain` if it is a registry host[:port]."""
    if not _DOMAIN.match(domain):
        raise InvalidReference(f"{domain!r} is not a registry host: expected host[:port]")
    return domain


def parse_reference(text: str) -> Reference:
    """Parse `[registry/]path[:tag][@digest]`; InvalidReference names what is wrong."""
    rest, _, digest = text.partition("@")
    first, slash, remainder = rest.partition("/")
    domain = None
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, rest = check_domain(first), remainder
    path, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    check_repository(path)
    if domain and len(domain) + 1 + len(path) > NAME_MAX:
        raise InvalidReference(f"{text!r}: the image name is longer than {NAME_MAX} characters")
    return Reference(
        domain,
        path,
        check_tag(tag) if colon else None,
        check_digest(digest) if digest else None,
    )


DEFAULT_REGISTRY = "docker.io"
"""The registry a reference that names none is pulled from (Docker's default)."""


def registry_of(image: str) -> str:
    """The registry host an image reference is pulled from: its domain, docker.io without one."""
    rest = image.partition("@")[0]
    first, slash, _ = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return DEFAULT_REGISTRY


def mirror_entry_for(image: str) -> str:
    """The `images.mirror` entry (flow YAML) that copies `image` into Baton's registry, e.g.
    `{source: docker.io/library/redis:7, name: mirror/redis}` for `redis:7`."""
    rest = image.partition("@")[0]
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, remainder
    else:
        domain, path = DEFAULT_REGISTRY, rest
    path, colon, tag = path.rpartition(":") if ":" in path else (path, "", "")
    if domain == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    name = path.rsplit("/", 1)[-1]
    return f"{{source: {domain}/{path}:{tag if colon else '<tag>'}, name: mirror/{name}}}"
