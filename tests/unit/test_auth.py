"""Who calls the API: OIDC JWTs checked against a loopback issuer's JWKS, and Baton API tokens."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from api.auth import Authenticator, TooManyAttempts
from baton.config import AuthConfig, OidcConfig, UserRecord
from baton.errors import BadRequest, Unauthenticated
from baton.tokens import TOKEN, TokenStore, parse_duration
from tests.fakes.oidc import AUDIENCE, Issuer


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with Issuer() as served:
        yield served


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "tokens.db")


@pytest.fixture
def auth(issuer: Issuer, store: TokenStore) -> Authenticator:
    config = AuthConfig(
        oidc=OidcConfig(issuer=issuer.url, audience=AUDIENCE),
        users={"carol": UserRecord(groups=["release-managers"])},
    )
    return Authenticator(config, store)


def refusal(auth: Authenticator, token: str | None) -> str:
    with pytest.raises(Unauthenticated) as info:
        auth.authenticate(f"Bearer {token}" if token is not None else None, "127.0.0.1")
    return str(info.value)


def test_a_jwt_of_the_issuer_names_the_user_and_groups(issuer: Issuer, auth: Authenticator) -> None:
    caller = auth.authenticate(f"Bearer {issuer.token('erin', ['sre'])}", "127.0.0.1")
    assert (caller.user, caller.groups, caller.via) == ("erin", ["sre"], "oidc")
    assert (caller.issuer, caller.subject) == (issuer.url, "sub-erin")


def test_the_issuers_discovery_document_and_keys_are_fetched_once_for_many_tokens(
    issuer: Issuer, auth: Authenticator
) -> None:
    """Discovery (once per verifier, through the process's shared HTTP client) and the JWKS
    (cached by PyJWKClient) are not fetched again for each token."""
    discovered, fetched = issuer.discovery_requests, issuer.jwks_requests
    for user, alg in (("carol", "RS256"), ("dave", "ES256"), ("erin", "RS256")):
        assert auth.authenticate(f"Bearer {issuer.token(user, alg=alg)}", "127.0.0.1").user == user
    assert (issuer.discovery_requests - discovered, issuer.jwks_requests - fetched) == (1, 1)


def test_an_es256_jwt_is_verified_with_the_issuers_ec_key(
    issuer: Issuer, auth: Authenticator
) -> None:
    caller = auth.authenticate(f"Bearer {issuer.token('dave', alg='ES256')}", "127.0.0.1")
    assert caller.user == "dave"


def test_an_expired_jwt_is_refused(issuer: Issuer, auth: Authenticator) -> None:
    expired = issuer.token("erin", exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
    assert "expired" in refusal(auth, expired)


def test_a_jwt_for_another_audience_is_refused(issuer: Issuer, auth: Authenticator) -> None:
    assert "not meant for 'baton'" in refusal(auth, issuer.token("erin", aud="grafana"))


def test_a_jwt_from_another_issuer_is_refused(issuer: Issuer, auth: Authenticator) -> None:
    assert "not issued by" in refusal(auth, issuer.token("erin", iss="https://evil.invalid"))


def test_a_jwt_signed_with_an_unknown_key_id_is_refused(
    issuer: Issuer, auth: Authenticator
) -> None:
    assert "signing key is not the issuer's" in refusal(auth, issuer.token("erin", kid="other"))


def test_a_jwt_signed_with_another_key_under_the_issuers_kid_is_refused(
    issuer: Issuer, auth: Authenticator
) -> None:
    forger = Issuer()  # keys of its own, never served
    forged = jwt.encode(
        issuer.claims("erin"), forger.rsa, algorithm="RS256", headers={"kid": issuer.kids["RS256"]}
    )
    assert "Signature verification failed" in refusal(auth, forged)


def test_alg_confusion_hs256_keyed_with_the_public_key_is_refused(
    issuer: Issuer, auth: Authenticator
) -> None:
    public_pem = issuer.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.kids["RS256"]}
    signing_input = f"{_b64(header)}.{_b64(issuer.claims('erin'))}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{jwt.utils.base64url_encode(signature).decode()}"
    assert "signed with 'HS256'" in refusal(auth, forged)


def test_an_unsigned_jwt_is_refused(issuer: Issuer, auth: Authenticator) -> None:
    unsigned = jwt.encode(issuer.claims("erin"), None, algorithm="none")
    assert "signed with 'none'" in refusal(auth, unsigned)


def test_missing_and_malformed_credentials_are_refused(auth: Authenticator) -> None:
    assert "no credential" in refusal(auth, None)
    assert "neither a Baton API token nor a JWT" in refusal(auth, "not-a-token")
    with pytest.raises(Unauthenticated, match="Bearer <token>"):
        auth.authenticate("Basic Y2Fyb2w6cHc=", "127.0.0.1")


def test_a_baton_token_names_its_user_with_groups_from_the_user_records(
    auth: Authenticator, store: TokenStore
) -> None:
    created = store.create("carol", timedelta(days=30))
    caller = auth.authenticate(f"Bearer {created.token}", "127.0.0.1")
    assert (caller.user, caller.groups, caller.via) == ("carol", ["release-managers"], "token")
    assert (caller.issuer, caller.subject) == ("baton", created.record.id)


def test_revoked_expired_and_tampered_tokens_are_refused(
    auth: Authenticator, store: TokenStore
) -> None:
    revoked = store.create("carol")
    store.revoke(revoked.record.id)
    assert f"token {revoked.record.id} is revoked" in refusal(auth, revoked.token)

    expired = store.create("dave", timedelta(minutes=1), now=datetime.now(UTC) - timedelta(hours=1))
    assert f"token {expired.record.id} is expired" in refusal(auth, expired.token)

    good = store.create("erin").token
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    assert "unknown token" in refusal(auth, tampered)


def test_the_store_keeps_no_secret(store: TokenStore) -> None:
    created = store.create("carol")
    match = TOKEN.match(created.token)  # the secret may hold "_" itself
    assert match is not None and len(match.group(2)) == 43
    assert match.group(2).encode() not in store.path.read_bytes()
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"
    assert [r.id for r in store.list()] == [created.record.id]


def test_a_client_failing_too_often_is_told_to_wait(auth: Authenticator) -> None:
    for _ in range(auth.failures.limit):
        refusal(auth, "baton_000000000000_" + "x" * 43)
    with pytest.raises(TooManyAttempts, match="too many failed authentications from 127.0.0.1"):
        auth.authenticate("Bearer anything", "127.0.0.1")
    assert "no credential" in refusal_from(auth, "10.0.0.2")


def refusal_from(auth: Authenticator, client: str) -> str:
    with pytest.raises(Unauthenticated) as info:
        auth.authenticate(None, client)
    return str(info.value)


def test_durations_read_like_the_cli_takes_them() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("12h") == timedelta(hours=12)
    with pytest.raises(BadRequest, match="give e.g. 30m, 12h, 30d or 2w"):
        parse_duration("forever")


def _b64(value: dict) -> str:
    return jwt.utils.base64url_encode(json.dumps(value).encode()).decode()
