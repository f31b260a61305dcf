"""The store in an S3-compatible bucket (`baton.s3store`), against an S3 server on loopback."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
import yaml

from baton import s3store
from baton.config import (
    ConfigError,
    RegistryConfig,
    S3Credentials,
    StoreConfig,
    parse_config,
    reader_warnings,
)
from baton.s3store import (
    BlobCorrupt,
    S3BlobStore,
    S3Bucket,
    S3RecordStore,
    StoreRefused,
    StoreUnreachable,
)
from baton.settings import Settings
from baton.store import BlobNotFound, StoreReaders, Stores
from tests.fixtures.ports import closed_port
from tests.fixtures.s3 import REGION, S3Server

TEXT = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sample-app\n"
REF = "sha256:" + hashlib.sha256(TEXT.encode()).hexdigest()


@pytest.fixture
def aws_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's access key in the SDK's standard variables, and no other source of keys."""
    for name, value in s3_server.env(s3_server.writer).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("BATON_STORE")  # the store baton.yaml names


@pytest.fixture
def config(s3_server: S3Server, aws_env: None) -> StoreConfig:
    """The bucket, under a prefix of this test's own."""
    return StoreConfig.model_validate(s3_server.store_yaml(f"t-{uuid.uuid4().hex[:8]}/"))


def raw(s3_server: S3Server):
    """A client of the bucket's own, as someone working on it outside Baton."""
    key_id, secret = s3_server.writer
    return boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def test_a_blob_is_read_back_by_its_sha256_from_another_worker(
    config: StoreConfig, s3_server: S3Server
) -> None:
    ref = S3BlobStore(S3Bucket(config, None), "blobs").put(TEXT)
    assert ref == REF
    key = f"{config.prefix}blobs/sha256/{REF.removeprefix('sha256:')}"
    assert raw(s3_server).get_object(Bucket=s3_server.bucket, Key=key)["Body"].read() == (
        TEXT.encode()
    )
    elsewhere = S3BlobStore(S3Bucket(config, None), "blobs")  # a client of its own
    assert elsewhere.get(ref) == TEXT
    with pytest.raises(BlobNotFound, match="re-run the step"):
        S3BlobStore(S3Bucket(config, None), "logs").get(ref)  # logs are another folder


