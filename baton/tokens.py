"""Baton API tokens: created by an administrator for a person or a bot, shown once, kept hashed.

A token reads `baton_<id>_<secret>`: `id` (12 hex) names it in listings and decision records,
`secret` (32 random bytes, URL-safe base64) is never stored; the store keeps its SHA-256, which
is enough for a secret with 256 bits of entropy (no password stretching needed), and compares
digests in constant time. The store is an SQLite file under BATON_HOME (`tokens.db`, mode 0600),
shared by the API process, which verifies tokens, and the administrator's `baton token` commands.
A token carries no groups: its holder's come from `auth.users`, wherever the token is kept.

Where the API's home is not shared (Kubernetes: an emptyDir per replica), tokens live in a token
file instead, kube-apiserver's `--token-auth-file` pattern: a read-only file every replica mounts
from a Secret, named by BATON_TOKENS_FILE and read by the API alone. `baton token create
--for-file` prints its line, one token a line, the same values as a `tokens.db` row:

    <id>,<user>,<expires>,<sha256>
    3f2a9c0d1b4e,carol,2027-01-31T09:00:00+00:00,<64 hex: SHA-256 of the secret>

`id` is 12 lowercase hex digits, `user` the user name (no comma), `expires` an ISO 8601 time (one
without a zone is UTC) or empty (valid until its line is removed), `sha256` the hex SHA-256 of the
token's secret, never the token. Blank lines and lines starting with `#` are skipped. The API reads
the file at startup (a malformed line, or an id `tokens.db` also holds, stops it with the file and
line) and again whenever it changes, Kubernetes' swap of a Secret's `..data` symlink included:
removing a line revokes its token; a malformed new content is logged once and the last good one
stays in force. A missing file holds no tokens (the Secret volume is optional in deploy/kubernetes).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from baton import config
from baton.errors import BadRequest, ConfigurationError, Unauthenticated

log = logging.getLogger(__name__)

PREFIX = "baton_"
TOKEN = re.compile(r"^baton_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
TOKEN_ID = re.compile(r"^[0-9a-f]{12}$")
DIGEST = re.compile(r"^[0-9a-f]{64}$")
FILE_FIELDS = "id,user,expires,sha256"

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    digest TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
)
"""


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `1h30m`, `12h`, `30d`, `2w` as a timedelta (`baton.config.parse_duration`);
    BadRequest names the accepted forms."""
    duration = config.parse_duration(text)
    if duration is None:
        raise BadRequest(f"duration {text!r} is not understood: give e.g. 30m, 12h, 30d or 2w")
    return duration


class TokenRecord(BaseModel):
    """What the store knows of a token: never its secret."""

    id: str
    user: str
    description: str = ""
    created_at: datetime | None = Field(default=None, description="None: from the token file")
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def state(self, now: datetime) -> str:
        """`active`, `expired` or `revoked`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


class CreatedToken(BaseModel):
    """A new token: its record, and the token itself, shown this once."""

    record: TokenRecord
    token: str = Field(description="baton_<id>_<secret>: give it to its holder; never stored")


class TokenFileError(ConfigurationError):
    """The token file (BATON_TOKENS_FILE) cannot be read, has a malformed line, or names a token
    `tokens.db` holds too; the message names the file and the line."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _mint(
    user: str, expires_in: timedelta | None, description: str, now: datetime
) -> tuple[CreatedToken, str]:
    """A new token for `user` and the digest of its secret."""
    if not user.strip():
        raise BadRequest("a token needs a user: give --user NAME")
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    record = TokenRecord(
        id=token_id,
        user=user.strip(),
        description=description,
        created_at=now,
        expires_at=now + expires_in if expires_in else None,
    )
    return CreatedToken(record=record, token=f"{PREFIX}{token_id}_{secret}"), _digest(secret)


def create_for_file(
    user: str, expires_in: timedelta | None = None, now: datetime | None = None
) -> tuple[CreatedToken, str]:
    """A new token for `user` and its line for the token file (`id,user,expires,sha256`), which
    holds the secret's digest, never the secret; nothing is stored."""
    if "," in user or not user.isprintable():
        raise BadRequest(
            f"user {user.strip()!r} cannot go in a token file: a user there is one line, no comma"
        )
    # Whole seconds: the line is read and edited by people.
    created, digest = _mint(user, expires_in, "", (now or datetime.now(UTC)).replace(microsecond=0))
    record = created.record
    expires = record.expires_at.isoformat() if record.expires_at else ""
    return created, f"{record.id},{record.user},{expires},{digest}"


