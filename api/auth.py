"""Who is calling the API: OIDC bearer JWTs and Baton API tokens, both as `Authorization: Bearer`.

A Baton API token (`baton_<id>_<secret>`, see `baton.tokens`) is checked against the token store
and the token file (BATON_TOKENS_FILE) when there is one; its holder's groups come from `auth.users`. Any other bearer token is taken for a JWT from the
configured OIDC issuer (`auth.oidc`) and verified with PyJWT against the issuer's JWKS (the key
named by the token's `kid`, fetched from `jwks_uri` and cached): signature by one of the
configured asymmetric algorithms (so neither `none` nor an HMAC keyed with the public key passes),
`iss`, `aud`, `exp` (required), `nbf` and `iat`. The user is the `username_claim`, the groups the
`groups_claim`. Failures answer 401 with the reason; a client that fails too often within a
minute is answered 429 until the minute has passed. Credentials are never logged or recorded.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from datetime import UTC, datetime
from typing import Literal

import httpx
import jwt
from pydantic import BaseModel, Field

from baton import shared_http
from baton.config import AuthConfig, OidcConfig
from baton.errors import RequestError, Unauthenticated
from baton.models import Decision
from baton.tokens import PREFIX, TokenFile, TokenSource, TokenStore, verify

CLOCK_SKEW_S = 30  # leeway on exp/nbf/iat between the issuer's clock and ours


class TooManyAttempts(RequestError):
    """Too many failed authentications from one client within the window; answered 429."""


class Caller(BaseModel):
    """An authenticated caller: who they are, their groups, and how they proved it."""

    user: str = Field(description="the Baton user name policies list")
    groups: list[str] = []
    forge_users: list[str] = Field(default=[], description="their forge logins (auth.users)")
    via: Literal["token", "oidc"]
    issuer: str = Field(description="the OIDC issuer, or `baton` for Baton API tokens")
    subject: str = Field(description="the OIDC `sub`, or the Baton token's id")

    def decision(
        self, comment: str = "", content_hash: str | None = None, head: str | None = None
    ) -> Decision:
        """A decision by this caller, on the content (rendered hash, PR head) it names."""
        return Decision(
            user=self.user,
            comment=comment,
            groups=self.groups,
            forge_users=self.forge_users,
            via=self.via,
            issuer=self.issuer,
            subject=self.subject,
            content_hash=content_hash,
            head=head,
        )


class FailedAttempts:
    """Failed authentications per client in a sliding window: more than `limit` → 429."""

    def __init__(self, limit: int = 20, window_s: float = 60) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Raise TooManyAttempts while `client` is over the limit."""
        with self._lock:
            failures = self._recent(client)
            if len(failures) >= self.limit:
                wait = int(failures[0] + self.window_s - time.monotonic()) + 1
                raise TooManyAttempts(
                    f"too many failed authentications from {client}: try again in {wait}s"
                )

    def failed(self, client: str) -> None:
        with self._lock:
            self._recent(client).append(time.monotonic())

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures[client]
        while failures and failures[0] <= time.monotonic() - self.window_s:
            failures.popleft()
        return failures


class OidcVerifier:
    """Verifies bearer JWTs of one OIDC issuer against its JWKS."""

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def _keys(self) -> jwt.PyJWKClient:
        """The issuer's JWKS client, its URL discovered once (OpenID Connect Discovery 1.0)."""
        with self._lock:
            if self._jwks is None:
                url = self.config.jwks_url or self._discover()
                self._jwks = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=10)
            return self._jwks

    def _discover(self) -> str:
        where = f"{self.config.issuer.rstrip('/')}/.well-known/openid-configuration"
        try:
            answer = shared_http.client().get(where, timeout=10)
            answer.raise_for_status()
            jwks_uri = answer.json().get("jwks_uri")
        except (httpx.HTTPError, ValueError) as exc:
            raise Unauthenticated(
                f"cannot read the OIDC issuer's discovery document {where} ({exc}): "
                "set auth.oidc.jwks_url"
            ) from None
        if not isinstance(jwks_uri, str):
            raise Unauthenticated(f"{where} names no jwks_uri: set auth.oidc.jwks_url")
        return jwks_uri

    def verify(self, token: str) -> Caller:
        """The caller a valid JWT names; Unauthenticated says what is wrong with any other."""
        config = self.config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated(
                "the bearer token is neither a Baton API token nor a JWT"
            ) from None
        if header.get("alg") not in config.algorithms:
            raise Unauthenticated(
                f"the JWT is signed with {header.get('alg')!r}; accepted: "
                f"{', '.join(config.algorithms)}"
            )
        try:
            key = self._keys().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise Unauthenticated(f"cannot fetch the issuer's keys: {exc}") from None
        except jwt.PyJWKClientError as exc:
            raise Unauthenticated(f"the JWT's signing key is not the issuer's: {exc}") from None
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=list(config.algorithms),
                audience=config.audience,
                issuer=config.issuer,
                leeway=CLOCK_SKEW_S,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the JWT has expired: sign in again") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"the JWT is not meant for {config.audience!r} (aud)") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"the JWT was not issued by {config.issuer} (iss)") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the JWT is not valid: {exc}") from None
        user = claims.get(config.username_claim)
        if not isinstance(user, str) or not user:
            raise Unauthenticated(f"the JWT has no {config.username_claim!r} claim naming the user")
        groups = claims.get(config.groups_claim, [])
        if not isinstance(groups, list):
            groups = []
        return Caller(
            user=user,
            groups=[g for g in groups if isinstance(g, str)],
            via="oidc",
            issuer=config.issuer,
            subject=str(claims["sub"]),
        )


class Authenticator:
    """Turns an `Authorization` header into a Caller, or says why it cannot (401, 429)."""

    def __init__(
        self, config: AuthConfig, tokens: TokenStore, token_file: TokenFile | None = None
    ) -> None:
        self.config = config
        self.token_sources: list[TokenSource] = [tokens, *([token_file] if token_file else [])]
        self.oidc = OidcVerifier(config.oidc) if config.oidc else None
        self.failures = FailedAttempts()

    def authenticate(self, authorization: str | None, client: str) -> Caller:
        """The caller behind `Authorization: Bearer ...` from `client` (its address), with
        their forge logins from Baton's user records."""
        self.failures.check(client)
        try:
            caller = self._caller(authorization)
        except Unauthenticated:
            self.failures.failed(client)
            raise
        record = self.config.users.get(caller.user)
        return caller.model_copy(update={"forge_users": record.forge_users}) if record else caller

    def _caller(self, authorization: str | None) -> Caller:
        if not authorization:
            raise Unauthenticated(
                "no credential: send `Authorization: Bearer <token>` (a Baton API token from "
                "your administrator, or your OIDC token)"
            )
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthenticated("the Authorization header must be `Bearer <token>`")
        if credential.startswith(PREFIX):
            record = verify(credential, self.token_sources, datetime.now(UTC))
            user = self.config.users.get(record.user)
            return Caller(
                user=record.user,
                groups=list(user.groups) if user else [],
                via="token",
                issuer="baton",
                subject=record.id,
            )
        if self.oidc is None:
            raise Unauthenticated(
                "not a Baton API token, and no OIDC issuer is configured (auth.oidc)"
            )
        return self.oidc.verify(credential)
