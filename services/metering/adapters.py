"""metering adapters: measuring tenants (database size on the local PostgreSQL, bucket size on
the local object store). Imports psycopg and the standard library.

The local driver names a tenant's database after its ref and its bucket `sp-<ref>` (a
directory under <state_dir>/storage); the provisioner's own backups live under `_platform/`
in that bucket and are not the tenant's storage, so they are not counted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from psycopg_pool import ConnectionPool

PLATFORM_PREFIX = "_platform"


class TenantMeasurer:
    def __init__(self, pool: ConnectionPool, storage_root: Path | None):
        """`storage_root`: the local object store's directory; None when buckets live
        elsewhere (S3), which this adapter cannot measure (see docs/metering.md)."""
        self.pool = pool
        self.storage_root = storage_root

    def database_sizes(self, refs: Iterable[str]) -> dict[str, int]:
        """Bytes per tenant database that exists (one that is not created yet is skipped)."""
        refs = list(refs)
        if not refs:
            return {}
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT datname, pg_database_size(oid) FROM pg_database WHERE datname = ANY(%s)", (refs,)
            ).fetchall()
        return {name: int(size) for name, size in rows}

    def storage_sizes(self, refs: Iterable[str]) -> dict[str, int]:
        """Bytes of objects per tenant bucket that exists."""
        if self.storage_root is None:
            return {}
        out = {}
        for ref in refs:
            bucket = self.storage_root / f"sp-{ref}"
            if bucket.is_dir():
                out[ref] = directory_bytes(bucket)
        return out


def directory_bytes(root: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root and PLATFORM_PREFIX in dirnames:
            dirnames.remove(PLATFORM_PREFIX)
        for name in filenames:
            if name.endswith(".part"):
                continue  # an upload in progress (renamed into place when complete)
            try:
                total += (Path(dirpath) / name).stat().st_size
            except FileNotFoundError:
                pass  # deleted while we walked
    return total