class TokenSource(Protocol):
    """Where tokens are kept: the digest of a token's secret and its record, by id."""

    def find(self, token_id: str) -> tuple[str, TokenRecord] | None: ...


def verify(token: str, sources: Sequence[TokenSource], now: datetime | None = None) -> TokenRecord:
    """The record of a valid token kept in one of `sources`; Unauthenticated says why any other
    is refused."""
    match = TOKEN.match(token)
    if not match:
        raise Unauthenticated("the token is not a Baton API token (baton_<id>_<secret>)")
    token_id, secret = match.groups()
    found = [entry for source in sources if (entry := source.find(token_id)) is not None]
    if len(found) > 1:
        raise Unauthenticated(
            f"token {token_id} is both in the token file and in tokens.db: an administrator "
            "must keep it in one"
        )
    # Compare against a digest even for an unknown id, so timing does not tell ids apart.
    digest, record = found[0] if found else (_digest(""), None)
    if not hmac.compare_digest(digest, _digest(secret)) or record is None:
        raise Unauthenticated("unknown token: ask an administrator for one")
    state = record.state(now or datetime.now(UTC))
    if state != "active":
        raise Unauthenticated(f"token {token_id} is {state}: ask an administrator for a new one")
    return record


class TokenStore:
    """The API tokens in `path` (an SQLite file, created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        con = sqlite3.connect(self.path, timeout=10)
        con.row_factory = sqlite3.Row
        try:
            with con:
                con.execute(SCHEMA)
                yield con
        finally:
            con.close()

    def create(
        self,
        user: str,
        expires_in: timedelta | None = None,
        description: str = "",
        now: datetime | None = None,
    ) -> CreatedToken:
        """A new token for `user`, valid for `expires_in` (None: until revoked)."""
        now = now or datetime.now(UTC)
        created, digest = _mint(user, expires_in, description, now)
        record = created.record
        with self._db() as con:
            con.execute(
                "INSERT INTO tokens (id, user, digest, description, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.user,
                    digest,
                    description,
                    now.isoformat(),
                    record.expires_at.isoformat() if record.expires_at else None,
                ),
            )
        return created

    def list(self) -> list[TokenRecord]:
        """Every token, oldest first (revoked and expired ones too)."""
        with self._db() as con:
            rows = con.execute("SELECT * FROM tokens ORDER BY created_at").fetchall()
        return [_record(row) for row in rows]

    def revoke(self, token_id: str, now: datetime | None = None) -> TokenRecord:
        """Revoke a token by id; it stops working at once. BadRequest when there is no such id."""
        now = now or datetime.now(UTC)
        with self._db() as con:
            con.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now.isoformat(), token_id),
            )
            row = con.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        if row is None:
            raise BadRequest(f"no token {token_id!r}: list them with `baton token ls`")
        return _record(row)

    def ids(self) -> set[str]:
        """The id of every token kept here (revoked and expired ones too)."""
        with self._db() as con:
            return {row["id"] for row in con.execute("SELECT id FROM tokens")}

    def find(self, token_id: str) -> tuple[str, TokenRecord] | None:
        with self._db() as con:
            row = con.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return (row["digest"], _record(row)) if row is not None else None

    def verify(self, token: str, now: datetime | None = None) -> TokenRecord:
        """The record of a valid token of this store (`verify`)."""
        return verify(token, [self], now)


def _record(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        user=row["user"],
        description=row["description"],
        created_at=datetime.fromisoformat(row["created_at"]),
        expires_at=datetime.fromisoformat(row["expires_at"]) if row["expires_at"] else None,
        revoked_at=datetime.fromisoformat(row["revoked_at"]) if row["revoked_at"] else None,
    )


def parse_token_file(text: str, where: str) -> dict[str, tuple[str, TokenRecord]]:
    """The tokens of a token file's `text` by id (digest, record); TokenFileError names `where`
    and the line of the first malformed or repeated one."""
    entries: dict[str, tuple[str, TokenRecord]] = {}
    lines: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            digest, record = _file_entry(line)
        except ValueError as exc:
            raise TokenFileError(f"{where} line {number}: {exc}") from None
        if record.id in lines:
            raise TokenFileError(
                f"{where} line {number}: token {record.id} is on line {lines[record.id]} too"
            )
        entries[record.id], lines[record.id] = (digest, record), number
    return entries


def _file_entry(line: str) -> tuple[str, TokenRecord]:
    # Messages never quote a field: a token pasted in the wrong place must not reach the logs.
    fields = [field.strip() for field in line.split(",")]
    if len(fields) != 4:
        raise ValueError(
            f"expected 4 comma-separated fields ({FILE_FIELDS}), found {len(fields)}: "
            "print a line with `baton token create --for-file`"
        )
    token_id, user, expires, digest = fields
    if not TOKEN_ID.match(token_id):
        raise ValueError("the id is not 12 lowercase hex digits")
    if not user:
        raise ValueError("the user is empty")
    try:
        expires_at = datetime.fromisoformat(expires) if expires else None
    except ValueError:
        raise ValueError(
            "the expiry is not an ISO 8601 time (e.g. 2027-01-31T09:00:00+00:00) nor empty"
        ) from None
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    if not DIGEST.match(digest):
        raise ValueError(
            "the sha256 is not 64 lowercase hex digits (the digest of the secret, never the token)"
        )
    return digest, TokenRecord(id=token_id, user=user, expires_at=expires_at)


class TokenFile:
    """The token file an administrator keeps (BATON_TOKENS_FILE): read at once, TokenFileError
    refusing a bad one, and again whenever it changes (its inode, size or times: a Secret's new
    content swapped in by Kubernetes is a new file behind the same path)."""

    def __init__(self, path: Path, known: Callable[[], Collection[str]] = frozenset) -> None:
        """`known`: the ids kept elsewhere (`TokenStore.ids`), which the file must not repeat."""
        self.path = path
        self._known = known
        self._lock = threading.Lock()
        self._seen = self._signature()
        self._entries = self._read()

    def find(self, token_id: str) -> tuple[str, TokenRecord] | None:
        self._refresh()
        return self._entries.get(token_id)

    def list(self) -> list[TokenRecord]:
        """Every token of the file, in the file's order (expired ones too)."""
        self._refresh()
        return [record for _, record in self._entries.values()]

    def _signature(self) -> tuple[int, ...] | None:
        try:
            stat = os.stat(self.path)  # follows the symlinks: the file the path names now
        except OSError:
            return None
        return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)

    def _refresh(self) -> None:
        if self._signature() == self._seen:
            return
        with self._lock:
            signature = self._signature()
            if signature == self._seen:
                return  # another request read it meanwhile
            # Taken before the read: a change while reading is read again on the next call.
            self._seen = signature
            try:
                self._entries = self._read()
            except TokenFileError as exc:
                log.error("%s; the tokens read before stay in force until it is fixed", exc)
                return
            log.info("read the token file %s again: %d token(s)", self.path, len(self._entries))

    def _read(self) -> dict[str, tuple[str, TokenRecord]]:
        where = f"the token file {self.path}"
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            log.warning("%s does not exist: no tokens from it until it does", where)
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
            raise TokenFileError(f"{where} cannot be read: {reason}") from None
        entries = parse_token_file(text, where)
        if both := sorted(set(entries) & set(self._known())):
            raise TokenFileError(
                f"{where}: token {', '.join(both)} is in tokens.db too: keep each token in one "
                "place (remove its line from the file)"
            )
        return entries
