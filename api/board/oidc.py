"""Signing in to the board at the configured OIDC issuer: the authorization code flow with PKCE
(RFC 6749 §4.1, RFC 7636 with S256), for a public client (`auth.oidc.client_id`, default the
audience) with no secret.

The endpoints come from the issuer's discovery document (OpenID Connect Discovery 1.0:
`authorization_endpoint`, `token_endpoint`). The verifier, `state` and the page to return to wait
in a short-lived HttpOnly cookie between the redirect to the issuer and its redirect back; the
tokens the issuer returns are then authenticated as any bearer credential is (`api.auth`), and
the first the API accepts (the access token, else the ID token) is the board's credential.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from baton.config import OidcConfig
from baton.errors import Unauthenticated

PENDING_COOKIE = "baton_board_oidc"
PENDING_S = 600  # how long a sign-in at the issuer may take
TIMEOUT_S = 10


@dataclass
class Pending:
    """A sign-in on its way through the issuer."""

    state: str
    verifier: str
    next: str

    def cookie(self) -> str:
        """The cookie's value: base64url of JSON, so no character needs quoting in a cookie."""
        document = json.dumps({"state": self.state, "verifier": self.verifier, "next": self.next})
        return base64.urlsafe_b64encode(document.encode()).decode("ascii")

    @classmethod
    def from_cookie(cls, value: str | None) -> Pending:
        try:
            fields = json.loads(base64.urlsafe_b64decode((value or "").encode("ascii")))
            return cls(str(fields["state"]), str(fields["verifier"]), str(fields["next"]))
        except (ValueError, KeyError, TypeError):
            raise Unauthenticated(
                "no sign-in is on its way in this browser (or it took longer than "
                f"{PENDING_S // 60} minutes): sign in again"
            ) from None


def challenge(verifier: str) -> str:
    """The S256 code challenge of `verifier` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def _endpoints(http: httpx.AsyncClient, config: OidcConfig) -> tuple[str, str]:
    where = f"{config.issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        answer = await http.get(where, timeout=TIMEOUT_S)
        answer.raise_for_status()
        document = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise Unauthenticated(
            f"cannot read the OIDC issuer's discovery document {where}: {exc}"
        ) from None
    authorize, token = document.get("authorization_endpoint"), document.get("token_endpoint")
    if not isinstance(authorize, str) or not isinstance(token, str):
        raise Unauthenticated(
            f"{where} names no authorization_endpoint and token_endpoint: sign in with an API "
            "token instead"
        )
    return authorize, token


async def start(
    http: httpx.AsyncClient, config: OidcConfig, redirect_uri: str, next: str
) -> tuple[str, Pending]:
    """Where to send the browser to sign in at the issuer, and what to keep until it is back;
    `http` is the API's client (`baton.shared_http.async_client`, held for the app's lifespan)."""
    authorize, _ = await _endpoints(http, config)
    pending = Pending(secrets.token_urlsafe(24), secrets.token_urlsafe(48), next)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": config.client_id or config.audience,
            "redirect_uri": redirect_uri,
            "scope": "openid profile",
            "state": pending.state,
            "code_challenge": challenge(pending.verifier),
            "code_challenge_method": "S256",
        }
    )
    return f"{authorize}{'&' if '?' in authorize else '?'}{query}", pending


async def finish(
    http: httpx.AsyncClient,
    config: OidcConfig,
    redirect_uri: str,
    pending: Pending,
    code: str,
    state: str,
) -> list[str]:
    """Redeem the issuer's code (with the verifier) for its tokens, access token first."""
    if not secrets.compare_digest(state, pending.state):
        raise Unauthenticated(
            "the issuer's answer is not for this browser's sign-in: sign in again"
        )
    _, token_endpoint = await _endpoints(http, config)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": config.client_id or config.audience,
        "code_verifier": pending.verifier,
    }
    try:
        answer = await http.post(token_endpoint, data=form, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise Unauthenticated(f"the issuer's token endpoint did not answer: {exc}") from None
    try:
        tokens = answer.json()
    except ValueError:
        tokens = None
    if not isinstance(tokens, dict):
        raise Unauthenticated(
            f"the issuer's token endpoint answered {answer.status_code}, not JSON"
        )
    if answer.status_code != 200:
        error = tokens.get("error_description") or tokens.get("error") or answer.status_code
        raise Unauthenticated(f"the issuer refused the sign-in: {error}")
    found = [tokens[k] for k in ("access_token", "id_token") if isinstance(tokens.get(k), str)]
    if not found:
        raise Unauthenticated("the issuer returned no token")
    return found
