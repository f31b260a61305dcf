"""Flux wire formats: revisions, event metadata, generic-hmac signatures, Kustomization events."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime

import pytest

from baton.flux import (
    event_revision,
    kustomization_event,
    parse_revision,
    sign_generic_hmac,
    verify_generic_hmac,
)

SHA = "132f4e719209eb10b9485302f8593fc0e680f4fc"
SECRET = "flux-test-token"


@pytest.mark.parametrize(
    "value",
    [
        f"main@sha1:{SHA}",
        f"release/v1@sha1:{SHA}",
        f"v1.2.0@sha1:{SHA}",
        f"sha1:{SHA}",
        f"main/{SHA}",
        f"main@sha1:{SHA.upper()}",
        SHA,
    ],
)
def test_parse_revision_reads_the_commit_from_every_flux_format(value: str) -> None:
    assert parse_revision(value) == SHA


@pytest.mark.parametrize(
    "value",
    [None, "", "main", "main@sha1:abc123", f"latest@sha256:{'a' * 64}", "main@sha1:" + "z" * 40],
)
def test_parse_revision_rejects_what_names_no_full_commit(value: str | None) -> None:
    assert parse_revision(value) is None


def test_event_revision_reads_the_current_unprefixed_key() -> None:
    assert event_revision({"metadata": {"revision": f"main@sha1:{SHA}"}}) == SHA


def test_event_revision_reads_the_older_group_prefixed_key_and_value() -> None:
    event = {"metadata": {"kustomize.toolkit.fluxcd.io/revision": f"main/{SHA}"}}
    assert event_revision(event) == SHA


def test_event_revision_is_none_without_revision_metadata() -> None:
    assert event_revision({"metadata": {"summary": "dev cluster"}}) is None
    assert event_revision({"reason": "ReconciliationSucceeded"}) is None


def test_signature_is_the_sha256_hmac_of_the_body() -> None:
    body = b'{"reason":"ReconciliationSucceeded"}'
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign_generic_hmac(SECRET, body) == f"sha256={expected}"
    assert verify_generic_hmac(SECRET, body, sign_generic_hmac(SECRET, body))


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
def test_verify_accepts_every_hash_a_flux_receiver_accepts(algorithm: str) -> None:
    body = b"payload"
    digest = hmac.new(SECRET.encode(), body, getattr(hashlib, algorithm)).hexdigest()
    assert verify_generic_hmac(SECRET, body, f"{algorithm}={digest}")


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256", "sha256=", "md5=abc", "sha256=" + "0" * 64],
)
def test_verify_rejects_missing_malformed_or_wrong_signatures(header: str | None) -> None:
    assert not verify_generic_hmac(SECRET, b"payload", header)


def test_verify_rejects_a_body_changed_after_signing() -> None:
    header = sign_generic_hmac(SECRET, b'{"revision":"main@sha1:aaa"}')
    assert not verify_generic_hmac(SECRET, b'{"revision":"main@sha1:bbb"}', header)
    assert not verify_generic_hmac("another-secret", b'{"revision":"main@sha1:aaa"}', header)


def test_kustomization_event_has_the_notification_controller_shape() -> None:
    when = datetime(2025, 3, 1, 12, 30, 5, 123456, tzinfo=UTC)
    event = kustomization_event(
        "sample-app-prod",
        "flux-system",
        SHA,
        "main",
        "ReconciliationSucceeded",
        f"Applied revision: main@sha1:{SHA}",
        "info",
        timestamp=when,
    )
    assert set(event) == {
        "involvedObject",
        "severity",
        "timestamp",
        "message",
        "reason",
        "metadata",
        "reportingController",
        "reportingInstance",
    }
    involved = event["involvedObject"]
    assert involved["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert involved["kind"] == "Kustomization"
    assert (involved["name"], involved["namespace"]) == ("sample-app-prod", "flux-system")
    assert re.fullmatch(r"[0-9a-f-]{36}", involved["uid"])
    assert event["timestamp"] == "2025-03-01T12:30:05Z"
    assert event["metadata"] == {"revision": f"main@sha1:{SHA}"}
    assert event["reportingController"] == "kustomize-controller"
    assert event_revision(json.loads(json.dumps(event))) == SHA


def test_events_of_one_kustomization_name_the_same_object() -> None:
    def uid(name: str, reason: str) -> str:
        event = kustomization_event(name, "flux-system", SHA, "main", reason, "m", "error")
        return event["involvedObject"]["uid"]

    assert uid("app-dev", "HealthCheckFailed") == uid("app-dev", "BuildFailed")
    assert uid("app-dev", "BuildFailed") != uid("app-staging", "BuildFailed")


def test_non_ascii_signature_is_refused_not_an_error() -> None:
    assert not verify_generic_hmac("secret", b"{}", "sha256=\u00e9\u00e9")
