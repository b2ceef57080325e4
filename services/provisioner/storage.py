"""Object storage for tenant buckets: the ObjectStore port, its local-filesystem adapter (the
default on one machine: files under <state_dir>/storage) and the factory that picks the
adapter from settings. The S3 adapter lives in drivers/s3.py (only adapters import boto3).

Imports the standard library and shared settings only.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

from services.shared.settings import Settings

# S3's rules for bucket names (3-63 chars, lowercase letters, digits, dots, hyphens), so a
# bucket that works on the local disk also works on any S3-compatible store.
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
KEY_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class StorageError(Exception):
    """The store refused or failed an operation; the message is readable by a user."""


class ObjectStore(ABC):
    """Buckets of objects. Every method is idempotent where its name allows it to be."""

    kind: str = "abstract"

    @abstractmethod
    def ensure_bucket(self, bucket: str) -> None:
        """Create the bucket, or do nothing if it exists."""

    @abstractmethod
    def bucket_exists(self, bucket: str) -> bool: ...

    @abstractmethod
    def delete_bucket(self, bucket: str) -> int:
        """Delete every object and then the bucket; a missing bucket is fine. Returns how
        many objects were deleted."""

    @abstractmethod
    def put_file(self, bucket: str, key: str, path: Path) -> int:
        """Upload a file as one object (all or nothing). Returns its size."""

    @abstractmethod
    def get_file(self, bucket: str, key: str, path: Path) -> int:
        """Download an object to a file. Returns its size; StorageError if missing."""

    @abstractmethod
    def put_bytes(self, bucket: str, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        """The object's content, or None if it does not exist."""

    @abstractmethod
    def size(self, bucket: str, key: str) -> int | None:
        """The object's size, or None if it does not exist."""

    @abstractmethod
    def list_keys(self, bucket: str, prefix: str = "") -> list[str]: ...

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object whose key starts with prefix; returns how many. Idempotent."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete by prefix")

    def describe(self) -> str:
        return self.kind


def copy_file(src: Path, dst: Path, chunk: int = 4 * 1024 * 1024) -> None:
    """Copy in chunks, yielding between them: under eventlet (the provisioner's process) a
    dump of a large database copied in one call would stall every other green thread."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while True:
            block = fin.read(chunk)
            if not block:
                break
            fout.write(block)
            time.sleep(0)


def check_bucket(bucket: str) -> str:
    if not BUCKET_RE.match(bucket) or ".." in bucket:
        raise StorageError(f"invalid bucket name {bucket!r}")
    return bucket


def check_key(key: str) -> str:
    if not KEY_RE.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise StorageError(f"invalid object key {key!r}")
    return key


class LocalObjectStore(ObjectStore):
    """A directory per bucket, a file per object. Writes go to a temporary file and are
    renamed into place, so a crash never leaves a half-written object behind."""

    kind = "local"

    def __init__(self, root: Path):
        self.root = root

    def describe(self) -> str:
        return f"local directory {self.root}"

    def _bucket(self, bucket: str) -> Path:
        return self.root / check_bucket(bucket)

    def _object(self, bucket: str, key: str) -> Path:
        return self._bucket(bucket) / check_key(key)

    def _require_bucket(self, bucket: str) -> Path:
        path = self._bucket(bucket)
        if not path.is_dir():
            raise StorageError(f"bucket {bucket} does not exist")
        return path

    def ensure_bucket(self, bucket: str) -> None:
        self._bucket(bucket).mkdir(parents=True, exist_ok=True)

    def bucket_exists(self, bucket: str) -> bool:
        return self._bucket(bucket).is_dir()

    def delete_bucket(self, bucket: str) -> int:
        path = self._bucket(bucket)
        if not path.exists():
            return 0
        count = sum(1 for p in path.rglob("*") if p.is_file())
        # Rename first: a crash half-way through rmtree leaves no half-deleted bucket under
        # the real name (the next attempt removes the leftovers).
        trash = self.root / f".trash-{bucket}-{uuid.uuid4().hex[:8]}"
        path.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
        for stale in self.root.glob(f".trash-{bucket}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return count

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        keys = self.list_keys(bucket, prefix) if self._bucket(bucket).exists() else []
        for key in keys:
            self._object(bucket, key).unlink(missing_ok=True)
        return len(keys)

    def _write(self, target: Path, writer: Callable[[Path], object]) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            writer(tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, bucket: str, key: str, path: Path) -> int:
        target = self._object(bucket, key)
        self._require_bucket(bucket)
        self._write(target, lambda tmp: copy_file(path, tmp))
        return path.stat().st_size

    def get_file(self, bucket: str, key: str, path: Path) -> int:
        source = self._object(bucket, key)
        if not source.is_file():
            raise StorageError(f"object {key} not found in bucket {bucket}")
        copy_file(source, path)
        return path.stat().st_size

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        target = self._object(bucket, key)
        self._require_bucket(bucket)
        self._write(target, lambda tmp: tmp.write_bytes(data))

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        path = self._object(bucket, key)
        return path.read_bytes() if path.is_file() else None

    def size(self, bucket: str, key: str) -> int | None:
        path = self._object(bucket, key)
        return path.stat().st_size if path.is_file() else None

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        base = self._bucket(bucket)
        if not base.is_dir():
            return []
        keys = [str(p.relative_to(base)) for p in base.rglob("*") if p.is_file() and not p.name.endswith(".part")]
        return sorted(k for k in keys if k.startswith(prefix))


def state_path(settings: Settings, *parts: str) -> Path:
    """A path under the platform's state directory (relative state_dir: from the repo root)."""
    base = Path(settings.state_dir)
    if not base.is_absolute():
        base = Path(__file__).resolve().parents[2] / base
    return base.joinpath(*parts)


def make_object_store(settings: Settings) -> ObjectStore:
    """The store settings.storage_backend names: `local` (default) or `s3`."""
    if settings.storage_backend == "local":
        return LocalObjectStore(state_path(settings, "storage"))
    if settings.storage_backend == "s3":
        from .drivers.s3 import S3ObjectStore

        return S3ObjectStore.from_settings(settings)
    raise ValueError(f"PLATFORM_STORAGE_BACKEND={settings.storage_backend!r}: expected local or s3")
