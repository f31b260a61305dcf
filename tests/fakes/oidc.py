"""A small OIDC issuer on loopback: discovery document, JWKS, and tokens signed with its keys.

It answers as an OpenID Provider does (OpenID Connect Discovery 1.0 `/.well-known/openid-
configuration` naming `jwks_uri`; RFC 7517 JWK Set with `kid`, `kty`, `use`, `alg`), with keys
generated for the test: an RSA key (RS256) and an EC P-256 key (ES256).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Self

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.forges import Served

AUDIENCE = "baton"


class Issuer:
    """Serves its discovery document and JWKS on 127.0.0.1 and signs tokens for tests."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.kids = {"RS256": f"rsa-{uuid.uuid4().hex[:8]}", "ES256": f"ec-{uuid.uuid4().hex[:8]}"}
        self.jwks_requests = 0
        self._served = Served(
            Starlette(
                routes=[
                    Route("/.well-known/openid-configuration", self._discovery),
                    Route("/jwks", self._jwks),
                ]
            )
        )
        self.url = self._served.url

    def __enter__(self) -> Self:
        self._served.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._served.stop()

    async def _discovery(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/jwks",
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }
        )

    async def _jwks(self, request: Request) -> JSONResponse:
        self.jwks_requests += 1
        keys = []
        for alg, public in (("RS256", self.rsa.public_key()), ("ES256", self.ec.public_key())):
            codec = RSAAlgorithm if alg == "RS256" else ECAlgorithm
            jwk = json.loads(codec.to_jwk(public))
            keys.append({**jwk, "kid": self.kids[alg], "use": "sig", "alg": alg})
        return JSONResponse({"keys": keys})

    def claims(self, user: str, groups: list[str] | None = None, **overrides: Any) -> dict:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": f"sub-{user}",
            "preferred_username": user,
            "groups": groups or [],
            "iat": now,
            "exp": now + 300,
        }
        return {**claims, **overrides}

    def token(
        self,
        user: str,
        groups: list[str] | None = None,
        *,
        alg: str = "RS256",
        kid: str | None = None,
        **overrides: Any,
    ) -> str:
        """A JWT for `user` signed by this issuer (claims overridden by `overrides`)."""
        key = self.rsa if alg == "RS256" else self.ec
        return jwt.encode(
            self.claims(user, groups, **overrides),
            key,
            algorithm=alg,
            headers={"kid": kid or self.kids[alg]},
        )
