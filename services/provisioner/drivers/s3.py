"""S3 adapter of the ObjectStore port (boto3): any S3-compatible endpoint from settings
(AWS, MinIO, moto's server in tests). Only this adapter imports boto3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from services.shared.settings import Settings

from ..storage import ObjectStore, StorageError, check_bucket, check_key

MISSING = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3ObjectStore(ObjectStore):
    kind = "s3"

    def __init__(self, client: Any, *, region: str, endpoint: str = ""):
        self.client = client
        self.region = region
        self.endpoint = endpoint
        # Dumps are tens of MB: multipart above 64 MB only, two parts in flight at most.
        self.transfer = TransferConfig(multipart_threshold=64 * 1024 * 1024, max_concurrency=2)

    @classmethod
    def from_settings(cls, settings: Settings) -> "S3ObjectStore":
        config = Config(
            region_name=settings.s3_region,
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            # Self-hosted S3 APIs (MinIO, moto) rarely serve virtual-host-style bucket names.
            s3={"addressing_style": "path"} if settings.s3_endpoint_url else {},
        )
        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url or None,
            aws_access_key_id=settings.s3_access_key or None,
            aws_secret_access_key=settings.s3_secret_key or None,
            config=config,
        )
        return cls(client, region=settings.s3_region, endpoint=settings.s3_endpoint_url)

    def describe(self) -> str:
        return f"S3 at {self.endpoint or 'the default AWS endpoint'}"

    def _call(self, what: str, fn: Any, **kw: Any) -> Any:
        try:
            return fn(**kw)
        except EndpointConnectionError:
            raise StorageError(f"{what}: could not connect to {self.describe()}") from None
        except ClientError as exc:
            raise StorageError(f"{what}: {self.describe()} answered {_code(exc)}: "
                               f"{exc.response.get('Error', {}).get('Message', '')}".rstrip(": ")) from None
        except BotoCoreError as exc:
            raise StorageError(f"{what}: {exc}") from None

    def ensure_bucket(self, bucket: str) -> None:
        check_bucket(bucket)
        kw: dict[str, Any] = {"Bucket": bucket}
        if self.region != "us-east-1":  # S3 refuses an explicit us-east-1 constraint
            kw["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**kw)
        except ClientError as exc:
            if _code(exc) == "BucketAlreadyOwnedByYou":
                return  # created before: create-or-get
            if _code(exc) == "BucketAlreadyExists":
                raise StorageError(f"create bucket {bucket}: the name is taken by another account") from None
            raise StorageError(f"create bucket {bucket}: {self.describe()} answered {_code(exc)}") from None
        except EndpointConnectionError:
            raise StorageError(f"create bucket {bucket}: could not connect to {self.describe()}") from None

    def bucket_exists(self, bucket: str) -> bool:
        check_bucket(bucket)
        try:
            self.client.head_bucket(Bucket=bucket)
            return True
        except ClientError as exc:
            if _code(exc) in MISSING:
                return False
            raise StorageError(f"bucket {bucket}: {_code(exc)}") from None
        except EndpointConnectionError:
            raise StorageError(f"bucket {bucket}: could not connect to {self.describe()}") from None

    def delete_bucket(self, bucket: str) -> int:
        if not self.bucket_exists(bucket):
            return 0
        deleted = 0
        while True:
            keys = self.list_keys(bucket)
            if not keys:
                break
            for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
                chunk = [{"Key": k} for k in keys[i:i + 1000]]
                self._call(f"empty bucket {bucket}", self.client.delete_objects, Bucket=bucket,
                           Delete={"Objects": chunk, "Quiet": True})
                deleted += len(chunk)
        try:
            self.client.delete_bucket(Bucket=bucket)
        except ClientError as exc:
            if _code(exc) not in MISSING:
                raise StorageError(f"delete bucket {bucket}: {_code(exc)}") from None
        return deleted

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        deleted = 0
        while True:
            keys = self.list_keys(bucket, prefix)
            if not keys:
                return deleted
            for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
                chunk = [{"Key": k} for k in keys[i:i + 1000]]
                self._call(f"delete {prefix}* in {bucket}", self.client.delete_objects, Bucket=bucket,
                           Delete={"Objects": chunk, "Quiet": True})
                deleted += len(chunk)

    def put_file(self, bucket: str, key: str, path: Path) -> int:
        check_bucket(bucket), check_key(key)
        self._call(f"upload {key}", self.client.upload_file, Filename=str(path), Bucket=bucket, Key=key,
                   Config=self.transfer)
        return path.stat().st_size

    def get_file(self, bucket: str, key: str, path: Path) -> int:
        check_bucket(bucket), check_key(key)
        try:
            self.client.download_file(Bucket=bucket, Key=key, Filename=str(path), Config=self.transfer)
        except ClientError as exc:
            if _code(exc) in MISSING:
                raise StorageError(f"object {key} not found in bucket {bucket}") from None
            raise StorageError(f"download {key}: {_code(exc)}") from None
        except EndpointConnectionError:
            raise StorageError(f"download {key}: could not connect to {self.describe()}") from None
        return path.stat().st_size

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        check_bucket(bucket), check_key(key)
        self._call(f"write {key}", self.client.put_object, Bucket=bucket, Key=key, Body=data)

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        check_bucket(bucket), check_key(key)
        try:
            return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if _code(exc) in MISSING:
                return None
            raise StorageError(f"read {key}: {_code(exc)}") from None
        except EndpointConnectionError:
            raise StorageError(f"read {key}: could not connect to {self.describe()}") from None

    def size(self, bucket: str, key: str) -> int | None:
        check_bucket(bucket), check_key(key)
        try:
            return int(self.client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if _code(exc) in MISSING:
                return None
            raise StorageError(f"stat {key}: {_code(exc)}") from None
        except EndpointConnectionError:
            raise StorageError(f"stat {key}: could not connect to {self.describe()}") from None

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        check_bucket(bucket)
        keys: list[str] = []
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            try:
                page = self.client.list_objects_v2(**kw)
            except ClientError as exc:
                if _code(exc) in MISSING:
                    return []
                raise StorageError(f"list bucket {bucket}: {_code(exc)}") from None
            except EndpointConnectionError:
                raise StorageError(f"list bucket {bucket}: could not connect to {self.describe()}") from None
            keys += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = page.get("NextContinuationToken")
