"""A small OIDC issuer on loopback: discovery document, JWKS, and tokens signed with its keys.

It answers as an OpenID Provider does (OpenID Connect Discovery 1.0 `/.well-known/openid-
configuration` naming `jwks_uri`, `authorization_endpoint` and `token_endpoint`; RFC 7517 JWK Set
with `kid`, `kty`, `use`, `alg`), with keys generated for the test: an RSA key (RS256) and an EC
P-256 key (ES256). Its authorization endpoint signs in `signed_in` (the person at the issuer's
login page, set by the test) and redirects back with a code, which its token endpoint redeems
only with the PKCE verifier of the S256 challenge (RFC 7636), as a public client's code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from typing import Any, Self
from urllib.parse import parse_qs, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from tests.fakes.forges import Served

AUDIENCE = "baton"


class Issuer:
    """Serves its discovery document and JWKS on 127.0.0.1 and signs tokens for tests."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.kids = {"RS256": f"rsa-{uuid.uuid4().hex[:8]}", "ES256": f"ec-{uuid.uuid4().hex[:8]}"}
        self.discovery_requests = 0
        self.jwks_requests = 0
        self.signed_in: str | None = None  # who signs in at the authorization endpoint
        self._codes: dict[str, dict[str, str]] = {}
        self._served = Served(
            Starlette(
                routes=[
                    Route("/.well-known/openid-configuration", self._discovery),
                    Route("/jwks", self._jwks),
                    Route("/authorize", self._authorize),
                    Route("/token", self._token, methods=["POST"]),
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
        self.discovery_requests += 1
        return JSONResponse(
            {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/jwks",
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "code_challenge_methods_supported": ["S256"],
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

    async def _authorize(self, request: Request) -> JSONResponse | RedirectResponse:
        query = request.query_params
        required = ("response_type", "client_id", "redirect_uri", "state", "code_challenge")
        missing = [name for name in required if not query.get(name)]
        if missing or query["response_type"] != "code" or self.signed_in is None:
            return JSONResponse({"error": "invalid_request", "missing": missing}, status_code=400)
        if query.get("code_challenge_method") != "S256":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        self._codes[code] = {
            "user": self.signed_in,
            "challenge": query["code_challenge"],
            "client_id": query["client_id"],
            "redirect_uri": query["redirect_uri"],
        }
        back = urlencode({"code": code, "state": query["state"]})
        return RedirectResponse(f"{query['redirect_uri']}?{back}", status_code=302)

    async def _token(self, request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        grant = self._codes.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if (
            grant is None
            or form.get("grant_type") != "authorization_code"
            or form.get("redirect_uri") != grant["redirect_uri"]
            or form.get("client_id") != grant["client_id"]
            or challenge != grant["challenge"]
        ):
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "code or code_verifier mismatch"},
                status_code=400,
            )
        user = grant["user"]
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": 300,
                # As many issuers do, the access token names another audience than the client.
                "access_token": self.token(user, aud="account"),
                "id_token": self.token(user, aud=grant["client_id"]),
            }
        )

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