def test_a_put_of_what_is_there_writes_nothing_unless_it_is_old(
    config: StoreConfig, s3_server: S3Server
) -> None:
    S3BlobStore(S3Bucket(config, None), "blobs").put(TEXT)
    # An access key that may not write: putting the same text again succeeds, new text is refused.
    reader = S3Credentials(
        access_key_id_env="TEST_S3_READ_ID", secret_access_key_env="TEST_S3_READ_SECRET"
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TEST_S3_READ_ID", s3_server.reader[0])
        env.setenv("TEST_S3_READ_SECRET", s3_server.reader[1])
        read_only = S3BlobStore(S3Bucket(config, reader), "blobs")
        assert read_only.put(TEXT) == REF
        with pytest.raises(StoreRefused, match=f"refused access to bucket {s3_server.bucket}"):
            read_only.put(TEXT + "more\n")
        # What was written longer ago than REFRESH is written again, so that a lifecycle rule
        # counting from the last write keeps what is still in use.
        env.setattr(s3store, "REFRESH", timedelta(0))
        with pytest.raises(StoreRefused, match="refused access"):
            read_only.put(TEXT)


def test_a_read_checks_the_bytes_against_their_digest(
    config: StoreConfig, s3_server: S3Server
) -> None:
    store = S3BlobStore(S3Bucket(config, None), "logs")
    ref = store.put(TEXT)
    key = f"{config.prefix}logs/sha256/{ref.removeprefix('sha256:')}"
    raw(s3_server).put_object(Bucket=s3_server.bucket, Key=key, Body=b"tampered")
    with pytest.raises(BlobCorrupt, match="changed outside Baton") as caught:
        store.get(ref)
    assert not caught.value.retryable
    assert store.put(TEXT) == ref  # storing it again puts the right bytes back
    assert store.get(ref) == TEXT


def test_an_unknown_or_malformed_reference_is_one_clear_not_found(config: StoreConfig) -> None:
    store = S3BlobStore(S3Bucket(config, None), "blobs")
    with pytest.raises(BlobNotFound, match=f"s3://.*{config.prefix}blobs"):
        store.get("sha256:" + "0" * 64)
    with pytest.raises(BlobNotFound):
        store.get("../../etc/passwd")


def test_records_are_replaced_and_listed_by_kind(config: StoreConfig) -> None:
    records = S3RecordStore(S3Bucket(config, None))
    assert records.load("reconcile", "heads") is None
    assert records.keys("artifacts/sample-app") == []
    records.save("reconcile", "heads", b'{"sample-app": "1"}')
    records.save("reconcile", "heads", b'{"sample-app": "2"}')
    assert records.load("reconcile", "heads") == b'{"sample-app": "2"}'
    for commit in ("b" * 40, "a" * 40):
        records.save("artifacts/sample-app", commit, b"{}")
    records.save("artifacts", "top", b"{}")
    assert records.keys("artifacts/sample-app") == ["a" * 40, "b" * 40]
    assert records.keys("artifacts") == ["top"]  # not the records of kinds below it
    with pytest.raises(ValueError, match="tag-shaped key"):
        records.save("reconcile", "heads/main", b"{}")


def test_a_missing_bucket_is_one_line_naming_it_and_no_retry(
    s3_server: S3Server, aws_env: None
) -> None:
    config = StoreConfig(kind="s3", endpoint=s3_server.endpoint, bucket="no-such-bucket")
    with pytest.raises(StoreRefused) as caught:
        S3BlobStore(S3Bucket(config, None), "blobs").put(TEXT)
    assert str(caught.value) == (
        f"S3 bucket no-such-bucket does not exist at {s3_server.endpoint}: create it, or set "
        "store.bucket in baton.yaml to an existing one"
    )
    assert not caught.value.retryable


def test_refused_or_missing_credentials_name_the_bucket_and_never_the_secret(
    config: StoreConfig, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-42")
    with pytest.raises(StoreRefused) as caught:
        S3BlobStore(S3Bucket(config, None), "blobs").put(TEXT)
    message = str(caught.value)
    assert f"refused access to bucket {s3_server.bucket}" in message
    assert "AWS_SECRET_ACCESS_KEY" in message  # the fix
    assert "not-the-secret-42" not in message and "\n" not in message
    assert not caught.value.retryable

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StoreRefused, match=f"no S3 credentials for bucket {s3_server.bucket}"):
        S3BlobStore(S3Bucket(config, None), "blobs").get(REF)
    named = S3Credentials(
        access_key_id_file=tmp_path / "id", secret_access_key_file=tmp_path / "secret"
    )
    with pytest.raises(StoreRefused, match="set the variables or files store.credentials names"):
        S3Bucket(config, named)
    (tmp_path / "id").write_text(s3_server.writer[0] + "\n")
    (tmp_path / "secret").write_text(s3_server.writer[1] + "\n")
    assert S3BlobStore(S3Bucket(config, named), "blobs").put(TEXT) == REF  # keys from files


def test_an_endpoint_that_does_not_answer_is_retried(aws_env: None) -> None:
    config = StoreConfig(kind="s3", endpoint=f"http://127.0.0.1:{closed_port()}", bucket="baton")
    with pytest.raises(StoreUnreachable, match="did not answer for bucket baton") as caught:
        S3BlobStore(S3Bucket(config, None), "blobs").get(REF)
    assert caught.value.retryable


def test_workers_and_the_api_use_the_bucket_baton_yaml_names(
    config: StoreConfig, s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TEST_S3_READ_ID", s3_server.reader[0])
    monkeypatch.setenv("TEST_S3_READ_SECRET", s3_server.reader[1])
    config = config.model_copy(
        update={
            "read_credentials": S3Credentials(
                access_key_id_env="TEST_S3_READ_ID", secret_access_key_env="TEST_S3_READ_SECRET"
            )
        }
    )
    registry = RegistryConfig(url="127.0.0.1:1")  # never reached
    ref = Stores.configured(Settings(), registry, config).logs.put("step output\n")
    assert not (tmp_path / "home").exists()  # nothing on this worker's disk
    readers = StoreReaders.configured(Settings(), registry, config)  # the read-only key
    assert readers.logs.get(ref) == "step output\n"
    assert not hasattr(readers.logs, "put")
    monkeypatch.setenv("BATON_STORE", "home")  # in baton.yaml's place
    assert Stores.configured(Settings(), registry, config).logs.put("step output\n") == ref
    assert (tmp_path / "home" / "logs" / "steps").is_dir()


def test_baton_yaml_refuses_an_s3_store_without_bucket_or_with_half_its_credentials() -> None:
    app = {"name": "sample-app", "repo": "sample-app", "image": "sample-app", "chart": "chart"}
    base = {"apps": [app]}
    with pytest.raises(ConfigError, match="store.kind s3 needs store.bucket"):
        parse_config(yaml.safe_dump({**base, "store": {"kind": "s3"}}))
    half = {"kind": "s3", "bucket": "baton", "credentials": {"access_key_id_env": "KEY_ID"}}
    with pytest.raises(ConfigError, match="secret_access_key_env or secret_access_key_file"):
        parse_config(yaml.safe_dump({**base, "store": half}))
    with pytest.raises(ConfigError, match="store.secret: unknown field"):  # no secret values
        parse_config(
            yaml.safe_dump({**base, "store": {"kind": "s3", "bucket": "baton", "secret": "x"}})
        )
    assert parse_config(yaml.safe_dump(base)).store.kind == "registry"


def test_baton_store_s3_without_a_bucket_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATON_STORE", "s3")
    with pytest.raises(ConfigError, match="store.bucket: the s3 store needs an existing bucket"):
        Stores.configured(Settings(), RegistryConfig(), StoreConfig())


def test_config_check_warns_when_the_api_would_hold_the_key_that_writes() -> None:
    app = {"name": "sample-app", "repo": "sample-app", "image": "sample-app", "chart": "chart"}
    keys = {"access_key_id_env": "S3_ID", "secret_access_key_env": "S3_SECRET"}
    store = {"kind": "s3", "bucket": "baton", "credentials": keys}
    config = parse_config(yaml.safe_dump({"apps": [app], "store": store}))
    warned = [w for w in reader_warnings(config) if w.startswith("store.")]
    assert len(warned) == 1
    assert warned[0].startswith("store.read_credentials is unset or the same as store.credentials")
    assert warned[0].endswith("set it to a key with s3:GetObject only")
    read = {"access_key_id_env": "S3_READ_ID", "secret_access_key_env": "S3_READ_SECRET"}
    config = parse_config(
        yaml.safe_dump({"apps": [app], "store": store | {"read_credentials": read}})
    )
    assert [w for w in reader_warnings(config) if w.startswith("store.")] == []


def test_gc_deletes_the_texts_last_stored_before_a_time(
    config: StoreConfig, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = S3BlobStore(S3Bucket(config, None), "logs")
    refs = [logs.put(f"step {n}\n") for n in range(3)]
    records = S3RecordStore(S3Bucket(config, None))
    records.save("reconcile", "heads", b"{}")
    now = datetime.now(UTC)
    with pytest.raises(StoreRefused, match="did not delete 3 object.*s3:DeleteObject"):
        logs.expire(now + timedelta(minutes=1))
    for name, value in s3_server.env(s3_server.admin).items():
        monkeypatch.setenv(name, value)
    admin = S3BlobStore(S3Bucket(config, None), "logs")
    assert admin.expire(now - timedelta(hours=1)) == 0
    assert admin.expire(now + timedelta(minutes=1), dry_run=True) == 3
    assert [logs.get(ref) for ref in refs] == [f"step {n}\n" for n in range(3)]
    assert admin.expire(now + timedelta(minutes=1)) == 3
    for ref in refs:
        with pytest.raises(BlobNotFound):
            logs.get(ref)
    assert records.load("reconcile", "heads") == b"{}"  # records are kept
