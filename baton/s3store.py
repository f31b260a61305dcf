"""The store (`baton.store`) in an S3-compatible bucket: AWS S3, MinIO, Ceph RGW, R2, GCS's XML API.

Selected by `store: {kind: s3, bucket, endpoint, region, prefix}` in baton.yaml (or BATON_STORE=s3).
Objects under the bucket's `prefix`:

- `<prefix>blobs/sha256/<hex>` and `<prefix>logs/sha256/<hex>`: content-addressed text, keyed by
  the sha256 of its UTF-8 bytes. A put that finds the object already there (same key, same size,
  written within `REFRESH`) writes nothing; a get checks the bytes' sha256 against the key before
  handing them over.
- `<prefix>records/<kind>/<key>.json`: named records, replaced on save, listed by kind.

Credentials come from `store.credentials` (environment variables or files it names) or the AWS
SDK's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_SHARED_CREDENTIALS_FILE, web
identity, instance role); never from baton.yaml, never logged. Errors are one line naming the
bucket: a missing bucket, refused or missing credentials are `StoreRefused` (no retry helps); an
endpoint that does not answer, or answers 5xx, is `StoreUnreachable` (retried).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from baton.config import ConfigError, S3Credentials, StoreConfig
from baton.errors import InfrastructureError
from baton.models import LogRef
from baton.store import BlobNotFound, check_record, digest_of

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import ObjectIdentifierTypeDef

# Codes S3 (and the S3-compatible servers) answer when the credentials are refused.
_DENIED = {
    "403",
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
}
# A put of what is there rewrites it when it was last written longer ago than this, so that a
# bucket lifecycle rule expiring objects N days after their last write keeps what is still used.
REFRESH = timedelta(days=1)
_UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


class StoreError(InfrastructureError):
    """The S3-compatible store did not do what was asked; it may come back."""


class StoreUnreachable(StoreError):
    """Nothing answered at the store's endpoint, or it answered that it is unavailable (5xx)."""


class StoreRefused(StoreError):
    """The bucket does not exist, or the store refused (or was given no) credentials."""

    retryable = False


class BlobCorrupt(StoreError):
    """An object's bytes do not hash to the digest its key names: changed outside Baton."""

    retryable = False


class S3Bucket:
    """Objects under `prefix` of one bucket, with errors as one line naming the bucket."""

    def __init__(self, config: StoreConfig, credentials: S3Credentials | None) -> None:
        if not config.bucket:  # BATON_STORE=s3 where baton.yaml names no bucket
            raise ConfigError(["store.bucket: the s3 store needs an existing bucket named here"])
        self.bucket = config.bucket
        self.prefix = config.prefix
        self.endpoint = config.endpoint or "AWS S3"
        keys = credentials.keys() if credentials else None
        if credentials is not None and keys is None:
            raise StoreRefused(
                f"no S3 credentials for bucket {self.bucket}: set the variables or files "
                "store.credentials names (access_key_id_env/_file, secret_access_key_env/_file)"
            )
        session = boto3.session.Session(
            aws_access_key_id=keys[0] if keys else None,
            aws_secret_access_key=keys[1] if keys else None,
            region_name=config.region,
        )
        self.client: S3Client = session.client(
            "s3",
            endpoint_url=config.endpoint,
            region_name=config.region or session.region_name or "us-east-1",
            config=Config(
                connect_timeout=5,
                read_timeout=30,
                # Temporal retries the activity; the SDK retries a little itself.
                retries={"mode": "standard", "max_attempts": 2},
                # Path-style works with every S3-compatible server (MinIO, Ceph, moto).
                s3={"addressing_style": "path" if config.endpoint else "auto"},
                # Checksums only where the S3 API requires them: not every S3-compatible server
                # knows the SDK's default CRC32 (Content-MD5 on puts, sha256 on reads instead).
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def head(self, key: str) -> tuple[int, datetime] | None:
        """The size of object `key` and when it was last written, None when there is none."""
        try:
            with self._errors():
                answer = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
                return answer["ContentLength"], answer["LastModified"]
        except _Missing:
            return None

    def get(self, key: str) -> bytes | None:
        """The bytes of object `key`, None when there is none."""
        try:
            with self._errors():
                response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
                return response["Body"].read()
        except _Missing:
            return None

    def put(self, key: str, data: bytes) -> None:
        """Write object `key` (replacing it); S3 checks the bytes against their Content-MD5."""
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        with self._errors():
            self.client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentMD5=md5
            )

    def names(self, folder: str) -> list[str]:
        """The names of the objects directly under `folder/` (not in its subfolders)."""
        start = f"{self.prefix}{folder}/"
        pages: Callable[..., Any] = self.client.get_paginator("list_objects_v2").paginate
        names: list[str] = []
        with self._errors():
            for page in pages(Bucket=self.bucket, Prefix=start, Delimiter="/"):
                names.extend(item["Key"].removeprefix(start) for item in page.get("Contents", []))
        return names

    def listing(self, folder: str) -> Iterator[tuple[str, datetime]]:
        """Every object under `folder/` (its subfolders too): its key and when it was written."""
        pages: Callable[..., Any] = self.client.get_paginator("list_objects_v2").paginate
        with self._errors():
            for page in pages(Bucket=self.bucket, Prefix=f"{self.prefix}{folder}/"):
                for item in page.get("Contents", []):
                    yield item["Key"], item["LastModified"]

    def delete(self, keys: list[str]) -> None:
        """Delete the objects `keys` (full keys, as `listing` gives them), a thousand a request."""
        for start in range(0, len(keys), 1000):
            batch: list[ObjectIdentifierTypeDef] = [
                {"Key": key} for key in keys[start : start + 1000]
            ]
            with self._errors():
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            if errors := answer.get("Errors"):
                raise StoreRefused(
                    f"S3 at {self.endpoint} did not delete {len(errors)} object(s) of bucket "
                    f"{self.bucket} ({errors[0].get('Code')}): give the key that runs "
                    f"`baton store gc` s3:DeleteObject on s3://{self.bucket}/{self.prefix}*"
                )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """The SDK's errors as Baton's, one line naming the bucket and the fix."""
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if code in ("NoSuchKey", "404") and status == 404:
                raise _Missing from None
            if code == "NoSuchBucket":
                raise StoreRefused(
                    f"S3 bucket {self.bucket} does not exist at {self.endpoint}: create it, or "
                    "set store.bucket in baton.yaml to an existing one"
                ) from None
            if code in _DENIED or status == 403:
                raise StoreRefused(
                    f"S3 at {self.endpoint} refused access to bucket {self.bucket} ({code}): give "
                    f"the store's access key (store.credentials, else AWS_ACCESS_KEY_ID and "
                    f"AWS_SECRET_ACCESS_KEY) read and write on s3://{self.bucket}/{self.prefix}*"
                ) from None
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "RequestTimeout"):
                raise StoreUnreachable(
                    f"S3 at {self.endpoint} is unavailable for bucket {self.bucket} ({code} "
                    f"{status}): retrying"
                ) from None
            raise StoreRefused(
                f"S3 at {self.endpoint} refused a request on bucket {self.bucket}: {code} "
                f"{error.get('Message', '')}".rstrip()
            ) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise StoreRefused(
                f"no S3 credentials for bucket {self.bucket}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_SHARED_CREDENTIALS_FILE), or name them in "
                "store.credentials"
            ) from None
        except _UNREACHABLE as exc:
            raise StoreUnreachable(
                f"S3 endpoint {self.endpoint} did not answer for bucket {self.bucket} "
                f"({type(exc).__name__}): is it up and reachable from this worker?"
            ) from None
        except BotoCoreError as exc:
            raise StoreError(f"S3 bucket {self.bucket} at {self.endpoint}: {exc}") from None


