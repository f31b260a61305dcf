"""Baton API tokens: created by an administrator for a person or a bot, shown once, kept hashed.

A token reads `baton_<id>_<secret>`: `id` (12 hex) names it in listings and decision records,
`secret` (32 random bytes, URL-safe base64) is never stored; the store keeps its SHA-256, which
is enough for a secret with 256 bits of entropy (no password stretching needed), and compares
digests in constant time. The store is an SQLite file under BATON_HOME (`tokens.db`, mode 0600),
shared by the API process, which verifies tokens, and the administrator's `baton token` commands.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field

from baton import config
from baton.errors import BadRequest, Unauthenticated

PREFIX = "baton_"
TOKEN = re.compile(r"^baton_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")

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
    created_at: datetime
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


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


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
        if not user.strip():
            raise BadRequest("a token needs a user: give --user NAME")
        now = now or datetime.now(UTC)
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        record = TokenRecord(
            id=token_id,
            user=user.strip(),
            description=description,
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
        )
        with self._db() as con:
            con.execute(
                "INSERT INTO tokens (id, user, digest, description, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.user,
                    _digest(secret),
                    description,
                    now.isoformat(),
                    record.expires_at.isoformat() if record.expires_at else None,
                ),
            )
        return CreatedToken(record=record, token=f"{PREFIX}{token_id}_{secret}")

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

    def verify(self, token: str, now: datetime | None = None) -> TokenRecord:
        """The record of a valid token; Unauthenticated says why any other is refused."""
        match = TOKEN.match(token)
        if not match:
            raise Unauthenticated("the token is not a Baton API token (baton_<id>_<secret>)")
        token_id, secret = match.groups()
        with self._db() as con:
            row = con.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        # Compare against a digest even for an unknown id, so timing does not tell ids apart.
        digest = row["digest"] if row is not None else _digest("")
        if not hmac.compare_digest(digest, _digest(secret)) or row is None:
            raise Unauthenticated("unknown token: ask an administrator for one")
        record = _record(row)
        state = record.state(now or datetime.now(UTC))
        if state != "active":
            raise Unauthenticated(
                f"token {token_id} is {state}: ask an administrator for a new one"
            )
        return record


def _record(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        user=row["user"],
        description=row["description"],
        created_at=datetime.fromisoformat(row["created_at"]),
        expires_at=datetime.fromisoformat(row["expires_at"]) if row["expires_at"] else None,
        revoked_at=datetime.fromisoformat(row["revoked_at"]) if row["revoked_at"] else None,
    )