class _Missing(Exception):
    """The object is not there (404): not an error for `head` and `get`."""


class S3BlobReader:
    """Content-addressed text `<folder>/sha256/<hex>` of a bucket, read."""

    def __init__(self, bucket: S3Bucket, folder: str) -> None:
        self.bucket = bucket
        self.folder = folder

    def __str__(self) -> str:
        return f"{self.bucket}{self.folder}"

    def get(self, ref: LogRef) -> str:
        """The text stored under `ref`, once its bytes are checked to hash to it."""
        digest = digest_of(ref, self)
        data = self.bucket.get(self._key(digest))
        if data is None:
            raise BlobNotFound(ref, self)
        if hashlib.sha256(data).hexdigest() != digest:
            raise BlobCorrupt(
                f"{self}/sha256/{digest} does not hash to {ref}: it was changed outside Baton; "
                "delete the object and re-run the step that produced it"
            )
        return data.decode()

    def _key(self, digest: str) -> str:
        return f"{self.folder}/sha256/{digest}"


class S3BlobStore(S3BlobReader):
    """Content-addressed text of a bucket, read and written."""

    def put(self, text: str) -> LogRef:
        """Store `text` and return its reference; storing the same text again writes nothing."""
        data = text.encode()
        digest = hashlib.sha256(data).hexdigest()
        key = self._key(digest)
        there = self.bucket.head(key)
        if there is None or there[0] != len(data) or there[1] < datetime.now(UTC) - REFRESH:
            self.bucket.put(key, data)
        return f"sha256:{digest}"

    def expire(self, before: datetime, *, dry_run: bool = False) -> int:
        """Delete the texts last written before `before` (`baton store gc`); how many."""
        old = [key for key, written in self.bucket.listing(self.folder) if written < before]
        if not dry_run:
            self.bucket.delete(old)
        return len(old)


class S3RecordReader:
    """Records `<prefix>records/<kind>/<key>.json` of a bucket, read."""

    def __init__(self, bucket: S3Bucket, folder: str = "records") -> None:
        self.bucket = bucket
        self.folder = folder

    def load(self, kind: str, key: str) -> bytes | None:
        check_record(kind, key)
        return self.bucket.get(f"{self.folder}/{kind}/{key}.json")

    def keys(self, kind: str) -> list[str]:
        check_record(kind, "latest")
        names = self.bucket.names(f"{self.folder}/{kind}")
        return sorted(n.removesuffix(".json") for n in names if n.endswith(".json"))


class S3RecordStore(S3RecordReader):
    """Records of a bucket, read and replaced on save."""

    def save(self, kind: str, key: str, data: bytes) -> None:
        check_record(kind, key)
        self.bucket.put(f"{self.folder}/{kind}/{key}.json", data)
